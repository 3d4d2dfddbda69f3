#!/usr/bin/env bash
# Short k6 runs of every script in k6/ for CI against a real gateway: `gogate demo` (L7 :8081,
# echo backends on 127.0.0.1:9001/9002, admin :9090, metrics :9091; these ports and :9003, the
# circuit-breaker test's dead backend, must be free). Exits non-zero when a k6 threshold fails. GOGATE_BIN defaults to target/release/gogate.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN="${GOGATE_BIN:-target/release/gogate}"
PID=""
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; fi; }
trap stop EXIT

start() { # start [config]: the demo, waiting (bounded) until L7 answers
  if [ $# -gt 0 ]; then "$BIN" demo -config "$1" >/dev/null 2>&1 & else "$BIN" demo >/dev/null 2>&1 & fi
  PID=$!
  for _ in $(seq 1 50); do
    curl -sf -m 1 -o /dev/null http://127.0.0.1:8081/hello && return 0
    sleep 0.2
  done
  echo "gateway did not answer on 127.0.0.1:8081" >&2; return 1
}

start
for s in steady ramp spike; do
  echo "== k6 load-test.js SCENARIO=$s"
  SCENARIO=$s K6_SHORT=1 k6 run --quiet k6/load-test.js
done
stop

start k6/configs/rate-limit.yaml
echo "== k6 rate-limit-test.js"
K6_SHORT=1 k6 run --quiet k6/rate-limit-test.js
stop

start
echo "== k6 soak-test.js"
K6_SHORT=1 k6 run --quiet k6/soak-test.js
stop

start k6/configs/circuit-breaker.yaml
echo "== k6 circuit-breaker-test.js"
K6_SHORT=1 k6 run --quiet k6/circuit-breaker-test.js
stop
