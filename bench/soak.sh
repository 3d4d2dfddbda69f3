#!/usr/bin/env bash
# Soak test of gogate (not in CI): mixed L7 + L4 traffic for --duration seconds with periodic
# config reloads and a flapping backend; samples gogate's RSS, open fds, CPU, req/s, p50/p99 and
# errors every --interval seconds and judges leaks and latency drift after the warm-up.
#
# Usage: GOGATE_BIN=target/release/gogate bench/soak.sh [--duration S] [--interval S] [--out FILE]
#        [--rate N] [--close-rate N] [--l4-rate N] [--flap-period S] [--flap-down S]
#        [--reload-every S] [--p99-ratio X] [--p99-slack-ms MS] [--no-install] [--keep] [--help]
#   --duration S      traffic time, default 600            --interval S   sample period, default 10
#   --out FILE        Markdown result (default bench/soak-result.md); a .json twin beside it
#   --rate N          keep-alive wrk (-c16, GET/POST mix) target req/s, default 400
#   --close-rate N    Connection: close wrk (-c4) target req/s, default 40
#   --l4-rate N       L4 connect/exchange/close per second, default 20
#   --flap-period S / --flap-down S   backend b3 is killed every S s (first at 20 s) and
#                     restarted after --flap-down s; defaults 40 / 15
#   --reload-every S  reload period (rotating file edit / SIGHUP / POST /reload), default 30
#   --p99-ratio X, --p99-slack-ms MS  p99 flatness rule (defaults 1.5 and 2, see bench/README.md)
#   --no-install      a missing tool is an error instead of an apt-get install
#   --keep            keep the temp dir (config, gogate log, raw wrk output) and print its path
# Exit: 0 pass, 1 fail (a criterion violated), 2 setup error, 130/143 interrupted.
# Traffic is on 127.0.0.1 only; every process started is killed by PID on exit.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
LIB="$HERE/soak_lib.py"
DURATION=600 INTERVAL=10 OUT="bench/soak-result.md"
RATE=400 CLOSE_RATE=40 L4_RATE=20
FLAP_PERIOD=40 FLAP_DOWN=15 FLAP_FIRST=20 RELOAD_EVERY=30
P99_RATIO=1.5 P99_SLACK_MS=2
KA_CONNS=16 CLOSE_CONNS=4
INSTALL=1 KEEP=0

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "soak.sh: $*" >&2; exit 2; }
say() { echo "soak.sh: $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="${2:?--duration needs a value}"; shift ;;
    --interval) INTERVAL="${2:?--interval needs a value}"; shift ;;
    --out) OUT="${2:?--out needs a value}"; shift ;;
    --rate) RATE="${2:?--rate needs a value}"; shift ;;
    --close-rate) CLOSE_RATE="${2:?--close-rate needs a value}"; shift ;;
    --l4-rate) L4_RATE="${2:?--l4-rate needs a value}"; shift ;;
    --flap-period) FLAP_PERIOD="${2:?--flap-period needs a value}"; shift ;;
    --flap-down) FLAP_DOWN="${2:?--flap-down needs a value}"; shift ;;
    --reload-every) RELOAD_EVERY="${2:?--reload-every needs a value}"; shift ;;
    --p99-ratio) P99_RATIO="${2:?--p99-ratio needs a value}"; shift ;;
    --p99-slack-ms) P99_SLACK_MS="${2:?--p99-slack-ms needs a value}"; shift ;;
    --no-install) INSTALL=0 ;;
    --keep) KEEP=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "soak.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

for v in DURATION INTERVAL RATE CLOSE_RATE L4_RATE FLAP_PERIOD FLAP_DOWN RELOAD_EVERY; do
  case "${!v}" in (''|*[!0-9]*) die "$v must be a positive integer (got '${!v}')" ;; esac
  [ "${!v}" -gt 0 ] || die "$v must be > 0"
done
[ "$FLAP_DOWN" -lt "$FLAP_PERIOD" ] || die "--flap-down must be shorter than --flap-period"
WARMUP=$(( DURATION / 10 > 60 ? DURATION / 10 : 60 ))
if [ $(( (DURATION - WARMUP) / INTERVAL )) -lt 6 ]; then
  die "--duration $DURATION leaves fewer than 6 samples of $INTERVAL s after the ${WARMUP} s warm-up (use >= $(( WARMUP + 6 * INTERVAL )))"
fi
SLICES=$(( DURATION / INTERVAL ))

