#!/usr/bin/env bash
# The cost of a `scope: global` rate limit (issue 12): two `../shared/bench/peers.sh --only l7`
# runs, gogate with bench/baseline.template.yaml and with bench/cluster.template.yaml (a global
# limit that never rejects, in a redis-server this script starts on 127.0.0.1:19599, pinned
# with the load generator so the proxy's CPU is the proxy's), and the ratio of gogate's figures.
# onStoreDown is deny, so a request that did not reach the store would show as an error.
# Usage: GOGATE_BIN=target/release/gogate bench/cluster.sh [--quick]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN="${GOGATE_BIN:-target/release/gogate}"
PEERS="${PEERS:-../shared/bench/peers.sh}"
QUICK=()
[ "${1:-}" = "--quick" ] && QUICK=(--quick)
command -v redis-server >/dev/null || { echo "redis-server is needed (apt-get install redis-server)" >&2; exit 2; }
TMP=$(mktemp -d)
REDIS_PID=""
cleanup() { [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
PORT=19599   # the port bench/cluster.template.yaml names (outside peers.sh's BASE+1..BASE+333)
if redis-cli -p "$PORT" ping >/dev/null 2>&1; then echo "port $PORT is busy" >&2; exit 2; fi
taskset -c "${BENCH_LOAD_CPUS:-1}" redis-server --port "$PORT" --bind 127.0.0.1 --save "" \
  --appendonly no --daemonize no --loglevel warning >"$TMP/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 1 50); do redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done

run() { # run NAME TEMPLATE
  GOGATE_BIN="$BIN" GOGATE_CONFIG_TEMPLATE="$2" BENCH_OUT="$TMP/$1.json" \
    "$PEERS" --only l7 "${QUICK[@]}" >"$TMP/$1.log" 2>&1 || { tail -20 "$TMP/$1.log"; exit 1; }
}
run baseline bench/baseline.template.yaml
run cluster bench/cluster.template.yaml
echo "tokens taken in the store: $(redis-cli -p "$PORT" info commandstats | grep -o 'cmdstat_evalsha:calls=[0-9]*' || echo none)"
python3 - "$TMP/baseline.json" "$TMP/cluster.json" <<'PY'
import json, sys
def figures(path):
    d = json.load(open(path))
    out = {}
    def walk(node, name):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{name}.{k}" if name else k)
        elif isinstance(node, (int, float)) and "gogate" in name:
            out[name] = node
    walk(d, "")
    return out
base, clus = figures(sys.argv[1]), figures(sys.argv[2])
print(f"{'figure':70} {'baseline':>12} {'global limit':>12} {'ratio':>7}")
for k in sorted(base):
    if k in clus and base[k]:
        print(f"{k:70} {base[k]:12.1f} {clus[k]:12.1f} {clus[k]/base[k]:7.2f}")
PY
