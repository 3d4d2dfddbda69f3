#!/usr/bin/env python3
"""The chart's contract, checked on one rendering (manifests + the values Helm used), and the
rendered files split for the schema tools that verify.sh runs next.

    check_manifests.py MANIFESTS VALUES_JSON OUTDIR --tls-cert CRT --tls-key KEY

Writes into OUTDIR:
  core.yaml             the Kubernetes built-in kinds (for kubernetes-validate --strict)
  servicemonitor.yaml   the ServiceMonitor, when rendered (a CRD: for check-jsonschema)
  config.yaml           the gogate config exactly as in the ConfigMap
  config.validate.yaml  the same with the TLS Secret mount paths pointing at OUTDIR/tls*/ (test
                        certificates copied there), for `gogate validate`, which reads the files
Checks (each failure is printed; exit 1 if any):
  - every kind is one the chart is meant to render; standard labels on every object;
  - the Deployment: no spec.replicas with an HPA (else replicaCount); selector = pod labels;
    the ConfigMap mounted as a directory at /etc/gogate (no subPath); the probes /health and
    /ready on the admin port; non-root, read-only, no capabilities, RuntimeDefault seccomp;
    terminationGracePeriodSeconds above server.shutdown.drainTimeout + preStop sleep; the
    container ports equal the config's listener ports; TLS files on Secret mounts outside
    /etc/gogate; GOGATE_ADMIN_TOKEN from a Secret (the chart's Secret has the key), and the
    token never in the ConfigMap; checksum/config present exactly with configReload=restart and
    equal to the config's sha256;
  - cluster (shared state): the config's cluster block is the values' (none without a store);
    no password in cluster.store; GOGATE_REDIS_PASSWORD from cluster.passwordSecret's Secret and
    key (and only then); cluster.caFile on a Secret/ConfigMap mount outside /etc/gogate, from
    cluster.ca; checksum/cluster-store exactly when a store is set;
  - the proxy Service carries no admin/metrics port; the admin Service is ClusterIP; every
    Service targetPort is a container port and every selector selects the pods;
  - HPA targets the Deployment; PDB selects the pods; the Ingress goes to the proxy Service's
    http port; the ServiceMonitor selects the admin Service (only it) on its metrics port and
    scrapes the config's metrics path.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import re
import shutil
import sys

import yaml

CORE_KINDS = {
    "ConfigMap", "Secret", "Service", "ServiceAccount", "Deployment",
    "HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress",
}
CRD_KINDS = {"ServiceMonitor"}
TLS_DIR = "/etc/gogate-tls"
SNI_DIR = "/etc/gogate-tls-sni"
REDIS_CA_DIR = "/etc/gogate-redis-ca"

errors: list[str] = []


def check(cond: bool, msg: str) -> bool:
    if not cond:
        errors.append(msg)
    return cond


def duration_seconds(value) -> float:
    """gogate's duration syntax (config/src/duration.rs): a bare number is seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    factors = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6, "µs": 1e-6}
    parts = re.findall(r"([0-9]*\.?[0-9]+)(ms|us|µs|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a gogate duration: {value!r}")
    return sum(float(n) * factors[u] for n, u in parts)


