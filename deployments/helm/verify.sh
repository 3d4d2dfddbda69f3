#!/usr/bin/env bash
# Verifies the Helm chart deployments/helm/gogate offline, with Helm's own code:
#   1. helm lint (strict) with the default values and with each case below;
#   2. helm template (render) of each case: the default values, every examples/*.yaml (among them
#      cluster-values.yaml: shared state through cluster.store), and a few --set/--set-file cases
#      (restart mode with the chart's token Secret and the registry on two replicas; TLS with an
#      SNI certificate and config/examples/production.yaml as rawConfig; a rediss:// store with a
#      CA from a Secret, a local-scope server.rateLimit and the registry not shared);
#   3. the chart's contract on each rendering (check_manifests.py: probes, mounts, security
#      context, ports = config listeners, grace period > drain timeout, selectors, ...);
#   4. the rendered built-in kinds against the Kubernetes JSON schemas (kubernetes-validate
#      --strict, Kubernetes $KUBE_VERSIONS and the newest the package ships); the ServiceMonitor, a
#      CRD kubernetes-validate has no schema for, against schemas/servicemonitor-v1.schema.json
#      with check-jsonschema (strict: unknown fields are errors); any kind without a schema fails;
#   5. the gogate config of each rendered ConfigMap with `gogate validate` (TLS paths pointing at
#      the test certificates of config/examples/tls);
#   6. NOTES.txt says what it must (the token warning, what the pods share through cluster.store,
#      the per-pod state warnings);
#   7. values the chart must refuse fail the render, with the expected message;
#   8. the validators themselves reject a broken manifest (so a pass means something).
# Helm runs through helm-python-sdk: Helm's Go SDK compiled into a shared library inside the
# wheel (no helm binary, nothing downloaded at run time, no cluster).
#
#   python3 -m pip install helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 check-jsonschema==0.39.0
#   GOGATE_BIN=target/release/gogate deployments/helm/verify.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

GOGATE_BIN="${GOGATE_BIN:-target/release/gogate}"
KUBE_VERSIONS="${KUBE_VERSIONS:-1.29.0 1.30.0}"
chart=deployments/helm/gogate
tls_cert=config/examples/tls/localhost.crt
tls_key=config/examples/tls/localhost.key
py="${PYTHON:-python3}"

if [[ ! -x "$GOGATE_BIN" ]]; then
  echo "verify.sh: no gogate binary at $GOGATE_BIN (build it: cargo build --release, or set GOGATE_BIN)" >&2
  exit 1
fi
if ! "$py" -c 'import helm_python, kubernetes_validate, check_jsonschema, yaml' 2>/dev/null; then
  echo "verify.sh: needs helm-python-sdk, kubernetes-validate and check-jsonschema:" >&2
  echo "  $py -m pip install helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 check-jsonschema==0.39.0" >&2
  exit 1
fi
newest="$("$py" -c 'import kubernetes_validate.utils as u; print(u.latest_version())')"
kube_versions="$KUBE_VERSIONS"
[[ " $kube_versions " == *" $newest "* ]] || kube_versions="$kube_versions $newest"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
# run NAME COMMAND...: runs the command, prints its output, counts it.
run() {
  local name="$1"; shift
  if "$@" >"$work/out" 2>&1; then
    passed=$((passed + 1)); printf 'PASS  %s\n' "$name"
    sed 's/^/      /' "$work/out"
  else
    failed=$((failed + 1)); printf 'FAIL  %s\n' "$name"
    sed 's/^/      /' "$work/out"
  fi
}
# strict_k8s FILE: kubernetes-validate --strict for each version; a kind without a schema (WARN)
# fails too.
strict_k8s() {
  local file="$1" rc=0 v
  for v in $kube_versions; do
    "$py" -m kubernetes_validate --strict -k "$v" "$file" >"$work/kv" 2>&1 || rc=1
    grep -v '^INFO ' "$work/kv" && rc=1
    echo "kubernetes $v: $(grep -c '^INFO .* passed' "$work/kv") object(s) passed"
  done
  return "$rc"
}
# notes_has FILE TEXT...: every TEXT is in the rendered NOTES.
notes_has() {
  local file="$1"; shift
  local t
  for t in "$@"; do
    grep -qF -- "$t" "$file" || { echo "NOTES lack: $t"; return 1; }
    echo "NOTES say: $t"
  done
}
# must_refuse NAME MESSAGE ARGS...: the render fails and says MESSAGE.
must_refuse() {
  local name="$1" msg="$2"; shift 2
  if "$py" "$here/helm_sdk.py" template "$chart" "$@" --out "$work/refused.yaml" >"$work/refuse" 2>&1; then
    echo "rendered although it should not: $*"; return 1
  fi
  grep -qF -- "$msg" "$work/refuse" || { cat "$work/refuse"; echo "message lacks: $msg"; return 1; }
  grep -F -- "$msg" "$work/refuse" | head -n 1 | cut -c 1-220
}

