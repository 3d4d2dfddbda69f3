"""Test kit of the console's browser test (console_test.py): small HTTP backends in this
process, the gateway binary on a config file, a trickle of traffic, headless Chromium through
chromedriver, bounded waits, and page helpers. Python 3.11, Selenium only."""

import base64
import http.server
import json
import os
import shutil
import socket
import subprocess
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
        if not self.log_file.closed:
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