GOGATE_BIN="${GOGATE_BIN:-$REPO/target/release/gogate}"
[ -x "$GOGATE_BIN" ] || die "GOGATE_BIN=$GOGATE_BIN is not an executable (build with cargo build --release)"
GOGATE_BIN="$(cd "$(dirname "$GOGATE_BIN")" && pwd)/$(basename "$GOGATE_BIN")"
case "$OUT" in (*.md) OUT_JSON="${OUT%.md}.json" ;; (*) OUT_JSON="$OUT.json" ;; esac

# ------------------------------------------------------------------ tools
declare -A PKG=( [wrk]=wrk [curl]=curl [python3]=python3 )
need=()
for cmd in "${!PKG[@]}"; do command -v "$cmd" >/dev/null 2>&1 || need+=("${PKG[$cmd]}"); done
if [ "${#need[@]}" -gt 0 ]; then
  [ "$INSTALL" = 1 ] || die "missing packages: ${need[*]} (run without --no-install, as root, to apt-get them)"
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "missing packages: ${need[*]}; need root + apt-get to install them"
  fi
  say "installing ${need[*]} ..."
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"; } \
    >&2 || die "apt-get install ${need[*]} failed"
fi

# ------------------------------------------------------------------ work dir, PID tracking, cleanup
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
WORK="$(mktemp -d -t gogate-soak.XXXXXX)"
mkdir -p "$WORK/etc" "$WORK/wrk"
CONF="$WORK/etc/gogate.yaml"     # its own directory: gogate watches the config's directory
GLOG="$WORK/gogate.log"
PIDS="$WORK/pids"
: > "$PIDS"

starttime() { local s; s="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1; s="${s##*) }"; echo "$s" | awk '{print $20}'; }
track() { local st; st="$(starttime "$1")" || return 0; echo "$1 $st" >> "$PIDS"; }
# shellcheck disable=SC2317  # kill_tracked and cleanup run from the EXIT trap
# TERM (then KILL) the recorded PIDs that still have their recorded start time
kill_tracked() {
  local pid st cur
  local -a alive=()
  while read -r pid st; do
    cur="$(starttime "$pid")" || continue
    if [ "$cur" = "$st" ]; then alive+=("$pid"); kill -TERM "$pid" 2>/dev/null || true; fi
  done < "$PIDS"
  [ "${#alive[@]}" -gt 0 ] || return 0
  for _ in $(seq 1 30); do
    local left=0
    for pid in "${alive[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
    [ "$left" = 0 ] && break
    sleep 0.1
  done
  for pid in "${alive[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
# shellcheck disable=SC2317
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  kill_tracked
  wait 2>/dev/null || true
  if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }   # seconds since $1
log_tail() { tail -n 15 "$GLOG" 2>/dev/null | sed 's/^/    /' >&2; }

# ------------------------------------------------------------------ ports and backends
read -r P_L4 P_L7 P_ADMIN P_METRICS < <(python3 "$LIB" ports 4) || die "no free ports"
[ -n "${P_METRICS:-}" ] || die "no free ports"
ADMIN="http://127.0.0.1:$P_ADMIN"
METRICS="http://127.0.0.1:$P_METRICS/metrics"

declare -A BPORT BPID
start_backend() {   # name [port]
  local name="$1" port="${2:-0}" pf="$WORK/$1.port"
  rm -f "$pf"
  python3 "$HERE/soak_backend.py" --name "$name" --port "$port" --port-file "$pf" \
    >>"$WORK/$name.log" 2>&1 &
  BPID[$name]=$!
  track "${BPID[$name]}"
  for _ in $(seq 1 50); do
    if [ -s "$pf" ]; then BPORT[$name]="$(cat "$pf")"; return 0; fi
    kill -0 "${BPID[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  return 1
}
for b in b1 b2 b3; do start_backend "$b" || { tail -5 "$WORK/$b.log" >&2; die "backend $b did not start"; }; done
FLAP=b3

# ------------------------------------------------------------------ gogate config
W_DEFAULT=80 W_V2=20
write_config() {   # atomic rename, so the watcher never sees a half-written file
  cat > "$CONF.tmp" <<EOF
# generated by bench/soak.sh
server:
  listenAddr: "127.0.0.1:$P_L4"
  httpListenAddr: "127.0.0.1:$P_L7"
  backends:
    - {addr: "127.0.0.1:${BPORT[b1]}", weight: 1}
    - {addr: "127.0.0.1:${BPORT[b2]}", weight: 1}
    - {addr: "127.0.0.1:${BPORT[b3]}", weight: 1}
  loadBalancer: "round_robin"
  health: {enabled: true, checkType: "http", httpPath: "/health", interval: 1s, timeout: 500ms,
           unhealthyThreshold: 2, healthyThreshold: 2}
  circuitBreaker: {enabled: true, failureThreshold: 5, successThreshold: 2, timeout: 5s}
  retry: {attempts: 2}
  timeouts: {connect: 1s, request: 10s, idle: 30s}
  admin: {enabled: true, listenAddr: "127.0.0.1:$P_ADMIN"}
  metrics: {enabled: true, listenAddr: "127.0.0.1:$P_METRICS", path: "/metrics"}
upstreams:
  api-v2:
    backends:
      - {addr: "127.0.0.1:${BPORT[b2]}"}
      - {addr: "127.0.0.1:${BPORT[b3]}"}
    loadBalancer: "least_connections"
routes:
  - name: "api"
    match: {pathPrefix: "/api"}
    upstreams:
      - {name: "default", weight: $W_DEFAULT}
      - {name: "api-v2", weight: $W_V2}
  - name: "pages"
    match: {pathPrefix: "/pages", methods: ["GET", "HEAD"]}
    upstreams: [{name: "default", weight: 1}]
    stripPrefix: true
logging: {level: "warn", format: "json"}
EOF
  mv -f "$CONF.tmp" "$CONF"
}
write_config
"$GOGATE_BIN" validate -config "$CONF" >"$WORK/validate.out" 2>&1 || { cat "$WORK/validate.out" >&2; die "generated config does not validate"; }

# ------------------------------------------------------------------ gogate
"$GOGATE_BIN" -config "$CONF" >"$GLOG" 2>&1 &
GG=$!
track "$GG"
ready=0
for _ in $(seq 1 100); do
  kill -0 "$GG" 2>/dev/null || { say "gogate exited at start:"; log_tail; exit 2; }
  if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$ADMIN/ready" || true)" = 200 ]; then ready=1; break; fi
  sleep 0.1
done
[ "$ready" = 1 ] || { say "gogate not ready within 10 s:"; log_tail; exit 2; }
# all three backends healthy before the traffic starts (first probes + healthyThreshold)
for _ in $(seq 1 50); do
  n="$(curl -s --max-time 1 "$ADMIN/backends" | grep -o '"healthy":true' | wc -l || true)"
  [ "${n:-0}" -ge 5 ] && break
  sleep 0.2
done
code7="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$P_L7/api/x" || true)"
code4="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$P_L4/x" || true)"
if [ "$code7" != 200 ] || [ "$code4" != 200 ]; then say "smoke request failed: L7 $code7, L4 $code4"; log_tail; exit 2; fi

