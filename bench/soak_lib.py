#!/usr/bin/env python3
"""Helpers of bench/soak.sh (not meant to be run by hand).

    soak_lib.py ports N                 N free loopback ports below the ephemeral range
    soak_lib.py l4client --port P --rate R --out FILE
                                        paced short HTTP exchanges through gogate's L4 port;
                                        one line per second: "epoch ok e_connect e_reset
                                        e_timeout e_bad lat_ms,lat_ms,..."
    soak_lib.py header                  the Markdown table header
    soak_lib.py jfield PATH...          print fields (dotted paths) of the JSON on stdin
    soak_lib.py row ...                 one interval: parse wrk/L4 output, append a JSON
                                        sample, print the Markdown table row
    soak_lib.py report ...              verdict, Markdown + JSON files; exit 0 pass / 1 fail
"""

import argparse
import json
import os
import random
import socket
import statistics
import sys
import time

# ---------------------------------------------------------------- ports


def cmd_ports(a):
    lo = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    top = max(lo - 1, 2000)            # never inside the range outgoing connections use
    bottom = 20000 if top > 22000 else 1024
    got, held = [], []
    start = random.randint(bottom, top - 200)
    p = start
    while len(got) < a.n and p < top:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))   # no SO_REUSEADDR: any socket on the port makes it busy
            held.append(s)
            got.append(p)
        except OSError:
            s.close()
        p += 1
    for s in held:
        s.close()
    if len(got) < a.n:
        sys.exit("no %d free ports in %d..%d" % (a.n, start, top))
    print(" ".join(map(str, got)))


# ---------------------------------------------------------------- L4 client


def one_exchange(port, timeout):
    """Returns (kind, latency_ms): kind ok | connect | reset | timeout | bad."""
    t0 = time.monotonic()
    s = socket.socket()
    s.settimeout(timeout)
    try:
        try:
            s.connect(("127.0.0.1", port))
        except socket.timeout:
            return "timeout", None
        except OSError:
            return "connect", None
        s.sendall(b"GET /l4/ping HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        lat = (time.monotonic() - t0) * 1000.0
        head, _, body = buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
            return "bad", lat
        clen = None
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                clen = int(v.strip())
        if clen is not None and len(body) != clen:
            return "bad", lat
        return "ok", lat
    except socket.timeout:
        return "timeout", None
    except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
        return "reset", None
    except OSError:
        return "reset", None
    finally:
        s.close()


def cmd_l4client(a):
    period = 1.0 / a.rate
    out = open(a.out, "a", buffering=1)
    kinds = ("ok", "connect", "reset", "timeout", "bad")
    counts = dict.fromkeys(kinds, 0)
    lats = []
    sec = int(time.time())
    nxt = time.monotonic()
    while True:
        now = time.monotonic()
        if nxt > now:
            time.sleep(nxt - now)
        elif now - nxt > 1.0:            # far behind: do not burst to catch up
            nxt = now
        nxt += period * random.uniform(0.5, 1.5)
        kind, lat = one_exchange(a.port, a.timeout)
        counts[kind] += 1
        if lat is not None and kind == "ok":
            lats.append(lat)
        cur = int(time.time())
        if cur != sec:
            out.write("%d %s %s\n" % (sec, " ".join(str(counts[k]) for k in kinds),
                                      ",".join("%.3f" % x for x in lats) or "-"))
            counts = dict.fromkeys(kinds, 0)
            lats = []
            sec = cur


# ---------------------------------------------------------------- JSON field


def cmd_jfield(a):
    try:
        d = json.load(sys.stdin)
    except ValueError:
        print(" ".join("?" for _ in a.paths))
        return
    vals = []
    for p in a.paths:
        v = d
        for k in p.split("."):
            v = v.get(k) if isinstance(v, dict) else None
        vals.append("null" if v is None else str(v).replace(" ", "_"))
    print(" ".join(vals))


# ---------------------------------------------------------------- one interval


def parse_wrk(path):
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith("SOAK "):
                    return json.loads(line[5:])
    except (OSError, ValueError):
        pass
    return None


def pctl(vals, p):
    if not vals:
        return None
    v = sorted(vals)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def parse_l4(path, t_from, t_to):
    kinds = ("ok", "connect", "reset", "timeout", "bad")
    c = dict.fromkeys(kinds, 0)
    lats = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) != 7:
                    continue
                sec = int(parts[0])
                if sec < t_from or sec >= t_to:
                    continue
                for k, v in zip(kinds, parts[1:6]):
                    c[k] += int(v)
                if parts[6] != "-":
                    lats.extend(float(x) for x in parts[6].split(","))
    except OSError:
        pass
    c["p99_ms"] = pctl(lats, 99)
    return c


def fmt(v, nd=1):
    return "—" if v is None else ("%.*f" % (nd, v))


