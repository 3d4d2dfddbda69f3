#!/usr/bin/env python3
"""The operator console (GET /ui) in a real browser: headless Debian Chromium driven by Selenium
against a running gateway binary with two backends (Python HTTP servers in this process).

Checks, each with a bounded wait:
  * the page loads with no SEVERE browser console entry and shows both backends;
  * a drain clicked on the page shows within 2 s, and undrain too;
  * the explain form highlights the chosen route and backend;
  * editing the config file (a route added) shows the reload's diff;
  * a stopped backend shows as unhealthy;
  * on a phone-sized window nothing overflows horizontally;
  * with an admin token configured the page asks for it, keeps it in session storage, then shows
    data, and "Forget token" asks again.
Screenshots: target/ui-screenshots/console.png (1366x900) and console-phone.png (390x844).

Environment: GOGATE_BIN (default target/release/gogate), CHROMIUM (/usr/bin/chromium),
CHROMEDRIVER (/usr/bin/chromedriver), UI_SCREENSHOTS (target/ui-screenshots).
"""

import base64
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOGATE_BIN = os.environ.get("GOGATE_BIN", os.path.join(ROOT, "target", "release", "gogate"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
SHOTS = os.environ.get("UI_SCREENSHOTS", os.path.join(ROOT, "target", "ui-screenshots"))
TOKEN = "console-test-token-7f3a"


def log(msg):
    print(f"[console_test {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, timeout):
    """Polls check() every 50 ms until it returns something truthy; fails after timeout s."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # a stale element between polls of the page, a refused socket
            last_error = e
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for: {what}"
                         + (f" (last error: {last_error!r})" if last_error else ""))


class Backend:
    """A small HTTP backend on 127.0.0.1, stoppable (its socket closes: health checks fail)."""

    def __init__(self, name):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = json.dumps({"backend": name, "path": self.path}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.addr = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.stopped = False

    def stop(self):
        if not self.stopped:
            self.stopped = True
            self.server.shutdown()
            self.server.server_close()


def config_yaml(http_port, admin_port, metrics_port, backends, token="", extra_route=False):
    lines = [
        "server:",
        '  listenAddr: ""',
        f'  httpListenAddr: "127.0.0.1:{http_port}"',
        "  backends:",
        *[f'    - addr: "{b.addr}"' for b in backends],
        "  health: {enabled: true, interval: 300ms, timeout: 200ms,"
        " unhealthyThreshold: 1, healthyThreshold: 1}",
        f'  admin: {{enabled: true, listenAddr: "127.0.0.1:{admin_port}", token: "{token}"}}',
        f'  metrics: {{enabled: true, listenAddr: "127.0.0.1:{metrics_port}"}}',
        "  registry: {enabled: true, defaultTtl: 30s}",
        "logging: {level: warn}",
        "routes:",
        "  - name: api",
        "    match: {pathPrefix: /api}",
        "    upstreams: [{name: default}]",
        "  - name: web",
        "    match: {pathPrefix: /}",
        "    upstreams: [{name: default}]",
    ]
    if extra_route:
        lines += [
            "  - name: extra",
            "    match: {pathPrefix: /extra}",
            "    upstreams: [{name: default}]",
        ]
    return "\n".join(lines) + "\n"


def write_atomically(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class Gateway:
    """The gateway binary on a config file in a temp dir; killed by PID at the end."""

    def __init__(self, tmp, backends, token=""):
        self.tmp = tmp
        self.backends = backends
        self.token = token
        self.http_port, self.admin_port, self.metrics_port = free_port(), free_port(), free_port()
        self.config = os.path.join(tmp, "gogate.yaml")
        write_atomically(self.config, self.yaml())
        self.log_path = os.path.join(tmp, "gogate.log")
        self.log_file = open(self.log_path, "wb")
        env = dict(os.environ)
        env.pop("GOGATE_ADMIN_TOKEN", None)
        self.proc = subprocess.Popen([GOGATE_BIN, "-config", self.config], stdout=self.log_file,
                                     stderr=subprocess.STDOUT, env=env)
        log(f"gateway pid {self.proc.pid}: admin 127.0.0.1:{self.admin_port}, "
            f"http 127.0.0.1:{self.http_port}, backends {[b.addr for b in backends]}")
        wait_for("the gateway's /ready", self.ready, 20)

    def yaml(self, extra_route=False):
        return config_yaml(self.http_port, self.admin_port, self.metrics_port, self.backends,
                           self.token, extra_route)

    def ready(self):
        if self.proc.poll() is not None:
            raise SystemExit(f"the gateway exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            with urllib.request.urlopen(self.admin("/ready"), timeout=1) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def admin(self, path):
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def logs(self):
        self.log_file.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log_file.close()


class Traffic:
    """A trickle of requests through the gateway (so the rate and latency lines move)."""

    def __init__(self, port, per_second=20):
        self.url = f"http://127.0.0.1:{port}"
        self.pause = 1.0 / per_second
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        i = 0
        while not self.done.is_set():
            path = "/api/items" if i % 3 else "/index.html"
            i += 1
            try:
                urllib.request.urlopen(self.url + path, timeout=2).read()
            except (urllib.error.URLError, OSError):
                pass
            self.done.wait(self.pause)

    def stop(self):
        self.done.set()
        self.thread.join(timeout=5)


class Browser:
    """Headless Chromium through chromedriver (no Selenium Manager download)."""

    def __init__(self, tmp):
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        self.profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp)
        for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     "--disable-default-apps", "--disable-extensions",
                     "--hide-scrollbars", "--force-device-scale-factor=1",
                     f"--user-data-dir={self.profile}", "--window-size=1366,900"]:
            opts.add_argument(flag)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(CHROMEDRIVER, log_output=os.path.join(tmp, "chromedriver.log"))
        self.driver = webdriver.Chrome(service=service, options=opts)
        self.driver.set_page_load_timeout(15)
        self.driver.set_script_timeout(10)
        self.console = []

    def drain_log(self):
        self.console += self.driver.get_log("browser")
        return self.console

    def severe(self, allowed=()):
        return [e for e in self.drain_log() if e["level"] == "SEVERE"
                and not any(a in e["message"] for a in allowed)]

    def css(self, selector):
        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def text(self, selector):
        found = self.css(selector)
        return found[0].text if found else ""

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def quit(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


def row(b, upstream, addr):
    rows = b.css(f'#upstreams tr[data-key="{upstream}|{addr}"]')
    return rows[0] if rows else None


def cell(b, upstream, addr, label):
    r = row(b, upstream, addr)
    if r is None:
        return ""
    cells = r.find_elements(By.CSS_SELECTOR, f'td[data-label="{label}"]')
    return cells[0].text.strip() if cells else ""


def cell_of(b, table, label):
    cells = b.css(f'{table} td[data-label="{label}"]')
    return cells[0].text.strip() if cells else ""


def click_action(b, addr, action):
    b.css(f'#upstreams button[data-action="{action}"][data-addr="{addr}"]')[0].click()


def viewport(b, width, height):
    """Sizes the window so the page itself gets width x height CSS pixels."""
    b.driver.set_window_size(width, height)
    inner = b.js("return [window.innerWidth, window.innerHeight]")
    b.driver.set_window_size(width + (width - inner[0]), height + (height - inner[1]))
    wait_for(f"a {width}x{height} viewport",
             lambda: b.js("return [window.innerWidth, window.innerHeight]") == [width, height], 3)


def shot(b, name, full=False):
    """A screenshot from the top of the page (full: the whole page, not just the viewport)."""
    os.makedirs(SHOTS, exist_ok=True)
    path = os.path.join(SHOTS, name)
    b.js("window.scrollTo(0, 0)")
    time.sleep(0.2)
    if full:
        data = b.driver.execute_cdp_cmd("Page.captureScreenshot",
                                        {"format": "png", "captureBeyondViewport": True})
        with open(path, "wb") as f:
            f.write(base64.b64decode(data["data"]))
    else:
        b.driver.save_screenshot(path)
    log(f"screenshot {path}")
    return path


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
            data=json.dumps({"name": "catalog", "address": three.addr, "ttl": "45s"}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=2) as r:
            assert r.status == 201, r.status
        wait_for("the registered service listed", lambda: three.addr in b.text("#registry"), 3)
        wait_for("its TTL left shown", lambda: " s" in cell_of(b, "#registry", "TTL left"), 2)
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

        time.sleep(1.5)  # a couple more samples on the sparklines
        viewport(b, 1366, 900)
        shot(b, "console.png")
        shot(b, "console-full.png", full=True)

        # A phone: one column, nothing wider than the screen.
        viewport(b, 390, 844)
        time.sleep(0.5)
        widths = b.js("return [document.scrollingElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1] + 1, f"horizontal overflow on a phone: {widths}"
        shot(b, "console-phone.png")
        log(f"phone: scrollWidth {widths[0]} <= innerWidth {widths[1]}")

        bad = b.severe()
        assert not bad, f"console errors: {bad}"
        log("no SEVERE console entries during the run")
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