VERSION="$("$GOGATE_BIN" version 2>/dev/null | head -1 || echo '?')"
COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
HZ="$(getconf CLK_TCK 2>/dev/null || echo 100)"
say "gogate $VERSION (pid $GG) L7 :$P_L7 L4 :$P_L4 admin :$P_ADMIN metrics :$P_METRICS;" \
    "backends b1 :${BPORT[b1]} b2 :${BPORT[b2]} b3 :${BPORT[b3]} (flaps); work dir $WORK"
say "duration ${DURATION}s, interval ${INTERVAL}s, warm-up ${WARMUP}s; ${SLICES} intervals"

# ------------------------------------------------------------------ helpers for the loop
EVENTS="$WORK/events.tsv"
SAMPLES="$WORK/samples.jsonl"
: > "$EVENTS"; : > "$SAMPLES"
SLICE_EVENTS=""
note_event() {   # kind result detail
  local t; t="$(since "$T0")"
  printf '%s\t%s\t%s\t%s\n' "$t" "$1" "$2" "$3" >> "$EVENTS"
  SLICE_EVENTS="${SLICE_EVENTS:+$SLICE_EVENTS|}$3"
  [ "$2" = ok ] || say "t=${t}s $1: $3"
}
metric() {   # value of an unlabelled-or-exact series, 0 if absent
  { curl -s --max-time 2 "$METRICS" || true; } | awk -v k="$1" '$1 == k {print $2; f=1} END {if (!f) print 0}'
}
config_state() { { curl -s --max-time 2 "$ADMIN/config" || true; } | python3 "$LIB" jfield generation last_reload.result last_reload.time; }

