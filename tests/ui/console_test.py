#!/usr/bin/env python3
"""The operator console (GET /ui) in a real browser: headless Debian Chromium driven by Selenium
against a running gateway binary with two backends (Python HTTP servers in this process).

Checks, each with a bounded wait:
  * the page loads with no SEVERE browser console entry, shows both backends and the routes in
    specificity order;
  * a service registered through /v1/services is listed with its TTL left;
  * a drain clicked on the page shows within 2 s, and undrain too;
  * the explain form highlights the chosen route and backend;
  * editing the config file (a route added) shows the reload's diff;
  * a stopped backend shows as unhealthy;
  * on a phone-sized window nothing overflows horizontally (the page, nor any panel or table);
  * the gateway stopped, the page says it is unreachable;
  * with an admin token configured the page asks for it, keeps it in session storage, then shows
    data, drains with it, keeps it over a refresh, and "Forget token" asks again.
Screenshots in target/ui-screenshots/: console.png (1366x900), console-full.png (the whole page
at that width), console-phone.png (390x844) and console-phone-full.png.
Every process it starts is stopped at the end (by its handle/PID), pass or fail.

Environment: GOGATE_BIN (default target/release/gogate), CHROMIUM (/usr/bin/chromium),
CHROMEDRIVER (/usr/bin/chromedriver), UI_SCREENSHOTS (target/ui-screenshots),
UI_SCREENSHOT_WAIT (seconds of traffic before the screenshots, 1.5).
"""

import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ beside the test
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GOGATE_BIN, SHOTS, Backend, Browser, Gateway, Traffic,  # noqa: E402
                     cell, cell_of, click_action, log, row, shot, viewport, wait_for,
                     write_atomically)

TOKEN = "console-test-token-7f3a"


