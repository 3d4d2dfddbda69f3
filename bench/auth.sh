#!/usr/bin/env bash
# The cost of JWT checks on the L7 path, as ratios from one run: one gogate with three routes to
# the same backend, `/none` (no auth), `/hs` (auth: jwt, an HS256 token) and `/rs` (auth: jwt, an
# RS256 token), each loaded in turn with the same wrk shape as ../shared/bench/peers.sh's L7
# keep-alive scenario (wrk -t1 -c64, proxy and backend pinned to CPU 0, wrk to CPU 1), rounds
# interleaved. Reports req/s and gogate CPU µs per request, and each auth route's ratio to /none.
# (peers.sh's wrk cannot send an Authorization header, hence this script.)
#
# Usage: GOGATE_BIN=target/release/gogate bench/auth.sh [--duration S] [--rounds N] [--conns C]
#        [--out FILE]   (defaults 10 s, 3 rounds, 64 connections, bench/auth-result.md)
# Needs wrk, nginx (the backend) and openssl (keys and token signatures); missing packages are
# installed with apt-get when run as root. Traffic on 127.0.0.1 only; every process started is
# killed by PID on exit.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${GOGATE_BIN:-$REPO/target/release/gogate}"
DURATION=10 ROUNDS=3 CONNS=64 OUT="$REPO/bench/auth-result.md"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="${2:?}"; shift ;;
    --rounds) ROUNDS="${2:?}"; shift ;;
    --conns) CONNS="${2:?}"; shift ;;
    --out) OUT="${2:?}"; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "auth.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
for v in DURATION ROUNDS CONNS; do
  case "${!v}" in (''|*[!0-9]*) echo "auth.sh: $v must be a positive integer" >&2; exit 2 ;; esac
done
[ -x "$BIN" ] || { echo "auth.sh: no gogate binary at $BIN (cargo build --release)" >&2; exit 2; }

need=()
for t in wrk nginx openssl; do command -v "$t" >/dev/null 2>&1 || need+=("$t"); done
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "auth.sh: missing ${need[*]}" >&2; exit 2; }
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P_BACK=$(free_port) P_HTTP=$(free_port) P_ADMIN=$(free_port)
PIN_PROXY=() PIN_LOAD=()
if [ "$(nproc)" -ge 2 ]; then PIN_PROXY=(taskset -c 0) PIN_LOAD=(taskset -c 1); fi

# Backend: nginx answering every path with a ~100-byte body, one worker.
mkdir -p "$WORK/nginx"
cat > "$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx;
  proxy_temp_path $WORK/nginx;
  fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx;
  scgi_temp_path $WORK/nginx;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$P_BACK;
    location / { default_type text/plain; return 200 "$(printf 'x%.0s' $(seq 1 100))"; }
  }
}
EOF
"${PIN_PROXY[@]}" nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
PIDS+=($!)

# Keys and tokens (openssl only): HS256 with a random secret, RS256 with a fresh RSA key.
SECRET="$(openssl rand -hex 32)"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/rsa.key" 2>/dev/null
openssl pkey -in "$WORK/rsa.key" -pubout -out "$WORK/rsa.pub"
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
EXP=$(( $(date +%s) + 86400 ))
PAYLOAD=$(printf '{"sub":"bench-user","exp":%d}' "$EXP" | b64url)
HS_HEAD=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
RS_HEAD=$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)
HS_SIG=$(printf '%s' "$HS_HEAD.$PAYLOAD" | openssl dgst -sha256 -hmac "$SECRET" -binary | b64url)
RS_SIG=$(printf '%s' "$RS_HEAD.$PAYLOAD" | openssl dgst -sha256 -sign "$WORK/rsa.key" -binary | b64url)
HS_TOKEN="$HS_HEAD.$PAYLOAD.$HS_SIG"
RS_TOKEN="$RS_HEAD.$PAYLOAD.$RS_SIG"

cat > "$WORK/gogate.yaml" <<EOF
server:
  listenAddr: ""
  httpListenAddr: "127.0.0.1:$P_HTTP"
  backends: [{addr: "127.0.0.1:$P_BACK"}]
  health: {enabled: false}
  admin: {enabled: true, listenAddr: "127.0.0.1:$P_ADMIN"}
  metrics: {enabled: false}
jwt:
  algorithms: ["HS256", "RS256"]
  secret: "$SECRET"
  publicKeyFile: "rsa.pub"
  forwardClaims: {sub: "X-User-Id"}
routes:
  - {name: none, match: {pathPrefix: "/none"}, upstreams: [{name: default}]}
  - {name: hs, match: {pathPrefix: "/hs"}, upstreams: [{name: default}], auth: jwt}
  - {name: rs, match: {pathPrefix: "/rs"}, upstreams: [{name: default}], auth: jwt}
