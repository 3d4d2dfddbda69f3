{{/*
Names, after the scaffold of `helm create` (as the Traefik and ingress-nginx charts do).
*/}}
{{- define "gogate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gogate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The admin Service (admin and metrics ports): "<fullname>-admin", within 63 characters. */}}
{{- define "gogate.adminServiceName" -}}
{{- printf "%s-admin" (include "gogate.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}

{{- define "gogate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gogate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gogate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gogate.labels" -}}
helm.sh/chart: {{ include "gogate.chart" . }}
{{ include "gogate.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gogate
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "gogate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gogate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gogate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/* The Secret holding the admin token, when there is one ("" otherwise). */}}
{{- define "gogate.adminTokenSecretName" -}}
{{- if and .Values.adminToken.existingSecret .Values.adminToken.value }}
{{- fail "adminToken: set existingSecret or value, not both" }}
{{- end }}
{{- if .Values.adminToken.existingSecret }}
{{- .Values.adminToken.existingSecret }}
{{- else if .Values.adminToken.value }}
{{- printf "%s-admin-token" (include "gogate.fullname" . | trunc 51 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{/* Where the TLS Secrets are mounted: outside /etc/gogate (the config volume). */}}
{{- define "gogate.tlsDir" -}}/etc/gogate-tls{{- end }}
{{- define "gogate.sniDir" -}}/etc/gogate-tls-sni{{- end }}

{{/* Where the Redis CA (cluster.ca) is mounted: outside /etc/gogate (the config volume). */}}
{{- define "gogate.redisCaDir" -}}/etc/gogate-redis-ca{{- end }}

{{/*
gogate.redisCaFile: cluster.caFile of the rendered config ("" without cluster.ca); refuses the
cluster values that cannot work (a password in cluster.store, a CA without rediss://, ...).
*/}}
{{- define "gogate.redisCaFile" -}}
{{- $c := .Values.cluster }}
{{- $rest := regexReplaceAll "^[a-z]+://" $c.store "" }}
{{- if contains "@" $rest }}
{{- $userinfo := regexReplaceAll "@[^@]*$" $rest "" }}
{{- if and (contains ":" $userinfo) (ne (regexReplaceAll "^[^:]*:" $userinfo "") "") }}
{{- fail "cluster.store has a password in its URL, which would put the password in the ConfigMap (and in the release's values): remove it from the URL, store it in a Secret (kubectl create secret generic gogate-redis --from-literal=password=...) and set cluster.passwordSecret.name=gogate-redis (key: cluster.passwordSecret.key, default password)" }}
{{- end }}
{{- end }}
{{- if and $c.passwordSecret.name (not $c.store) }}
{{- fail "cluster.passwordSecret needs cluster.store: the password is for the Redis given there" }}
{{- end }}
{{- if and $c.passwordSecret.name (not $c.passwordSecret.key) }}
{{- fail "cluster.passwordSecret.key must name the password's key in the Secret" }}
{{- end }}
{{- if $c.passwordSecret.name }}
{{- range .Values.extraEnv }}
{{- if eq (toString .name) "GOGATE_REDIS_PASSWORD" }}
{{- fail "GOGATE_REDIS_PASSWORD is in extraEnv and cluster.passwordSecret is set; keep cluster.passwordSecret" }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $c.ca.secretName $c.ca.configMapName }}
{{- fail "cluster.ca: set secretName or configMapName, not both" }}
{{- end }}
{{- if or $c.ca.secretName $c.ca.configMapName }}
{{- if not (hasPrefix "rediss://" $c.store) }}
{{- fail "cluster.ca needs a rediss:// (TLS) cluster.store: a CA verifies the Redis server's certificate" }}
{{- end }}
{{- if not $c.ca.key }}{{ fail "cluster.ca.key must name the CA file's key in the Secret or ConfigMap" }}{{ end }}
{{- printf "%s/%s" (include "gogate.redisCaDir" .) $c.ca.key }}
{{- end }}
{{- end }}

{{/*
gogate.clusterStoreChecksum: the cluster settings gogate reads at start only (store, keyPrefix,
registry): a pod-template annotation, so changing them rolls the pods. "" without a store.
*/}}
{{- define "gogate.clusterStoreChecksum" -}}
{{- $c := .Values.cluster }}
{{- if $c.store }}
{{- printf "%s|%s|%v" $c.store $c.keyPrefix $c.registry | sha256sum }}
{{- end }}
{{- end }}

{{/*
gogate.canonical: moves a snake_case alias of a config key (gogate accepts both spellings) to the
camelCase key, so the chart's checks and settings see one key.
Args: map, key, aliases, path.
*/}}
{{- define "gogate.canonical" -}}
{{- $m := .map }}
{{- range .aliases }}
{{- if hasKey $m . }}
{{- if hasKey $m $.key }}
{{- fail (printf "config: %s.%s and its alias %s.%s are both set; keep one" $.path $.key $.path .) }}
{{- end }}
{{- $_ := set $m $.key (get $m .) }}
{{- $_ := unset $m . }}
{{- end }}
{{- end }}
{{- end }}

{{/* gogate.ensureMap: makes map[key] a mapping (created when absent or null). Args: map, key, path. */}}
{{- define "gogate.ensureMap" -}}
{{- $cur := get .map .key }}
{{- if or (not (hasKey .map .key)) (kindIs "invalid" $cur) }}
{{- $_ := set .map .key dict }}
{{- else if not (kindIs "map" $cur) }}
{{- fail (printf "config: %s.%s must be a mapping, not %q" .path .key (toString $cur)) }}
{{- end }}
{{- end }}

{{/*
gogate.manage: a config key the chart sets from its values. A different value written in the
config fails the render, naming the value to set instead. Args: map, key, want, path, hint.
*/}}
{{- define "gogate.manage" -}}
{{- $cur := get .map .key }}
{{- if and (hasKey .map .key) (not (kindIs "invalid" $cur)) (ne (toString $cur) (toString .want)) }}
{{- fail (printf "config: %s.%s is %q, but the chart sets it to %q from %s; remove it from the config and set %s instead" .path .key (toString $cur) (toString .want) .hint .hint) }}
{{- end }}
{{- $_ := set .map .key .want }}
{{- end }}

{{/*
gogate.configYaml: the gogate configuration file as rendered into the ConfigMap: `config` (or
`rawConfig`), with the keys the chart owns set from the values (listeners, TLS paths, backends).
Other templates read it back with `include "gogate.configYaml" . | fromYaml`.
*/}}
{{- define "gogate.configYaml" -}}
{{- $v := .Values }}
{{- $cfg := dict }}
{{- if $v.rawConfig }}
{{- $cfg = fromYaml $v.rawConfig }}
{{- if hasKey $cfg "Error" }}
{{- fail (printf "rawConfig is not a YAML mapping: %v" (get $cfg "Error")) }}
{{- end }}
{{- else if $v.config }}
{{- $cfg = deepCopy $v.config }}
{{- end }}
{{- if not (has $v.configReload (list "hot" "restart")) }}
{{- fail (printf "configReload must be hot or restart, not %q" (toString $v.configReload)) }}
{{- end }}

{{- include "gogate.ensureMap" (dict "map" $cfg "key" "server" "path" "config") }}
{{- $server := get $cfg "server" }}
{{- include "gogate.canonical" (dict "map" $server "key" "listenAddr" "aliases" (list "listen" "listen_addr") "path" "server") }}
{{- include "gogate.canonical" (dict "map" $server "key" "httpListenAddr" "aliases" (list "http_listen" "http_listen_addr") "path" "server") }}
{{- include "gogate.canonical" (dict "map" $server "key" "rateLimit" "aliases" (list "rate_limit") "path" "server") }}

{{- /* backends: the original README's top-level key */}}
{{- if $v.backends }}
{{- if get $server "backends" }}
{{- fail "backends and config.server.backends are both set; set one of them" }}
{{- end }}
{{- $_ := set $server "backends" $v.backends }}
{{- end }}

{{- /* cluster: shared state through an existing Redis, from the values cluster.* */}}
{{- $c := $v.cluster }}
{{- $caFile := include "gogate.redisCaFile" . }}
{{- if or $c.store (hasKey $cfg "cluster") }}
{{- include "gogate.ensureMap" (dict "map" $cfg "key" "cluster" "path" "config") }}
{{- $cl := get $cfg "cluster" }}
{{- include "gogate.canonical" (dict "map" $cl "key" "keyPrefix" "aliases" (list "key_prefix") "path" "cluster") }}
{{- include "gogate.canonical" (dict "map" $cl "key" "rateLimit" "aliases" (list "rate_limit") "path" "cluster") }}
{{- include "gogate.canonical" (dict "map" $cl "key" "onStoreDown" "aliases" (list "on_store_down") "path" "cluster") }}
{{- include "gogate.canonical" (dict "map" $cl "key" "caFile" "aliases" (list "ca_file") "path" "cluster") }}
{{- include "gogate.manage" (dict "map" $cl "key" "store" "want" $c.store "path" "cluster" "hint" "cluster.store") }}
{{- if $c.store }}
{{- include "gogate.manage" (dict "map" $cl "key" "keyPrefix" "want" $c.keyPrefix "path" "cluster" "hint" "cluster.keyPrefix") }}
{{- include "gogate.manage" (dict "map" $cl "key" "registry" "want" $c.registry "path" "cluster" "hint" "cluster.registry") }}
{{- include "gogate.manage" (dict "map" $cl "key" "rateLimit" "want" $c.rateLimit "path" "cluster" "hint" "cluster.rateLimit") }}
{{- include "gogate.manage" (dict "map" $cl "key" "timeout" "want" $c.timeout "path" "cluster" "hint" "cluster.timeout") }}
{{- include "gogate.manage" (dict "map" $cl "key" "onStoreDown" "want" $c.onStoreDown "path" "cluster" "hint" "cluster.onStoreDown") }}
{{- end }}
{{- include "gogate.manage" (dict "map" $cl "key" "caFile" "want" $caFile "path" "cluster" "hint" "cluster.ca") }}
{{- if not (get $cl "caFile") }}{{ $_ := unset $cl "caFile" }}{{ end }}
{{- end }}

{{- $registryOn := false }}
{{- $registry := get $server "registry" }}
{{- if and (kindIs "map" $registry) (get $registry "enabled") }}{{ $registryOn = true }}{{ end }}

{{- /* L4: gogate refuses an L4 listener without backends to forward to (unless the registry fills them) */}}
{{- $tcpWant := "" }}
{{- if and $v.ports.tcp.enabled (or (get $server "backends") $registryOn) }}
{{- $tcpWant = printf ":%v" $v.ports.tcp.port }}
{{- end }}
{{- include "gogate.manage" (dict "map" $server "key" "listenAddr" "want" $tcpWant "path" "server" "hint" "ports.tcp (on when backends are set)") }}
{{- $httpWant := "" }}
{{- if $v.ports.http.enabled }}{{ $httpWant = printf ":%v" $v.ports.http.port }}{{ end }}
{{- include "gogate.manage" (dict "map" $server "key" "httpListenAddr" "want" $httpWant "path" "server" "hint" "ports.http") }}

{{- /* TLS: the certificates come from Secrets mounted outside the config volume */}}
{{- if or $v.tls.enabled (hasKey $server "tls") }}
{{- include "gogate.ensureMap" (dict "map" $server "key" "tls" "path" "server") }}
{{- $tls := get $server "tls" }}
{{- include "gogate.canonical" (dict "map" $tls "key" "listenAddr" "aliases" (list "listen" "listen_addr") "path" "server.tls") }}
{{- include "gogate.canonical" (dict "map" $tls "key" "certFile" "aliases" (list "cert_file") "path" "server.tls") }}
{{- include "gogate.canonical" (dict "map" $tls "key" "keyFile" "aliases" (list "key_file") "path" "server.tls") }}
{{- if $v.tls.enabled }}
{{- if not $v.tls.secretName }}
{{- fail "tls.enabled needs tls.secretName: a Secret with the certificate and key (kubectl create secret tls NAME --cert=FILE --key=FILE)" }}
{{- end }}
{{- include "gogate.manage" (dict "map" $tls "key" "enabled" "want" true "path" "server.tls" "hint" "tls.enabled") }}
{{- include "gogate.manage" (dict "map" $tls "key" "listenAddr" "want" (printf ":%v" $v.ports.https.port) "path" "server.tls" "hint" "ports.https.port") }}
{{- include "gogate.manage" (dict "map" $tls "key" "certFile" "want" (printf "%s/%s" (include "gogate.tlsDir" .) $v.tls.certKey) "path" "server.tls" "hint" "tls.secretName/tls.certKey") }}
{{- include "gogate.manage" (dict "map" $tls "key" "keyFile" "want" (printf "%s/%s" (include "gogate.tlsDir" .) $v.tls.keyKey) "path" "server.tls" "hint" "tls.secretName/tls.keyKey") }}
{{- if $v.tls.extraCertificates }}
{{- if get $tls "certificates" }}
{{- fail "tls.extraCertificates and config.server.tls.certificates are both set; set one of them" }}
{{- end }}
{{- $certs := list }}
{{- range $v.tls.extraCertificates }}
{{- if not .secretName }}{{ fail "tls.extraCertificates: every entry needs a secretName" }}{{ end }}
{{- $dir := printf "%s/%s" (include "gogate.sniDir" $) .secretName }}
{{- $certs = append $certs (dict "certFile" (printf "%s/%s" $dir (.certKey | default "tls.crt")) "keyFile" (printf "%s/%s" $dir (.keyKey | default "tls.key"))) }}
{{- end }}
{{- $_ := set $tls "certificates" $certs }}
{{- end }}
{{- else if get $tls "enabled" }}
{{- fail "config.server.tls.enabled is true but tls.enabled is false: set tls.enabled=true and tls.secretName (the chart mounts the certificate and opens the https port)" }}
{{- end }}
{{- end }}

{{- /* Admin API: on all interfaces for the kubelet's probes; the token only from a Secret */}}
{{- include "gogate.ensureMap" (dict "map" $server "key" "admin" "path" "server") }}
{{- $admin := get $server "admin" }}
{{- include "gogate.canonical" (dict "map" $admin "key" "listenAddr" "aliases" (list "listen" "listen_addr") "path" "server.admin") }}
{{- if and (hasKey $admin "enabled") (eq (toString (get $admin "enabled")) "false") }}
{{- fail "config.server.admin.enabled must stay true: the liveness and readiness probes are the admin API's /health and /ready" }}
{{- end }}
{{- if get $admin "token" }}
{{- fail "config.server.admin.token would put the token in a ConfigMap: set adminToken.existingSecret (or adminToken.value) instead" }}
{{- end }}
{{- include "gogate.manage" (dict "map" $admin "key" "listenAddr" "want" (printf ":%v" $v.ports.admin.port) "path" "server.admin" "hint" "ports.admin.port") }}

{{- /* Metrics */}}
{{- include "gogate.ensureMap" (dict "map" $server "key" "metrics" "path" "server") }}
{{- $metrics := get $server "metrics" }}
{{- include "gogate.canonical" (dict "map" $metrics "key" "listenAddr" "aliases" (list "listen" "listen_addr") "path" "server.metrics") }}
{{- if and (hasKey $metrics "enabled") (eq (toString (get $metrics "enabled")) "false") }}
{{- if $v.serviceMonitor.enabled }}
{{- fail "serviceMonitor.enabled needs the metrics listener: config.server.metrics.enabled is false" }}
{{- end }}
{{- else }}
{{- include "gogate.manage" (dict "map" $metrics "key" "listenAddr" "want" (printf ":%v" $v.ports.metrics.port) "path" "server.metrics" "hint" "ports.metrics.port") }}
{{- end }}

{{- if hasKey $server "shutdown" }}
{{- include "gogate.ensureMap" (dict "map" $server "key" "shutdown" "path" "server") }}
{{- include "gogate.canonical" (dict "map" (get $server "shutdown") "key" "drainTimeout" "aliases" (list "drain_timeout") "path" "server.shutdown") }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
gogate.listeners: which listeners the rendered config runs, as YAML {tcp, http, https, metrics}.
*/}}
{{- define "gogate.listeners" -}}
{{- $server := get (include "gogate.configYaml" . | fromYaml) "server" }}
{{- $metrics := get $server "metrics" }}
{{- $on := dict
  "tcp" (ne (toString (get $server "listenAddr")) "")
  "http" (ne (toString (get $server "httpListenAddr")) "")
  "https" (and .Values.tls.enabled true)
  "metrics" (ne (toString (get $metrics "enabled")) "false") }}
{{- if not (or $on.tcp $on.http $on.https) }}
{{- fail "no proxy listener is on: enable ports.http, ports.tcp (with backends) or tls" }}
{{- end }}
{{- $ports := list (toString .Values.ports.admin.port) }}
{{- range $name := list "tcp" "http" "https" "metrics" }}
{{- if get $on $name }}
{{- $p := toString (get (get $.Values.ports $name) "port") }}
{{- if has $p $ports }}
{{- fail (printf "ports.%s.port %s is used by another listener" $name $p) }}
{{- end }}
{{- $ports = append $ports $p }}
{{- end }}
{{- end }}
{{- toYaml $on }}
{{- end }}

{{/*
gogate.durationSeconds: a gogate duration ("500ms", "30s", "1m30s", "1h", or a bare number of
seconds) in seconds, as a float. Args: value, path.
*/}}
{{- define "gogate.durationSeconds" -}}
{{- $d := .value }}
{{- $num := `([0-9]+(\.[0-9]*)?|\.[0-9]+)` }}
{{- if kindIs "string" $d }}
{{- $t := trim $d }}
{{- if regexMatch (printf "^%s$" $num) $t }}
{{- $t | float64 }}
{{- else if regexMatch (printf "^(%s(h|ms|m|s|us|µs))+$" $num) $t }}
{{- $factors := dict "h" 3600.0 "m" 60.0 "s" 1.0 "ms" 0.001 "us" 0.000001 "µs" 0.000001 }}
{{- $total := 0.0 }}
{{- range regexFindAll (printf "%s(h|ms|m|s|us|µs)" $num) $t -1 }}
{{- $n := regexFind (printf "^%s" $num) . }}
{{- $unit := trimPrefix $n . }}
{{- $total = addf $total (mulf ($n | float64) (get $factors $unit)) }}
{{- end }}
{{- $total }}
{{- else }}
{{- fail (printf "%s: invalid duration %q; write e.g. \"30s\", \"500ms\" or \"1m30s\"" .path $t) }}
{{- end }}
{{- else if or (kindIs "float64" $d) (kindIs "int64" $d) (kindIs "int" $d) }}
{{- $d | float64 }}
{{- else }}
{{- fail (printf "%s: invalid duration %v" .path $d) }}
{{- end }}
{{- end }}

{{/*
gogate.terminationGracePeriodSeconds: above gogate's drain timeout (and the preStop sleep), so the
drain ends before the kubelet's SIGKILL.
*/}}
{{- define "gogate.terminationGracePeriodSeconds" -}}
{{- $server := get (include "gogate.configYaml" . | fromYaml) "server" }}
{{- $drain := "30s" }}
{{- $shutdown := get $server "shutdown" }}
{{- if and (kindIs "map" $shutdown) (hasKey $shutdown "drainTimeout") }}
{{- $drain = get $shutdown "drainTimeout" }}
{{- end }}
{{- $drainSeconds := include "gogate.durationSeconds" (dict "value" $drain "path" "config.server.shutdown.drainTimeout") | float64 | ceil }}
{{- $preStop := dig "preStop" "sleep" "seconds" 0 (.Values.lifecycle | default dict) | float64 }}
{{- $needed := addf $drainSeconds $preStop }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- addf $needed .Values.terminationGracePeriodMarginSeconds | int }}
{{- else if le (.Values.terminationGracePeriodSeconds | float64) $needed }}
{{- fail (printf "terminationGracePeriodSeconds %v must be above server.shutdown.drainTimeout (%v s) plus the preStop sleep (%v s), or in-flight requests are killed before the drain ends; raise it, or leave it null to derive it" .Values.terminationGracePeriodSeconds $drainSeconds $preStop) }}
{{- else }}
{{- .Values.terminationGracePeriodSeconds | int }}
{{- end }}
{{- end }}

{{/*
gogate.sharedState: what several replicas share and what each pod keeps, as YAML:
  multi      more than one pod (replicaCount > 1 or autoscaling)
  store      cluster.store ("" without one)
  registry   off | shared | perPod (server.registry on, not through the store)
  shared     the rate limits counted in the store (scope: global, cluster.rateLimit on)
  perPod     the rate limits each pod counts alone (scope: local, or no store)
  l4         server.rateLimit limits the L4 listener's connections (always per pod)
*/}}
{{- define "gogate.sharedState" -}}
{{- $cfg := include "gogate.configYaml" . | fromYaml }}
{{- $server := get $cfg "server" }}
{{- $c := .Values.cluster }}
{{- $registry := get $server "registry" }}
{{- $reg := "off" }}
{{- if and (kindIs "map" $registry) (get $registry "enabled") }}
{{- $reg = ternary "shared" "perPod" (and (ne $c.store "") $c.registry) }}
{{- end }}
{{- $sharing := and (ne $c.store "") $c.rateLimit }}
{{- $shared := list }}
{{- $perPod := list }}
{{- $l4 := false }}
{{- $rl := get $server "rateLimit" }}
{{- if and (kindIs "map" $rl) (get $rl "enabled") }}
{{- if and $sharing (eq (get $rl "scope" | default "local" | toString | trim | lower) "global") }}
{{- $shared = append $shared "server.rateLimit" }}
{{- else }}
{{- $perPod = append $perPod "server.rateLimit" }}
{{- end }}
{{- $l4 = ne (toString (get $server "listenAddr")) "" }}
{{- end }}
{{- range (get $cfg "routes" | default list) }}
{{- $r := . | default dict }}
{{- $rrl := get $r "rateLimit" | default (get $r "rate_limit") }}
{{- if and (kindIs "map" $rrl) (ne (toString (get $rrl "enabled")) "false") }}
{{- $name := printf "route %s" (toString (get $r "name")) }}
{{- if and $sharing (eq (get $rrl "scope" | default "local" | toString | trim | lower) "global") }}
{{- $shared = append $shared $name }}
{{- else }}
{{- $perPod = append $perPod $name }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml (dict "multi" (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) "store" $c.store "registry" $reg "shared" $shared "perPod" $perPod "l4" $l4) }}
{{- end }}