HEADER = ("| t (s) | RSS MB | fds | gogate CPU % | host CPU % | req/s | p50 ms | p99 ms | p99 close ms "
          "| L4 ok / err | 502 / 503 / 504 | other HTTP err | socket err c/r/w/t | err % | events |")
SEP = "|" + "---|" * 15


def row_md(s):
    w = s["wrk"]
    l4 = s["l4"]
    ev = "; ".join(s["events"]) if s["events"] else ""
    return "| %d | %s | %d | %s | %s | %s | %s | %s | %s | %d / %d | %d / %d / %d | %d | %d/%d/%d/%d | %s | %s |" % (
        s["t"], fmt(s["rss_kb"] / 1024.0), s["fds"], fmt(s["cpu_pct"]), fmt(s.get("host_cpu_pct"), 0),
        fmt(w["rps"], 0),
        fmt(w["p50_ms"], 2), fmt(w["p99_ms"], 2), fmt(w["p99_close_ms"], 2),
        l4["ok"], l4["errors"], w["c502"], w["c503"], w["c504"], w["other_http"],
        w["err_connect"], w["err_read"], w["err_write"], w["err_timeout"],
        fmt(s["err_pct"], 2), ev)


def cmd_row(a):
    ka, cl = parse_wrk(a.ka), parse_wrk(a.close)
    notes = []
    if ka is None:
        notes.append("keep-alive wrk gave no result")
    if cl is None:
        notes.append("close wrk gave no result")
    keys = ("requests", "c2xx", "c3xx", "c4xx", "c502", "c503", "c504", "c5xx",
            "err_connect", "err_read", "err_write", "err_timeout")
    tot = {k: (ka or {}).get(k, 0) + (cl or {}).get(k, 0) for k in keys}
    dur = max(((ka or {}).get("duration_us") or 0) / 1e6, a.dt, 1e-3)
    l4 = parse_l4(a.l4, a.t_from, a.t_to)
    l4_err = l4["connect"] + l4["reset"] + l4["timeout"] + l4["bad"]
    http_bad = tot["c4xx"] + tot["c502"] + tot["c503"] + tot["c504"] + tot["c5xx"]
    sock = tot["err_connect"] + tot["err_read"] + tot["err_write"] + tot["err_timeout"]
    attempts = tot["requests"] + tot["err_connect"] + tot["err_read"] + tot["err_write"] + \
        l4["ok"] + l4_err
    errors = http_bad + sock + l4_err
    sample = {
        "t": a.t, "dt": round(a.dt, 3), "rss_kb": a.rss_kb, "fds": a.fds, "threads": a.threads,
        "cpu_pct": round(100.0 * a.cpu_ticks / a.hz / a.dt, 1) if a.dt > 0 else None,
        "host_cpu_pct": round(100.0 * a.host_busy / a.host_total, 1) if a.host_total > 0 else None,
        "wrk": {
            "requests": tot["requests"],
            "rps": round(tot["requests"] / dur, 1),
            "p50_ms": ka["p50_us"] / 1000.0 if ka and ka["requests"] else None,
            "p99_ms": ka["p99_us"] / 1000.0 if ka and ka["requests"] else None,
            "max_ms": ka["max_us"] / 1000.0 if ka and ka["requests"] else None,
            "p99_close_ms": cl["p99_us"] / 1000.0 if cl and cl["requests"] else None,
            "c502": tot["c502"], "c503": tot["c503"], "c504": tot["c504"],
            "other_http": tot["c4xx"] + tot["c5xx"],
            "err_connect": tot["err_connect"], "err_read": tot["err_read"],
            "err_write": tot["err_write"], "err_timeout": tot["err_timeout"],
            "keepalive": ka, "close": cl,
        },
        "l4": {"ok": l4["ok"], "errors": l4_err, "connect": l4["connect"], "reset": l4["reset"],
               "timeout": l4["timeout"], "bad": l4["bad"], "p99_ms": l4["p99_ms"]},
        "errors": errors,
        "err_pct": round(100.0 * errors / attempts, 3) if attempts else None,
        "flap_window": a.flap == 1,
        "events": [e for e in a.events.split("|") if e] + notes,
    }
    with open(a.samples, "a") as f:
        f.write(json.dumps(sample) + "\n")
    print(row_md(sample), flush=True)


# ---------------------------------------------------------------- verdict


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def log_summary(path):
    levels, msgs = {}, {}
    try:
        with open(path, errors="replace") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    d = json.loads(line)
                    lvl = str(d.get("level", "?"))
                    msg = str(d.get("msg", ""))[:100]
                except ValueError:
                    lvl, msg = "text", line[:100]
                levels[lvl] = levels.get(lvl, 0) + 1
                key = "%s: %s" % (lvl, msg)
                msgs[key] = msgs.get(key, 0) + 1
    except OSError:
        pass
    top = sorted(msgs.items(), key=lambda kv: -kv[1])[:8]
    return levels, top


