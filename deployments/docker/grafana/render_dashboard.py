#!/usr/bin/env python3
"""Renders dashboards/gogate.json to a PNG without Grafana (for the README picture).

Runs, on loopback only: the compose stack's three backends (backend/backend.py), gogate with
the compose config (compose/gogate.yaml, host names replaced), and a real Prometheus (the
`prometheus` binary of the Debian package that also provides promtool) scraping it every
second. Sends traffic for --seconds (the split route, the rate-limited route, an L4 request
now and then), stops web-2 for a while (health and breaker panels), reloads once. Then it
evaluates every panel query of the dashboard JSON, as written, through Prometheus' HTTP API
and draws the panels at their gridPos with matplotlib. Every process it starts is stopped by
PID at the end.

usage: render_dashboard.py --gogate BIN [--out FILE] [--seconds N]
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
DOCKER = os.path.dirname(HERE)


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def get(url, timeout=2):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except OSError:
        return 0, b""


def wait_for(url, what):
    for _ in range(100):
        if get(url)[0] == 200:
            return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not come up at {url}")


class Procs:
    def __init__(self):
        self.procs = {}

    def start(self, name, args, env=None, log=None):
        out = open(log, "wb") if log else subprocess.DEVNULL
        self.procs[name] = subprocess.Popen(args, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)

    def stop(self, name):
        p = self.procs.pop(name, None)
        if p and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)


def traffic(l7, l4_port, until, stop):
    n = 0
    while time.time() < until and not stop.is_set():
        get(f"http://127.0.0.1:{l7}/api/items/{n % 7}")
        if n % 3 == 0:
            get(f"http://127.0.0.1:{l7}/home")
        if n % 200 < 20:  # a burst on the rate-limited route now and then
            get(f"http://127.0.0.1:{l7}/limited")
        if n % 50 == 0:
            try:
                with socket.create_connection(("127.0.0.1", l4_port), timeout=2) as s:
                    s.sendall(b"GET /l4 HTTP/1.0\r\n\r\n")
                    s.recv(4096)
            except OSError:
                pass
        n += 1
        time.sleep(0.02)


def run_stack(gogate, seconds, tmp):
    procs = Procs()
    web1, web2, canary, l4, l7, admin, metrics, prom = free_ports(8)
    backend = os.path.join(DOCKER, "backend", "backend.py")

    def start_backend(name, port):
        procs.start(name, [sys.executable, backend], {"BACKEND_NAME": name, "PORT": str(port), "HOST": "127.0.0.1"})

    try:
        for name, port in (("web-1", web1), ("web-2", web2), ("web-canary", canary)):
            start_backend(name, port)
            wait_for(f"http://127.0.0.1:{port}/health", name)
        cfg = open(os.path.join(DOCKER, "compose", "gogate.yaml")).read()
        for old, new in ((":8080", l4), (":8081", l7), (":9090", admin), (":9091", metrics)):
            cfg = cfg.replace(f'"{old}"', f'"127.0.0.1:{new}"')
        for old, new in (("web-1", web1), ("web-2", web2), ("web-canary", canary)):
            cfg = cfg.replace(f'"{old}:8000"', f'"127.0.0.1:{new}"')
        os.makedirs(os.path.join(tmp, "gogate"))
        cfg_path = os.path.join(tmp, "gogate", "gogate.yaml")
        open(cfg_path, "w").write(cfg)
        procs.start("gogate", [gogate, "-config", cfg_path], log=os.path.join(tmp, "gogate.log"))
        wait_for(f"http://127.0.0.1:{admin}/health", "gogate")
        prom_cfg = os.path.join(tmp, "prometheus.yml")
        open(prom_cfg, "w").write(
            "global: {scrape_interval: 1s}\nscrape_configs:\n"
            f"  - job_name: gogate\n    static_configs: [{{targets: ['127.0.0.1:{metrics}']}}]\n")
        procs.start("prometheus", ["prometheus", f"--config.file={prom_cfg}", f"--storage.tsdb.path={tmp}/tsdb",
                                   f"--web.listen-address=127.0.0.1:{prom}"], log=os.path.join(tmp, "prometheus.log"))
        wait_for(f"http://127.0.0.1:{prom}/-/ready", "prometheus")
        start = time.time()
        stop = threading.Event()
        workers = [threading.Thread(target=traffic, args=(l7, l4, start + seconds, stop)) for _ in range(3)]
        for w in workers:
            w.start()
        events = [(0.35, "stop web-2"), (0.55, "reload"), (0.65, "start web-2")]
        for frac, what in events:
            time.sleep(max(0.0, start + frac * seconds - time.time()))
            if what == "stop web-2":
                procs.stop("web-2")
            elif what == "start web-2":
                start_backend("web-2", web2)
            else:
                req = urllib.request.Request(f"http://127.0.0.1:{admin}/reload", method="POST")
                urllib.request.urlopen(req, timeout=5).read()
        for w in workers:
            w.join()
        time.sleep(3)  # the last scrapes
        return prom, start, time.time(), procs
    except BaseException:
        procs.stop_all()
        raise


def query_range(prom, expr, start, end, step):
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    status, body = get(f"http://127.0.0.1:{prom}/api/v1/query_range?{q}", timeout=10)
    if status != 200:
        raise SystemExit(f"query failed ({status}): {expr}")
    return json.loads(body)["data"]["result"]


def legend(fmt, labels):
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt or "").strip() or "value"


def render(dashboard, prom, start, end, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.gridspec import GridSpec

    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    plt.style.use("dark_background")
    fig = plt.figure(figsize=(20, rows * 0.5), facecolor="#111217")
    grid = GridSpec(rows, 24, figure=fig, hspace=2.6, wspace=1.2, top=0.96, bottom=0.03, left=0.04, right=0.99)
    fig.suptitle(f"{dashboard['title']} (dashboards/gogate.json, rendered from Prometheus by render_dashboard.py)",
                 color="#ccccdc", fontsize=14, y=0.99)
    step = 2
    for p in panels:
        g = p["gridPos"]
        ax = fig.add_subplot(grid[g["y"]:g["y"] + g["h"], g["x"]:g["x"] + g["w"]])
        ax.set_facecolor("#181b1f")
        ax.set_title(p["title"], loc="left", fontsize=10, color="#ccccdc")
        unit = p["fieldConfig"]["defaults"].get("unit", "short")
        series = []
        for t in p["targets"]:
            expr = t["expr"].replace("$__rate_interval", "15s").replace("$__interval", "2s")
            for r in query_range(prom, expr, start, end, step):
                pts = [(float(ts) - start, float(v)) for ts, v in r["values"] if v not in ("NaN", "+Inf", "-Inf")]
                series.append((legend(t.get("legendFormat"), r["metric"]), pts))
        if p["type"] == "stat":
            ax.set_xticks([])
            ax.set_yticks([])
            last = [s[1][-1][1] for s in series if s[1]]
            value = last[-1] if last else float("nan")
            text = {"s": f"{value:.0f} s", "percentunit": f"{value * 100:.2f} %", "reqps": f"{value:.1f} req/s"}.get(unit, f"{value:g}")
            ax.text(0.5, 0.4, text, ha="center", va="center", fontsize=22, color="#73bf69", transform=ax.transAxes)
            continue
        mappings = p["fieldConfig"]["defaults"].get("mappings")
        for name, pts in series:
            if pts:
                ax.step([x for x, _ in pts], [y for _, y in pts], where="post", linewidth=1.2, label=name[:40])
        if mappings:
            opts = mappings[0]["options"]
            ax.set_yticks([float(v) for v in opts])
            ax.set_yticklabels([o["text"] for o in opts.values()], fontsize=7)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("seconds", fontsize=7)
        if unit in ("s",):
            ax.set_ylabel("seconds", fontsize=7)
        ax.grid(alpha=0.15)
        if series:
            ax.legend(fontsize=6, loc="upper left", ncol=2, framealpha=0.3)
    fig.savefig(out, dpi=80, facecolor=fig.get_facecolor(), bbox_inches="tight")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gogate", required=True)
    ap.add_argument("--out", default=os.path.join(HERE, "dashboard.png"))
    ap.add_argument("--seconds", type=int, default=120)
    a = ap.parse_args()
    if not shutil.which("prometheus"):
        raise SystemExit("needs the prometheus binary (apt-get install -y prometheus)")
    dashboard = json.load(open(os.path.join(HERE, "dashboards", "gogate.json")))
    tmp = tempfile.mkdtemp()
    procs = None
    try:
        prom, start, end, procs = run_stack(a.gogate, a.seconds, tmp)
        render(dashboard, prom, start, end, a.out)
        print(f"wrote {a.out}")
    finally:
        if procs:
            procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