RELOAD_N=0
do_reload() {
  local kind s0 f0 gen0 res0 time0 s1 f1 gen1 res1 time1 body code ok=0
  case $(( RELOAD_N % 3 )) in 0) kind=edit ;; 1) kind=hup ;; *) kind=api ;; esac
  RELOAD_N=$(( RELOAD_N + 1 ))
  s0="$(metric 'gogate_config_reloads_total{result="success"}')"
  f0="$(metric 'gogate_config_reloads_total{result="failure"}')"
  read -r gen0 res0 time0 < <(config_state)
  case "$kind" in
    edit)
      if [ "$W_V2" = 20 ]; then W_DEFAULT=60 W_V2=40; else W_DEFAULT=80 W_V2=20; fi
      write_config ;;
    hup) kill -HUP "$GG" ;;
    api)
      body="$(curl -s --max-time 5 -w ' HTTP%{http_code}' -X POST "$ADMIN/reload" || true)"
      code="${body##* HTTP}"
      if [ "$code" != 200 ]; then note_event "reload-api" fail "reload api FAILED: $body"; return; fi ;;
  esac
  for _ in $(seq 1 50); do
    sleep 0.1
    s1="$(metric 'gogate_config_reloads_total{result="success"}')"
    f1="$(metric 'gogate_config_reloads_total{result="failure"}')"
    read -r gen1 res1 time1 < <(config_state)
    if [ "$f1" != "$f0" ]; then ok=2; break; fi
    if awk -v a="$s1" -v b="$s0" 'BEGIN{exit !(a > b)}' && [ "$res1" = success ] \
       && { [ "$kind" != edit ] || [ "${gen1:-0}" -gt "${gen0:-0}" ] 2>/dev/null; }; then ok=1; break; fi
  done
  case "$ok" in
    1) note_event "reload-$kind" ok "reload $kind ok (gen $gen1)" ;;
    2) note_event "reload-$kind" fail "reload $kind FAILED (failure counter $f0 -> $f1, result $res1)" ;;
    *) note_event "reload-$kind" fail "reload $kind NOT SEEN in 5 s (success counter $s0 -> $s1, gen $gen0 -> $gen1, last_reload $res0@$time0 -> $res1@$time1)" ;;
  esac
}

FLAP_STATE=up
flap_down() {
  kill -TERM "${BPID[$FLAP]}" 2>/dev/null || true
  wait "${BPID[$FLAP]}" 2>/dev/null || true
  FLAP_STATE=down
  note_event "flap-down" ok "$FLAP down"
}
flap_up() {
  if start_backend "$FLAP" "${BPORT[$FLAP]}"; then
    FLAP_STATE=up
    note_event "flap-up" ok "$FLAP up"
  else
    note_event "flap-up" fail "$FLAP restart FAILED (port ${BPORT[$FLAP]})"
  fi
}

# ------------------------------------------------------------------ traffic
ka_delay=$(( KA_CONNS * 1000 / RATE )); [ "$ka_delay" -gt 0 ] || ka_delay=1
cl_delay=$(( CLOSE_CONNS * 1000 / CLOSE_RATE )); [ "$cl_delay" -gt 0 ] || cl_delay=1
L4OUT="$WORK/l4.txt"
python3 "$LIB" l4client --port "$P_L4" --rate "$L4_RATE" --out "$L4OUT" 2>>"$WORK/l4client.err" &
L4PID=$!
track "$L4PID"

python3 "$LIB" header