def console_run(tmp):
    """Without a token: the whole tour."""
    one, two = Backend("one"), Backend("two")
    extra_backends = []
    gw = browser = traffic = None
    try:
        gw = Gateway(tmp, [one, two])
        traffic = Traffic(gw.http_port)
        browser = Browser(tmp)
        b = browser
        b.driver.get(gw.admin("/ui"))
        for backend in (one, two):
            wait_for(f"backend {backend.addr} shown", lambda: row(b, "default", backend.addr), 5)
            wait_for(f"{backend.addr} healthy",
                     lambda: cell(b, "default", backend.addr, "health") == "healthy", 5)
        assert b.text("#conn") == "live", b.text("#conn")
        assert b.css("#banner")[0].is_displayed() is False, b.text("#banner")
        routes = [r.get_attribute("data-key") for r in b.css("#routes tr")]
        assert routes == ["api", "web", "(default)"], routes
        assert not b.severe(), f"console errors on load: {b.severe()}"
        log("loaded: both backends shown, routes in specificity order, no console errors")

        # A service registered through the registry API: listed with the TTL it has left, and
        # its address in the default upstream as a registry backend.
        three = Backend("three")
        extra_backends.append(three)
        req = urllib.request.Request(
            gw.admin("/v1/services"), method="POST",
            data=json.dumps({"name": "catalog", "address": three.addr, "ttl": "5m"}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=2) as r:
            assert r.status == 201, r.status
        wait_for("the registered service listed", lambda: three.addr in b.text("#registry"), 3)
        wait_for("its TTL left shown (5m less a little)",
                 lambda: cell_of(b, "#registry", "TTL left").startswith("4m 5"), 2)
        wait_for("the registry backend in the upstream", lambda: row(b, "default", three.addr), 3)
        log("registry: service listed with its TTL left")

        # Drain and undrain from the page, each visible within 2 s.
        for action, want in (("drain", "draining"), ("undrain", "in rotation")):
            click_action(b, one.addr, action)
            t0 = time.monotonic()
            wait_for(f"{one.addr} shows {want!r}",
                     lambda: cell(b, "default", one.addr, "state") == want, 2)
            log(f"{action}: shown after {time.monotonic() - t0:.2f}s")
        with urllib.request.urlopen(gw.admin("/backends"), timeout=2) as r:
            assert not any(x["draining"] for x in json.load(r)), "undrained on the gateway"

        # Explain: the chosen route and backend are highlighted.
        path_input = b.css("#x-path")[0]
        path_input.clear()
        path_input.send_keys("/api/users")
        b.css("#x-submit")[0].click()
        wait_for("explain outcome", lambda: "forward" in b.text("#explain-result"), 3)
        wait_for("route api highlighted",
                 lambda: "hl" in (b.css('#routes tr[data-key="api"]')[0].get_attribute("class") or ""), 2)
        other = [r.get_attribute("data-key") for r in b.css("#routes tr.hl")]
        assert other == ["api"], other
        wait_for("a backend highlighted", lambda: b.css("#upstreams tr.hl"), 2)
        chosen = b.css("#upstreams tr.hl")[0].get_attribute("data-key")
        addrs = [x.addr for x in [one, two] + extra_backends]
        assert chosen.split("|", 1)[1] in addrs, chosen
        assert f"backend {chosen.split('|', 1)[1]}" in b.text("#explain-result"), \
            "the highlighted backend is the one the explain answer names"
        log(f"explain: route api and backend {chosen} highlighted")

        # A reload: a route added to the file shows in the history with its diff.
        write_atomically(gw.config, gw.yaml(extra_route=True))
        t0 = time.monotonic()
        wait_for("the reload's diff (route added: extra)",
                 lambda: "route added extra" in b.text("#reloads").replace("\n", " "), 6)
        wait_for("route extra listed", lambda: b.css('#routes tr[data-key="extra"]'), 2)
        log(f"reload diff shown after {time.monotonic() - t0:.2f}s")

        # A stopped backend turns unhealthy on the page.
        two.stop()
        t0 = time.monotonic()
        wait_for(f"{two.addr} unhealthy", lambda: cell(b, "default", two.addr, "health") == "unhealthy", 5)
        log(f"stopped backend shown unhealthy after {time.monotonic() - t0:.2f}s")

        # A few more samples on the sparklines (longer for a README picture).
        time.sleep(float(os.environ.get("UI_SCREENSHOT_WAIT", "1.5")))
        viewport(b, 1366, 900)
        shot(b, "console.png")
        shot(b, "console-full.png", full=True)

        # A phone: one column, nothing wider than the screen.
        viewport(b, 390, 844)
        time.sleep(0.5)
        widths = b.js("return [document.scrollingElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1] + 1, f"horizontal overflow on a phone: {widths}"
        # Nor inside the page: no panel or table box needs sideways scrolling.
        wide = b.js("return [...document.querySelectorAll('.panel, .scroll')]"
                    ".filter((e) => e.scrollWidth > e.clientWidth + 1)"
                    ".map((e) => (e.closest('[aria-labelledby]') || e).getAttribute('aria-labelledby')"
                    " + ' ' + e.scrollWidth + '>' + e.clientWidth)")
        assert not wide, f"boxes wider than a phone: {wide}"
        shot(b, "console-phone.png")
        shot(b, "console-phone-full.png", full=True)
        log(f"phone: scrollWidth {widths[0]} <= innerWidth {widths[1]}")

        bad = b.severe()
        assert not bad, f"console errors: {bad}"
        log("no SEVERE console entries during the run")

        # The gateway gone: the page says so (and keeps what it showed last).
        traffic.stop()
        gw.stop()
        wait_for("the unreachable banner",
                 lambda: b.css("#banner")[0].is_displayed() and "unreachable" in b.text("#banner"), 4)
        assert b.text("#conn") == "unreachable", b.text("#conn")
        assert row(b, "default", one.addr), "the last data stays on the page"
        log("gateway stopped: banner shown")
    except BaseException:
        if gw:
            log("gateway log tail:\n" + gw.logs())
        if browser:
            log("browser console: " + json.dumps(browser.drain_log(), indent=1)[-3000:])
        raise
    finally:
        if traffic:
            traffic.stop()
        if browser:
            browser.quit()
        if gw:
            gw.stop()
        for backend in [one, two] + extra_backends:
            backend.stop()


def token_run(tmp):
    """With an admin token: the page asks for it, keeps it for the tab, then shows data."""
    one, two = Backend("one"), Backend("two")
    gw = browser = None
    try:
        gw = Gateway(tmp, [one, two], token=TOKEN)
        with urllib.request.urlopen(gw.admin("/ui"), timeout=2) as r:
            assert r.status == 200, "the page itself needs no token"
        try:
            urllib.request.urlopen(gw.admin("/ui/state"), timeout=2)
            raise AssertionError("/ui/state answered without the token")
        except urllib.error.HTTPError as e:
            assert e.code == 401, e.code
        browser = Browser(tmp)
        b = browser
        b.driver.get(gw.admin("/ui"))
        wait_for("the token prompt", lambda: b.css("#token-panel")[0].is_displayed(), 5)
        assert not row(b, "default", one.addr), "no data before the token"
        b.css("#token-input")[0].send_keys(TOKEN)
        b.css("#token-form button[type=submit]")[0].click()
        for backend in (one, two):
            wait_for(f"backend {backend.addr} shown with the token",
                     lambda: row(b, "default", backend.addr), 5)
        assert not b.css("#token-panel")[0].is_displayed()
        kept = b.js("return sessionStorage.getItem('gogate.adminToken')")
        assert kept == TOKEN, kept
        # A write with the token from the page.
        click_action(b, one.addr, "drain")
        wait_for("drain with the token", lambda: cell(b, "default", one.addr, "state") == "draining", 2)
        click_action(b, one.addr, "undrain")
        wait_for("undrain with the token",
                 lambda: cell(b, "default", one.addr, "state") == "in rotation", 2)
        # A reload of the tab keeps the token (session storage), no prompt.
        b.driver.refresh()
        wait_for("data after a refresh", lambda: row(b, "default", two.addr), 5)
        assert not b.css("#token-panel")[0].is_displayed(), "asked again after a refresh"
        # Forget token: asked again.
        b.css("#forget-token")[0].click()
        wait_for("the prompt after forgetting", lambda: b.css("#token-panel")[0].is_displayed(), 3)
        assert b.js("return sessionStorage.getItem('gogate.adminToken')") is None
        # The only console errors are the expected 401s of calls made without a token.
        bad = b.severe(allowed=("401",))
        assert not bad, f"console errors: {bad}"
        log("token: prompted, kept in sessionStorage, data shown, drain works, forget asks again")
    except BaseException:
        if gw:
            log("gateway log tail:\n" + gw.logs())
        if browser:
            log("browser console: " + json.dumps(browser.drain_log(), indent=1)[-3000:])
        raise
    finally:
        if browser:
            browser.quit()
        if gw:
            gw.stop()
        one.stop()
        two.stop()


def main():
    if not os.access(GOGATE_BIN, os.X_OK):
        sys.exit(f"GOGATE_BIN {GOGATE_BIN} is not an executable (build it first)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gogate-console-") as tmp:
        for name, run in (("open", console_run), ("token", token_run)):
            work = os.path.join(tmp, name)
            os.mkdir(work)
            run(work)
    log(f"all console checks passed in {time.monotonic() - started:.1f}s; screenshots in {SHOTS}")


if __name__ == "__main__":
    main()