logging: {level: "warn", accessLog: false}
EOF
"$BIN" validate -config "$WORK/gogate.yaml" >/dev/null
"${PIN_PROXY[@]}" "$BIN" -config "$WORK/gogate.yaml" > "$WORK/gogate.log" 2>&1 &
GPID=$!
PIDS+=("$GPID")

ready=0
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$P_ADMIN/ready" >/dev/null 2>&1 \
     && curl -fsS "http://127.0.0.1:$P_HTTP/none" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.1
done
[ "$ready" = 1 ] || { echo "auth.sh: gogate or nginx did not start" >&2; cat "$WORK/gogate.log" >&2; exit 2; }
# Each token is accepted (a 401 here would measure rejections, not checks).
for pair in "hs:$HS_TOKEN" "rs:$RS_TOKEN"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer ${pair#*:}" "http://127.0.0.1:$P_HTTP/${pair%%:*}")
  [ "$code" = 200 ] || { echo "auth.sh: /${pair%%:*} answered $code to a valid token" >&2; exit 2; }
done
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_HTTP/hs")
[ "$code" = 401 ] || { echo "auth.sh: /hs without a token answered $code" >&2; exit 2; }

CLK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$GPID/stat"; }
# run NAME HEADER...: one wrk run; prints "req/s cpu_us_per_request non2xx"
run() {
  local path=$1; shift
  local t0 t1 out
  t0=$(cpu_ticks)
  out=$("${PIN_LOAD[@]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$@" "http://127.0.0.1:$P_HTTP/$path/x")
  t1=$(cpu_ticks)
  python3 - "$out" "$t0" "$t1" "$CLK" <<'PY'
import re, sys
out, t0, t1, clk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
reqs = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
cpu_us = (t1 - t0) * 1e6 / clk / max(reqs, 1)
print(f"{rps:.0f} {cpu_us:.1f} {bad.group(1) if bad else 0}")
PY
}

"${PIN_LOAD[@]}" wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$P_HTTP/none/warm" >/dev/null
declare -A RPS CPU BAD
for r in $(seq 1 "$ROUNDS"); do
  for name in none hs rs; do
    case $name in
      none) res=$(run none) ;;
      hs) res=$(run hs -H "Authorization: Bearer $HS_TOKEN") ;;
      rs) res=$(run rs -H "Authorization: Bearer $RS_TOKEN") ;;
    esac
    read -r rps cpu bad <<<"$res"
    RPS[$name]="${RPS[$name]:-} $rps"; CPU[$name]="${CPU[$name]:-} $cpu"; BAD[$name]=$(( ${BAD[$name]:-0} + bad ))
    echo "auth.sh: round $r $name: $rps req/s, $cpu CPU µs/request, $bad non-2xx" >&2
  done
done

python3 - "$OUT" "$ROUNDS" "$DURATION" "$CONNS" \
  "${RPS[none]}" "${RPS[hs]}" "${RPS[rs]}" "${CPU[none]}" "${CPU[hs]}" "${CPU[rs]}" \
  "${BAD[none]}" "${BAD[hs]}" "${BAD[rs]}" <<'PY'
import statistics, sys
out, rounds, dur, conns = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
f = lambda s: [float(x) for x in s.split()]
rps = dict(zip(["none", "hs", "rs"], map(f, sys.argv[5:8])))
cpu = dict(zip(["none", "hs", "rs"], map(f, sys.argv[8:11])))
bad = dict(zip(["none", "hs", "rs"], sys.argv[11:14]))
med = {k: statistics.median(v) for k, v in rps.items()}
cmed = {k: statistics.median(v) for k, v in cpu.items()}
rows = [
    "| route | req/s (median of %s) | ratio to no auth | gogate CPU µs/request | ratio to no auth | non-2xx |" % rounds,
    "|---|---:|---:|---:|---:|---:|",
]
names = {"none": "`/none` (no auth)", "hs": "`/hs` (auth: jwt, HS256)", "rs": "`/rs` (auth: jwt, RS256)"}
for k in ["none", "hs", "rs"]:
    rows.append("| %s | %.0f | %.2fx | %.1f | %.2fx | %s |" % (
        names[k], med[k], med[k] / med["none"], cmed[k], cmed[k] / cmed["none"], bad[k]))
text = ("# JWT cost on the L7 path (bench/auth.sh)\n\n"
        "wrk -t1 -c%s -d%ss per run, %s interleaved rounds; gogate and the nginx backend on CPU 0, "
        "wrk on CPU 1.\n\n" % (conns, dur, rounds)) + "\n".join(rows) + "\n"
open(out, "w").write(text)
print(text)
PY