T0="$(now)"
next_flap=$FLAP_FIRST next_up=0 next_reload=$RELOAD_EVERY
ALIVE=1 ROWPID=""
cpu_ticks() { awk '{s=$0; sub(/.*\) /, "", s); split(s, f, " "); print f[12] + f[13]}' "/proc/$GG/stat" 2>/dev/null || echo 0; }
host_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
prev_ticks="$(cpu_ticks)"
read -r prev_hbusy prev_htotal < <(host_ticks)
for ((i = 1; i <= SLICES; i++)); do
  s_start="$(now)"
  SLICE_EVENTS=""
  in_flap=0; [ "$FLAP_STATE" = down ] && in_flap=1
  wrk -t1 -c"$KA_CONNS" -d"${INTERVAL}s" --timeout 5s -s "$HERE/soak_mix.lua" \
    "http://127.0.0.1:$P_L7" -- "$ka_delay" >"$WORK/wrk/ka.$i" 2>&1 &
  ka=$!; track "$ka"
  wrk -t1 -c"$CLOSE_CONNS" -d"${INTERVAL}s" --timeout 5s -s "$HERE/soak_mix.lua" \
    "http://127.0.0.1:$P_L7" -- "$cl_delay" close >"$WORK/wrk/close.$i" 2>&1 &
  cl=$!; track "$cl"
  while kill -0 "$ka" 2>/dev/null || kill -0 "$cl" 2>/dev/null; do
    el="$(since "$T0")"; el="${el%.*}"
    if ! kill -0 "$GG" 2>/dev/null; then ALIVE=0; break; fi
    if [ "$FLAP_STATE" = up ] && [ "$el" -ge "$next_flap" ]; then
      flap_down; in_flap=1; next_up=$(( next_flap + FLAP_DOWN )); next_flap=$(( next_flap + FLAP_PERIOD ))
    elif [ "$FLAP_STATE" = down ] && [ "$el" -ge "$next_up" ]; then
      flap_up; in_flap=1
    fi
    if [ "$el" -ge "$next_reload" ]; then do_reload; next_reload=$(( next_reload + RELOAD_EVERY )); fi
    sleep 0.2
  done
  wait "$ka" 2>/dev/null || true
  wait "$cl" 2>/dev/null || true
  s_end="$(now)"
  if ! kill -0 "$GG" 2>/dev/null; then ALIVE=0; fi
  if [ "$ALIVE" = 0 ]; then
    note_event "gogate" fail "gogate EXITED"
    say "gogate is gone; log tail:"; log_tail
    break
  fi
  rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$GG/status" 2>/dev/null || echo 0)"
  thr="$(awk '/^Threads:/ {print $2}' "/proc/$GG/status" 2>/dev/null || echo 0)"
  fds="$({ find "/proc/$GG/fd" -mindepth 1 -maxdepth 1 2>/dev/null || true; } | wc -l)"
  ticks="$(cpu_ticks)"
  read -r hbusy htotal < <(host_ticks)
  # the row is computed while the next interval's traffic already runs (no gap between slices)
  [ -z "$ROWPID" ] || wait "$ROWPID" 2>/dev/null || true
  t_end="$(awk -v a="$T0" -v b="$s_end" 'BEGIN{printf "%.1f", b-a}')"
  # (the L4 client writes a second's line when the next second starts: give it 0.5 s)
  { sleep 0.5; python3 "$LIB" row --samples "$SAMPLES" --t "$t_end" \
    --dt "$(awk -v a="$s_start" -v b="$s_end" 'BEGIN{print b-a}')" \
    --rss-kb "$rss" --fds "$fds" --threads "$thr" --cpu-ticks $(( ticks - prev_ticks )) --hz "$HZ" \
    --host-busy $(( hbusy - prev_hbusy )) --host-total $(( htotal - prev_htotal )) \
    --ka "$WORK/wrk/ka.$i" --close "$WORK/wrk/close.$i" --l4 "$L4OUT" \
    --t-from "${s_start%.*}" --t-to "${s_end%.*}" --flap "$in_flap" --events "$SLICE_EVENTS" \
    || say "interval $i: sample not recorded"; } &
  ROWPID=$!
  prev_ticks=$ticks prev_hbusy=$hbusy prev_htotal=$htotal
done

# ------------------------------------------------------------------ verdict
[ -z "$ROWPID" ] || wait "$ROWPID" 2>/dev/null || true
kill -TERM "$L4PID" 2>/dev/null || true
[ "$FLAP_STATE" = down ] && flap_up
health=000
if kill -0 "$GG" 2>/dev/null; then
  health="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$ADMIN/health" || echo 000)"
  curl -s --max-time 2 "$ADMIN/backends" > "$WORK/backends.final.json" || true
  curl -s --max-time 2 "$ADMIN/stats" > "$WORK/stats.final.json" || true
else
  ALIVE=0
fi
META="$(python3 - "$VERSION" "$COMMIT" <<EOF
import json, sys, time, os
print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "version": sys.argv[1],
  "commit": sys.argv[2], "cpus": os.cpu_count(), "loadavg": open("/proc/loadavg").read().split()[0],
  "interval": $INTERVAL, "rate": $RATE, "close_rate": $CLOSE_RATE, "l4_rate": $L4_RATE,
  "ka_conns": $KA_CONNS, "close_conns": $CLOSE_CONNS, "flap_backend": "$FLAP",
  "flap_period": $FLAP_PERIOD, "flap_down": $FLAP_DOWN, "reload_every": $RELOAD_EVERY}))
EOF
)"
rc=0
python3 "$LIB" report --samples "$SAMPLES" --events "$EVENTS" --meta "$META" --log "$GLOG" \
  --out-md "$OUT" --out-json "$OUT_JSON" --duration "$DURATION" --alive "$ALIVE" --health "$health" \
  --p99-ratio "$P99_RATIO" --p99-slack-ms "$P99_SLACK_MS" || rc=$?
say "wrote $OUT and $OUT_JSON"
exit "$rc"