def cmd_report(a):
    samples = []
    with open(a.samples) as f:
        for line in f:
            if line.strip():
                samples.append(json.loads(line))
    meta = json.loads(a.meta)
    events = []
    if os.path.exists(a.events):
        with open(a.events) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 4:
                    events.append({"t": float(parts[0]), "kind": parts[1], "result": parts[2],
                                   "detail": parts[3]})
    warm = max(60.0, 0.1 * a.duration)
    post = [s for s in samples if s["t"] > warm]
    checks = []

    def check(name, ok, text):
        checks.append({"name": name, "pass": bool(ok), "text": text})

    if len(post) >= 6:
        rss0 = med([s["rss_kb"] for s in post[:3]])
        rss1 = med([s["rss_kb"] for s in post[-3:]])
        check("rss", rss1 <= 1.10 * rss0,
              "RSS end %.1f MB vs after warm-up %.1f MB: %+.1f%% (limit +10%%)"
              % (rss1 / 1024, rss0 / 1024, 100.0 * (rss1 - rss0) / rss0))
        fd0 = med([s["fds"] for s in post[:3]])
        fd1 = med([s["fds"] for s in post[-3:]])
        check("fds", fd1 <= fd0 + 20,
              "fds end %g vs after warm-up %g: %+g (limit +20)" % (fd1, fd0, fd1 - fd0))
        k = len(post) // 3
        p0 = med([s["wrk"]["p99_ms"] for s in post[:k]])
        p1 = med([s["wrk"]["p99_ms"] for s in post[-k:]])
        if p0 is None or p1 is None:
            check("p99", False, "p99 missing (no completed keep-alive requests)")
        else:
            lim = max(a.p99_ratio * p0, p0 + a.p99_slack_ms)
            check("p99", p1 <= lim,
                  "p99 median of last third %.2f ms vs first third %.2f ms (%d samples each): "
                  "x%.2f (limit max(%.2fx, +%.1f ms) = %.2f ms)"
                  % (p1, p0, k, p1 / p0 if p0 else float("inf"), a.p99_ratio, a.p99_slack_ms, lim))
    else:
        check("samples", False, "only %d samples after the %.0f s warm-up (need >= 6)"
              % (len(post), warm))
    check("alive", a.alive == 1 and a.health == 200,
          "gogate %s at the end, /health %s" % ("running" if a.alive == 1 else "NOT running",
                                               a.health))
    reloads = [e for e in events if e["kind"].startswith("reload")]
    bad_reloads = [e for e in reloads if e["result"] != "ok"]
    check("reloads", not bad_reloads,
          "%d reloads (%s), %d failed%s" % (
              len(reloads),
              ", ".join("%s %d" % (k, sum(1 for e in reloads if e["kind"] == "reload-" + k))
                        for k in ("edit", "hup", "api")),
              len(bad_reloads),
              "".join("; t=%.0f %s: %s" % (e["t"], e["kind"], e["detail"]) for e in bad_reloads)))

    # informational: errors inside / outside the flapping backend's windows
    def errs(ss):
        return sum(s["errors"] for s in ss)
    flap = [s for s in samples if s["flap_window"]]
    calm = [s for s in samples if not s["flap_window"]]
    tot_att = sum(s["wrk"]["requests"] + s["wrk"]["err_connect"] + s["wrk"]["err_read"]
                  + s["wrk"]["err_write"] + s["l4"]["ok"] + s["l4"]["errors"] for s in samples)
    tot_err = errs(samples)
    agg = {k: sum(s["wrk"][k] for s in samples) for k in
           ("requests", "c502", "c503", "c504", "other_http", "err_connect", "err_read",
            "err_write", "err_timeout")}
    agg["l4_ok"] = sum(s["l4"]["ok"] for s in samples)
    agg["l4_errors"] = sum(s["l4"]["errors"] for s in samples)
    info = [
        "traffic: %d HTTP responses + %d L4 exchanges; errors %d = %.3f%% "
        "(502 %d, 503 %d, 504 %d, other HTTP %d, socket connect/read/write/timeout %d/%d/%d/%d, "
        "L4 %d)" % (agg["requests"], agg["l4_ok"] + agg["l4_errors"], tot_err,
                    100.0 * tot_err / tot_att if tot_att else 0.0, agg["c502"], agg["c503"],
                    agg["c504"], agg["other_http"], agg["err_connect"], agg["err_read"],
                    agg["err_write"], agg["err_timeout"], agg["l4_errors"]),
        "errors in intervals where the flapping backend went down/up or was down: %d "
        "(%d intervals); in the other %d intervals: %d%s" % (
            errs(flap), len(flap), len(calm), errs(calm),
            "  <-- not explained by the flapping backend" if errs(calm) else ""),
    ]
    levels, top = log_summary(a.log)
    info.append("gogate log lines by level: %s" % (
        ", ".join("%s %d" % kv for kv in sorted(levels.items())) or "none"))
    for msg, n in top:
        info.append("  %5d x %s" % (n, msg))

    ok = all(c["pass"] for c in checks)
    lines = ["# gogate soak result", ""]
    lines.append("- date: %s; gogate: %s; commit: %s; host: %s CPUs, load at start %s" % (
        meta.get("date"), meta.get("version"), meta.get("commit"), meta.get("cpus"),
        meta.get("loadavg")))
    lines.append("- duration %d s, interval %d s, warm-up %.0f s; load: keep-alive wrk -c%s "
                 "~%s req/s, Connection: close wrk -c%s ~%s req/s, L4 ~%s conn/s; flapping "
                 "backend %s down %s s every %s s; reload every %s s (edit / SIGHUP / POST "
                 "/reload)" % (a.duration, meta.get("interval"), warm, meta.get("ka_conns"),
                               meta.get("rate"), meta.get("close_conns"), meta.get("close_rate"),
                               meta.get("l4_rate"), meta.get("flap_backend"),
                               meta.get("flap_down"), meta.get("flap_period"),
                               meta.get("reload_every")))
    lines.append("- p99 / p50 are the keep-alive wrk's (the main traffic); req/s counts both "
                 "wrk processes; gogate CPU % is of one core, host CPU % of all cores (other "
                 "jobs included); err % = (non-2xx/3xx + socket errors + L4 errors) / attempts.")
    lines += ["", HEADER, SEP] + [row_md(s) for s in samples] + [""]
    lines.append("## Verdict: %s" % ("PASS" if ok else "FAIL"))
    lines.append("")
    for c in checks:
        lines.append("- %s %s: %s" % ("PASS" if c["pass"] else "FAIL", c["name"], c["text"]))
    lines.append("")
    lines.append("## Notes (informational)")
    lines.append("")
    lines += ["- " + i if not i.startswith("  ") else "    -" + i[1:] for i in info]
    lines.append("")
    md = "\n".join(lines)
    os.makedirs(os.path.dirname(os.path.abspath(a.out_md)), exist_ok=True)
    with open(a.out_md, "w") as f:
        f.write(md)
    with open(a.out_json, "w") as f:
        json.dump({"schema": 1, "meta": meta, "warmup_s": warm, "pass": ok, "checks": checks,
                   "totals": agg, "errors_total": tot_err, "errors_outside_flap": errs(calm),
                   "events": events, "samples": samples, "log_levels": levels}, f, indent=1)
    print()
    print("\n".join(lines[lines.index("## Verdict: %s" % ("PASS" if ok else "FAIL")):]))
    sys.exit(0 if ok else 1)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ports")
    p.add_argument("n", type=int)
    p = sub.add_parser("l4client")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--out", required=True)
    sub.add_parser("header")
    p = sub.add_parser("jfield")
    p.add_argument("paths", nargs="+")
    p = sub.add_parser("row")
    p.add_argument("--samples", required=True)
    p.add_argument("--t", type=float, required=True)
    p.add_argument("--dt", type=float, required=True)
    p.add_argument("--rss-kb", type=int, required=True)
    p.add_argument("--fds", type=int, required=True)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--cpu-ticks", type=int, default=0)
    p.add_argument("--hz", type=int, default=100)
    p.add_argument("--host-busy", type=int, default=0)
    p.add_argument("--host-total", type=int, default=0)
    p.add_argument("--ka", required=True)
    p.add_argument("--close", required=True)
    p.add_argument("--l4", required=True)
    p.add_argument("--t-from", type=int, required=True)
    p.add_argument("--t-to", type=int, required=True)
    p.add_argument("--flap", type=int, default=0)
    p.add_argument("--events", default="")
    p = sub.add_parser("report")
    for k in ("--samples", "--events", "--meta", "--log", "--out-md", "--out-json"):
        p.add_argument(k, required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--alive", type=int, required=True)
    p.add_argument("--health", default="000")
    p.add_argument("--p99-ratio", type=float, default=1.5)
    p.add_argument("--p99-slack-ms", type=float, default=2.0)
    a = ap.parse_args()
    if a.cmd == "row":
        a.t = int(round(a.t))
    if a.cmd == "report":
        a.health = int(a.health) if str(a.health).isdigit() else 0
    {"header": lambda _: print(HEADER + "\n" + SEP), "ports": cmd_ports, "l4client": cmd_l4client, "jfield": cmd_jfield, "row": cmd_row,
     "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