def port_of(addr: str) -> int | None:
    return int(addr.rsplit(":", 1)[1]) if addr else None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("manifests")
    ap.add_argument("values_json")
    ap.add_argument("outdir")
    ap.add_argument("--tls-cert", required=True)
    ap.add_argument("--tls-key", required=True)
    args = ap.parse_args()
    out = pathlib.Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    values = json.loads(pathlib.Path(args.values_json).read_text())
    docs = [d for d in yaml.safe_load_all(pathlib.Path(args.manifests).read_text()) if d]

    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
        check(d["kind"] in CORE_KINDS | CRD_KINDS, f"unexpected kind {d['kind']}")
        labels = d["metadata"].get("labels") or {}
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                    "app.kubernetes.io/managed-by", "helm.sh/chart"):
            check(key in labels, f"{d['kind']}/{d['metadata']['name']}: label {key} missing")

    core = [d for d in docs if d["kind"] in CORE_KINDS]
    (out / "core.yaml").write_text(yaml.safe_dump_all(core, sort_keys=False))
    sms = by_kind.get("ServiceMonitor", [])
    if sms:
        (out / "servicemonitor.yaml").write_text(yaml.safe_dump(sms[0], sort_keys=False))
    check(len(sms) == (1 if values["serviceMonitor"]["enabled"] else 0),
          "one ServiceMonitor exactly when serviceMonitor.enabled")

    # The config.
    (cm,) = by_kind["ConfigMap"]
    text = cm["data"]["config.yaml"]
    (out / "config.yaml").write_text(text)
    cfg = yaml.safe_load(text) or {}
    server = cfg.get("server") or {}
    admin = server.get("admin") or {}
    metrics = server.get("metrics") or {}
    tls = server.get("tls") or {}
    check(not admin.get("token"), "admin token written into the ConfigMap")
    check(admin.get("enabled", True) is not False, "admin API disabled (the probes need it)")
    check(admin.get("listenAddr", "").startswith(":"),
          f"admin listens on {admin.get('listenAddr')!r}, not on all interfaces")

    # The Deployment and its pod.
    (dep,) = by_kind["Deployment"]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    annotations = spec["template"]["metadata"].get("annotations") or {}
    hpa = by_kind.get("HorizontalPodAutoscaler", [])
    if values["autoscaling"]["enabled"]:
        check(len(hpa) == 1, "autoscaling.enabled but no HPA")
        check("replicas" not in spec, "spec.replicas set although the HPA owns the count")
    else:
        check(not hpa, "HPA rendered with autoscaling off")
        check(spec.get("replicas") == values["replicaCount"], "spec.replicas != replicaCount")
    match = spec["selector"]["matchLabels"]
    check(match.items() <= pod_labels.items(), "Deployment selector does not select its pods")

    (ctr,) = [c for c in pod["containers"] if c["name"] == "gogate"]
    ports = {p["name"]: p["containerPort"] for p in ctr.get("ports", [])}
    mounts = {m["name"]: m for m in ctr.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    config_mounts = [m for m in ctr["volumeMounts"] if m["mountPath"] == "/etc/gogate"]
    if check(len(config_mounts) == 1, "no single volume mounted at /etc/gogate"):
        m = config_mounts[0]
        check("subPath" not in m and "subPathExpr" not in m,
              "config mounted with subPath: ConfigMap updates would never reach the file")
        check(volumes[m["name"]].get("configMap", {}).get("name") == cm["metadata"]["name"],
              "the /etc/gogate volume is not the chart's ConfigMap")
    for m in ctr["volumeMounts"]:
        check(m["mountPath"] == "/etc/gogate" or not m["mountPath"].startswith("/etc/gogate/"),
              f"{m['mountPath']}: nested inside the config volume")
    check(ctr["livenessProbe"]["httpGet"] == {"path": "/health", "port": "admin"},
          "liveness probe is not GET /health on the admin port")
    check(ctr["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "admin"},
          "readiness probe is not GET /ready on the admin port")

    psc, csc = pod.get("securityContext") or {}, ctr.get("securityContext") or {}
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532,
          "pod not runAsNonRoot / runAsUser 65532")
    check((psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
          "pod seccompProfile not RuntimeDefault")
    check(csc.get("readOnlyRootFilesystem") is True, "root filesystem writable")
    check(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation not false")
    check("ALL" in ((csc.get("capabilities") or {}).get("drop") or []), "capabilities not dropped")
    check(pod.get("automountServiceAccountToken") is False, "service account token mounted")

    drain = duration_seconds((server.get("shutdown") or {}).get("drainTimeout", "30s"))
    pre = (((ctr.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
    grace = pod.get("terminationGracePeriodSeconds")
    check(isinstance(grace, int) and grace > drain + pre,
          f"terminationGracePeriodSeconds {grace} not above drainTimeout {drain}s + preStop {pre}s")

    # Listener addresses of the config = container ports.
    want = {
        "tcp": port_of(server.get("listenAddr", "")),
        "http": port_of(server.get("httpListenAddr", "")),
        "https": port_of(tls.get("listenAddr", "")) if tls.get("enabled") else None,
        "admin": port_of(admin.get("listenAddr", "")),
        "metrics": port_of(metrics.get("listenAddr", "")) if metrics.get("enabled", True) else None,
    }
    for name, port in want.items():
        check(ports.get(name) == port,
              f"container port {name}={ports.get(name)} but the config listens on {port}")
    if server.get("listenAddr"):
        check(bool(server.get("backends")) or (server.get("registry") or {}).get("enabled"),
              "L4 listener without backends")

    # TLS files live on Secret volumes outside /etc/gogate.
    tls_map: dict[str, pathlib.Path] = {}
    if tls.get("enabled"):
        pairs = [(tls.get("certFile"), tls.get("keyFile"))]
        pairs += [(p.get("certFile"), p.get("keyFile")) for p in tls.get("certificates") or []]
        for f, test_file in [(c, args.tls_cert) for c, _ in pairs] + [(k, args.tls_key) for _, k in pairs]:
            d = str(pathlib.PurePosixPath(f).parent)
            mount = [m for m in ctr["volumeMounts"] if m["mountPath"] == d]
            if check(len(mount) == 1, f"TLS file {f}: its directory {d} is not a volume mount"):
                check("secret" in volumes[mount[0]["name"]], f"TLS file {f}: {d} is not a Secret volume")
            check(not d.startswith("/etc/gogate/"), f"TLS file {f} inside the config volume")
            local = out / ("tls" + d.replace("/", "_")) / pathlib.PurePosixPath(f).name
            local.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(test_file, local)
            tls_map[f] = local
    validate_text = text
    for f, local in tls_map.items():
        validate_text = validate_text.replace(f, str(local))
    (out / "config.validate.yaml").write_text(validate_text)
    if tls_map:
        print(f"config.validate.yaml: {len(tls_map)} TLS file path(s) point at test certificates")

    # The admin token.
    env = {e["name"]: e for e in ctr.get("env", [])}
    secrets = {s["metadata"]["name"]: s for s in by_kind.get("Secret", [])}
    tok = values["adminToken"]
    if tok.get("existingSecret") or tok.get("value"):
        ref = ((env.get("GOGATE_ADMIN_TOKEN") or {}).get("valueFrom") or {}).get("secretKeyRef")
        if check(bool(ref), "adminToken set but GOGATE_ADMIN_TOKEN is not from a Secret"):
            if tok.get("existingSecret"):
                check(ref["name"] == tok["existingSecret"], "token Secret is not existingSecret")
            else:
                sec = secrets.get(ref["name"])
                check(sec is not None and ref["key"] in (sec.get("data") or {}),
                      "GOGATE_ADMIN_TOKEN refers to a Secret/key the chart does not render")
    else:
        check("GOGATE_ADMIN_TOKEN" not in env, "GOGATE_ADMIN_TOKEN without adminToken")

    # cluster: shared state through an existing Redis.
    cv = values["cluster"]
    cl = cfg.get("cluster")
    redis_env = env.get("GOGATE_REDIS_PASSWORD")
    if cv["store"]:
        if check(isinstance(cl, dict), "cluster.store set but the config has no cluster block"):
            for key in ("store", "keyPrefix", "registry", "rateLimit", "timeout", "onStoreDown"):
                check(cl.get(key) == cv[key],
                      f"config cluster.{key} {cl.get(key)!r} != values cluster.{key} {cv[key]!r}")
            userinfo = cl["store"].split("://", 1)[-1].rpartition("@")[0]
            check(":" not in userinfo or not userinfo.split(":", 1)[1],
                  "a password in cluster.store (the ConfigMap)")
        check(bool(annotations.get("checksum/cluster-store")),
              "cluster.store set but no checksum/cluster-store annotation (a store change would not roll the pods)")
    else:
        check(not (cl or {}).get("store"), "a cluster.store in the config without values cluster.store")
        check("checksum/cluster-store" not in annotations, "checksum/cluster-store without a store")
    if cv["passwordSecret"]["name"]:
        ref = ((redis_env or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
        check(ref == {"name": cv["passwordSecret"]["name"], "key": cv["passwordSecret"]["key"]},
              f"GOGATE_REDIS_PASSWORD is not from Secret {cv['passwordSecret']['name']} key {cv['passwordSecret']['key']}")
    else:
        check(redis_env is None, "GOGATE_REDIS_PASSWORD without cluster.passwordSecret")
    ca_file = (cl or {}).get("caFile", "")
    ca_src = cv["ca"]["secretName"] or cv["ca"]["configMapName"]
    check(bool(ca_file) == bool(ca_src), f"cluster.caFile {ca_file!r} but values cluster.ca {cv['ca']!r}")
    if ca_file:
        d = str(pathlib.PurePosixPath(ca_file).parent)
        check(d == REDIS_CA_DIR, f"cluster.caFile {ca_file} not under {REDIS_CA_DIR}")
        check(cl["store"].startswith("rediss://"), "cluster.caFile with a store that is not rediss://")
        # gogate validate sees a PEM file there (the test certificate stands in for the CA).
        local = out / "redis-ca" / pathlib.PurePosixPath(ca_file).name
        local.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(args.tls_cert, local)
        validate_text = validate_text.replace(ca_file, str(local))
        (out / "config.validate.yaml").write_text(validate_text)
        print("config.validate.yaml: cluster.caFile points at a test certificate")
        mount = [m for m in ctr["volumeMounts"] if m["mountPath"] == d]
        if check(len(mount) == 1, f"cluster.caFile {ca_file}: {d} is not a volume mount"):
            vol = volumes[mount[0]["name"]]
            if cv["ca"]["secretName"]:
                check((vol.get("secret") or {}).get("secretName") == cv["ca"]["secretName"],
                      f"cluster.caFile: {d} is not Secret {cv['ca']['secretName']}")
            else:
                check((vol.get("configMap") or {}).get("name") == cv["ca"]["configMapName"],
                      f"cluster.caFile: {d} is not ConfigMap {cv['ca']['configMapName']}")

    # configReload.
    digest = hashlib.sha256(text.rstrip("\n").encode()).hexdigest()
    if values["configReload"] == "restart":
        check(annotations.get("checksum/config") == digest,
              "configReload=restart: checksum/config missing or not the config's sha256")
    else:
        check("checksum/config" not in annotations, "configReload=hot but checksum/config set")

    # Services.
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    admin_svcs = [s for s in services.values()
                  if {p["name"] for p in s["spec"]["ports"]} & {"admin"}]
    check(len(admin_svcs) == 1, "not exactly one Service with the admin port")
    for s in services.values():
        sel = s["spec"]["selector"]
        check(sel.items() <= pod_labels.items(), f"Service {s['metadata']['name']} misses the pods")
        names = {p["name"] for p in s["spec"]["ports"]}
        for p in s["spec"]["ports"]:
            check(p["targetPort"] in ports, f"Service port {p['name']}: no container port {p['targetPort']}")
        if s not in admin_svcs:
            check(not names & {"admin", "metrics"},
                  f"Service {s['metadata']['name']} exposes {names & {'admin', 'metrics'}}")
        else:
            check(s["spec"].get("type", "ClusterIP") == "ClusterIP", "admin Service not ClusterIP")
    for h in hpa:
        check(h["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                              "name": dep["metadata"]["name"]},
              "HPA does not target the Deployment")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        check(pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items(),
              "PDB does not select the pods")
    for ing in by_kind.get("Ingress", []):
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                svc = path["backend"]["service"]
                target = services.get(svc["name"])
                check(target is not None and target not in admin_svcs
                      and svc["port"].get("name") == "http"
                      and "http" in {p["name"] for p in target["spec"]["ports"]},
                      "Ingress backend is not the proxy Service's http port")
    for sm in sms:
        sel = sm["spec"]["selector"]["matchLabels"]
        chosen = [s for s in services.values()
                  if sel.items() <= (s["metadata"].get("labels") or {}).items()]
        check(chosen == admin_svcs, "ServiceMonitor does not select the admin Service alone")
        for ep in sm["spec"]["endpoints"]:
            check(any(p["name"] == ep["port"] for s in chosen for p in s["spec"]["ports"]),
                  f"ServiceMonitor port {ep['port']} not on the admin Service")
            check(ep.get("path") == metrics.get("path", "/metrics"),
                  f"ServiceMonitor path {ep.get('path')} != metrics path")

    kinds = ", ".join(f"{k} x{len(v)}" if len(v) > 1 else k for k, v in sorted(by_kind.items()))
    for e in errors:
        print(f"CONTRACT ERROR: {e}")
    print(f"chart contract: {len(docs)} objects ({kinds}): "
          f"{'FAILED, ' + str(len(errors)) + ' error(s)' if errors else 'all checks passed'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