# refuse_quietly NAME MESSAGE SECRET ARGS...: must_refuse, and the output never shows SECRET.
refuse_quietly() {
  local name="$1" msg="$2" secret="$3"; shift 3
  must_refuse "$name" "$msg" "$@" || return 1
  if grep -qF -- "$secret" "$work/refuse"; then echo "the error shows the password"; return 1; fi
  echo "(the error does not show the password)"
}

echo "==> $("$py" "$here/helm_sdk.py" version)"
echo "==> kubernetes-validate $("$py" -m kubernetes_validate --version), Kubernetes $kube_versions;" \
     "$("$py" -m check_jsonschema --version); $("$GOGATE_BIN" version)"

# Cases: NAME|helm arguments (values files, --set, --set-file).
cases=("default|")
for f in "$chart"/examples/*.yaml; do
  cases+=("$(basename "$f" .yaml)|-f $f")
done
cases+=("restart-token-registry|--set configReload=restart --set adminToken.value=not-a-real-token --set replicaCount=2 --set config.server.registry.enabled=true")
cases+=("cluster-rediss-ca|--set cluster.store=rediss://redis.example:6380/1 --set cluster.ca.secretName=redis-ca --set cluster.registry=false --set cluster.onStoreDown=deny --set replicaCount=2 --set config.server.registry.enabled=true --set config.server.rateLimit.enabled=true --set backends[0].addr=web:8080")
cases+=("tls-sni-rawconfig|--set tls.enabled=true --set tls.secretName=gogate-tls --set tls.extraCertificates[0].secretName=api-example-com --set-file rawConfig=config/examples/production.yaml")

for c in "${cases[@]}"; do
  name="${c%%|*}"
  read -r -a args <<<"${c#*|}"
  dir="$work/$name"
  mkdir -p "$dir"
  echo
  echo "==> case $name: ${args[*]:-(default values)}"
  run "$name: helm lint --strict" "$py" "$here/helm_sdk.py" lint "$chart" "${args[@]}"
  run "$name: helm template" "$py" "$here/helm_sdk.py" template "$chart" "${args[@]}" \
    --name gogate --namespace gateway --out "$dir/manifests.yaml" --notes "$dir/NOTES.txt" \
    --values-out "$dir/values.json"
  [[ -s "$dir/manifests.yaml" ]] || continue
  run "$name: chart contract" "$py" "$here/check_manifests.py" "$dir/manifests.yaml" \
    "$dir/values.json" "$dir" --tls-cert "$tls_cert" --tls-key "$tls_key"
  [[ -s "$dir/core.yaml" ]] || continue
  run "$name: kubernetes-validate --strict" strict_k8s "$dir/core.yaml"
  if [[ -s "$dir/servicemonitor.yaml" ]]; then
    run "$name: ServiceMonitor (CRD) check-jsonschema" "$py" -m check_jsonschema \
      --schemafile "$here/schemas/servicemonitor-v1.schema.json" "$dir/servicemonitor.yaml"
  fi
  run "$name: gogate validate (rendered ConfigMap)" "$GOGATE_BIN" validate -config "$dir/config.validate.yaml"
done

echo
echo "==> NOTES.txt"
run "default NOTES: token warning, L4 off without backends" notes_has "$work/default/NOTES.txt" \
  "WARNING: no admin token is set" "tcp    off (no backends" "configReload=hot"
run "original README override NOTES: replicas do not share state" notes_has \
  "$work/original-readme-values/NOTES.txt" "the pods do NOT share state (cluster.store is not set)" \
  "Autoscaling from 2 to 10 pods" "L4" "connection limits stay per pod"
run "cluster example NOTES: registry and the global limit shared, L4 per pod" notes_has \
  "$work/cluster-values/NOTES.txt" "the pods share state through cluster.store" \
  "redis://redis-master.redis.svc:6379/0" "password from Secret gogate-redis, key password" \
  "registry     shared" "scope: global, counted across all pods: route api" \
  "L4 connection limits stay per pod"
run "cluster example: no per-pod warnings" bash -c \
  "! grep -n 'WARNING: rate limits are per pod\|WARNING: server.registry' '$work/cluster-values/NOTES.txt'"
run "rediss store, registry not shared, local server.rateLimit: their warnings" notes_has \
  "$work/cluster-rediss-ca/NOTES.txt" "CA from redis-ca" "registry     NOT shared" \
  "WARNING: server.registry is enabled but not shared (cluster.registry=false)" \
  "WARNING: rate limits are per pod (server.rateLimit)" "give them scope: global" \
  "(server.rateLimit on L4 connections)" "limits answer 503 (onStoreDown=deny)"
run "production NOTES: per-pod rate limit warning, token from the Secret" notes_has \
  "$work/production-values/NOTES.txt" "WARNING: rate limits are per pod (route api)" \
  "get secret gogate-admin-token"
run "two replicas with the registry: registry warning" notes_has \
  "$work/restart-token-registry/NOTES.txt" "WARNING: server.registry is enabled" \
  "Register every service with EVERY pod" "configReload=restart"

echo
echo "==> values the chart refuses"
run "refuses a grace period not above the drain timeout" must_refuse x \
  "must be above server.shutdown.drainTimeout" --set terminationGracePeriodSeconds=30
run "refuses the admin token in the ConfigMap" must_refuse x \
  "would put the token in a ConfigMap" --set config.server.admin.token=secret
run "refuses a typo in a values key (values.schema.json)" must_refuse x \
  "additional properties 'servce' not allowed" --set servce.type=LoadBalancer
run "refuses a listener address the chart owns" must_refuse x \
  "the chart sets it to \":8081\"" --set config.server.httpListenAddr=:9999
run "refuses TLS without a Secret" must_refuse x "tls.enabled needs tls.secretName" --set tls.enabled=true
run "refuses backends set twice" must_refuse x "backends and config.server.backends are both set" \
  --set 'backends[0].addr=a:1' --set 'config.server.backends[0].addr=b:1'
run "refuses a password in cluster.store (it would be in the ConfigMap)" refuse_quietly \
  "use cluster.passwordSecret" "would put the password in the ConfigMap" hunter2 \
  --set cluster.store=redis://gogate:hunter2@redis:6379/0
run "refuses cluster.passwordSecret without cluster.store" must_refuse x \
  "cluster.passwordSecret needs cluster.store" --set cluster.passwordSecret.name=gogate-redis
run "refuses cluster.ca with a redis:// (not TLS) store" must_refuse x \
  "cluster.ca needs a rediss:// (TLS) cluster.store" --set cluster.store=redis://redis:6379/0 \
  --set cluster.ca.secretName=redis-ca
run "refuses config.cluster.store (the chart owns the cluster block)" must_refuse x \
  "the chart sets it to \"\" from cluster.store" --set config.cluster.store=redis://redis:6379/0
run "refuses a cluster.onStoreDown typo (values.schema.json)" must_refuse x \
  "at '/cluster/onStoreDown': value must be one of 'local', 'deny'" --set cluster.onStoreDown=fallback
run "refuses the admin API off (the probes need it)" must_refuse x \
  "config.server.admin.enabled must stay true" --set config.server.admin.enabled=false

echo
echo "==> the validators reject broken manifests"
selftest() {
  "$py" - "$work/default/core.yaml" "$work/original-readme-values/servicemonitor.yaml" "$work" <<'EOF'
import sys, yaml
core, sm, work = sys.argv[1:]
docs = list(yaml.safe_load_all(open(core)))
for d in docs:
    if d["kind"] == "Deployment":
        c = d["spec"]["template"]["spec"]["containers"][0]
        c["readinessProbes"] = c.pop("readinessProbe")          # a misspelt field
open(f"{work}/bad-core.yaml", "w").write(yaml.safe_dump_all(docs))
m = yaml.safe_load(open(sm))
m["spec"]["endpoints"][0]["intervall"] = "30s"                   # a misspelt field
open(f"{work}/bad-sm.yaml", "w").write(yaml.safe_dump(m))
open(f"{work}/bad-config.yaml", "w").write(
    open(f"{work}/default/config.validate.yaml").read().replace("drainTimeout:", "drainTimout:"))
EOF
  if "$py" -m kubernetes_validate --strict --quiet -k 1.30.0 "$work/bad-core.yaml"; then
    echo "kubernetes-validate accepted a misspelt field"; return 1; fi
  if "$py" -m check_jsonschema --schemafile "$here/schemas/servicemonitor-v1.schema.json" "$work/bad-sm.yaml"; then
    echo "check-jsonschema accepted a misspelt ServiceMonitor field"; return 1; fi
  if "$GOGATE_BIN" validate -config "$work/bad-config.yaml"; then
    echo "gogate validate accepted a misspelt key"; return 1; fi
}
run "kubernetes-validate, check-jsonschema and gogate validate reject misspelt fields" selftest

echo
echo "helm chart: $passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
