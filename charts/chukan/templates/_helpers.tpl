{{/*
Names, labels and the pieces several templates share.
*/}}

{{/* Every target of the binary, in a fixed order (the schema's enum of targets). */}}
{{- define "chukan.allTargets" -}}
admin code inquiry provision audit notice selfinfo stats relay console
{{- end -}}

{{/* The targets serving the public REST API (/v1/...) on ports.api; relay's and the
console's listeners are their own. */}}
{{- define "chukan.apiTargets" -}}
admin code inquiry provision audit notice selfinfo stats
{{- end -}}

{{/* Targets whose Deployment is rendered: enabled ones, in the fixed order. */}}
{{- define "chukan.enabledTargets" -}}
{{- $out := list -}}
{{- range $t := splitList " " (include "chukan.allTargets" .) -}}
{{- if (get $.Values.targets $t).enabled -}}{{- $out = append $out $t -}}{{- end -}}
{{- end -}}
{{- join " " $out -}}
{{- end -}}

{{/*
Which target serves each /v1/... path prefix: the entry's routing table. It follows the
services' routes (`chukan openapi --target=<t>`); scripts/check-deploy fails when a path of
some target's document is not routed to that target here.
*/}}
{{- define "chukan.routes" -}}
admin:
  - /v1/openapi.json
  - /v1/auth
  - /v1/batches
  - /v1/calendar
  - /v1/clients
  - /v1/departments
  - /v1/status
  - /v1/tenants
  - /v1/users
  - /.well-known/jwks.json
code:
  - /v1/codes
inquiry:
  - /v1/inquiries
  - /v1/inquiry-batches
  - /v1/inquiry-confirmations
  - /v1/procedures
provision:
  - /v1/flags
  - /v1/provisions
  - /v1/reconciliations
  - /v1/replica-bulk-deletions
  - /v1/replica-counts
  - /v1/replica-queries
  - /v1/replica-quota
  - /v1/replica-upload-slots
  - /v1/replica-uploads
  - /v1/replicas
audit:
  - /v1/records
notice:
  - /v1/notice-status-checks
  - /v1/notices
selfinfo:
  - /v1/selfinfo
stats:
  - /v1/platform
  - /v1/statistics
{{- end -}}

{{- define "chukan.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* release-chart, or the release name alone when it already contains the chart name.
Kept to 40 characters so "<fullname>-<target>-<suffix>" stays a valid name. */}}
{{- define "chukan.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "chukan.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select one component's pods: (dict "root" $ "component" "<target>"). */}}
{{- define "chukan.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chukan.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The standard labels of every object: (dict "root" $ "component" "<target>"). */}}
{{- define "chukan.labels" -}}
helm.sh/chart: {{ include "chukan.chart" .root }}
{{ include "chukan.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: chukan
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
chukan.io/region: {{ .root.Values.region }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels selecting every pod of this release (the default-deny policy). */}}
{{- define "chukan.instanceLabels" -}}
app.kubernetes.io/name: {{ include "chukan.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "chukan.pullPolicy" -}}
{{- .Values.image.pullPolicy | default (ternary "IfNotPresent" "Always" (not (empty .Values.image.digest))) -}}
{{- end -}}

{{- define "chukan.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
A duration value ("500ms", "30s", "15m", "2h"; the schema's pattern) in milliseconds.
*/}}
{{- define "chukan.durationMs" -}}
{{- $d := toString . -}}
{{- $digits := regexFind "^[0-9]+" $d -}}
{{- $n := $digits | int64 -}}
{{- $unit := trimPrefix $digits $d -}}
{{- if eq $unit "ms" -}}{{ $n }}
{{- else if eq $unit "s" -}}{{ mul $n 1000 }}
{{- else if eq $unit "m" -}}{{ mul $n 60000 }}
{{- else if eq $unit "h" -}}{{ mul $n 3600000 }}
{{- else -}}{{ fail (printf "%q is not a duration (e.g. 500ms, 30s, 15m, 2h)" $d) }}
{{- end -}}
{{- end -}}

{{/* A duration in whole seconds; fails when it is not a whole number of seconds. */}}
{{- define "chukan.durationSecs" -}}
{{- $ms := include "chukan.durationMs" . | int64 -}}
{{- if mod $ms 1000 -}}{{ fail (printf "%q must be whole seconds" (toString .)) }}{{- end -}}
{{- div $ms 1000 -}}
{{- end -}}

{{/* The scheme of chukan's own API listeners. */}}
{{- define "chukan.apiScheme" -}}
{{- if .Values.certificates.api.enabled }}https{{ else }}http{{ end -}}
{{- end -}}

{{/* Secret name of a certificate: (dict "root" $ "cert" "api"|"relayInbound"|"ingress" "suffix" "<name>-tls"). */}}
{{- define "chukan.certSecret" -}}
{{- $c := get .root.Values.certificates .cert -}}
{{- if $c.create -}}
{{- printf "%s-%s" (include "chukan.fullname" .root) .suffix -}}
{{- else if $c.existingSecret -}}
{{- $c.existingSecret -}}
{{- else -}}
{{- fail (printf "certificates.%s: create is false, so existingSecret must name a kubernetes.io/tls Secret" .cert) -}}
{{- end -}}
{{- end -}}

{{/*
Every file a process reads, as a YAML list of
  {section, setting, dir, path, secret, key}
for (dict "root" $ "target" "<target>"|"migration"). The ConfigMap writes
`setting = "/etc/chukan/<dir>/<path>"` under [section]; the pod mounts key `key` of Secret
`secret` there. `dir` is "secrets" (secret values, read by the `K_file` rule) or "tls"
(PEM files). A target receives only what it uses: admin's signing key goes to admin alone,
the owner's database URL to the migration Job alone.
*/}}
{{- define "chukan.files" -}}
{{- $v := .root.Values -}}
{{- $t := .target -}}
{{- $files := list -}}
{{- if ne $t "console" -}}
  {{- if eq $t "migration" -}}
    {{- $files = append $files (dict "section" "database" "setting" "url_file" "dir" "secrets" "path" "database-owner-url" "secret" $v.migration.ownerUrlSecret.name "key" $v.migration.ownerUrlSecret.key) -}}
  {{- end -}}
  {{- $files = append $files (dict "section" "database" "setting" "app_password_file" "dir" "secrets" "path" "database-app-password" "secret" $v.database.appPasswordSecret.name "key" $v.database.appPasswordSecret.key) -}}
  {{- $files = append $files (dict "section" "amqp" "setting" "url_file" "dir" "secrets" "path" "amqp-url" "secret" $v.amqp.urlSecret.name "key" $v.amqp.urlSecret.key) -}}
  {{- range $section := list "database" "amqp" -}}
    {{- $tls := (get $v $section).tls -}}
    {{- if eq $tls.mode "verify-full" -}}
      {{- $files = append $files (dict "section" $section "setting" "ca_file" "dir" "tls" "path" (printf "%s/ca.crt" $section) "secret" $tls.caSecret.name "key" $tls.caSecret.key) -}}
      {{- if $tls.clientCertSecret -}}
        {{- $files = append $files (dict "section" $section "setting" "client_cert_file" "dir" "tls" "path" (printf "%s/tls.crt" $section) "secret" $tls.clientCertSecret "key" "tls.crt") -}}
        {{- $files = append $files (dict "section" $section "setting" "client_key_file" "dir" "tls" "path" (printf "%s/tls.key" $section) "secret" $tls.clientCertSecret "key" "tls.key") -}}
      {{- end -}}
    {{- end -}}
  {{- end -}}
  {{- if ne $t "migration" -}}
    {{- with $v.cells.peerCaSecret -}}
      {{- /* Public: the CA the peer cell's doors chain to (forwarding over https). */ -}}
      {{- $files = append $files (dict "section" "cells" "setting" "peer_ca_file" "dir" "tls" "path" "cells/peer-ca.crt" "secret" .name "key" .key) -}}
    {{- end -}}
    {{- $files = append $files (dict "section" "crypto" "setting" "kek_file" "dir" "secrets" "path" "kek" "secret" $v.crypto.kekSecret.name "key" $v.crypto.kekSecret.key) -}}
  {{- end -}}
{{- end -}}
{{- if eq $t "admin" -}}
  {{- $files = append $files (dict "section" "auth" "setting" "signing_key_file" "dir" "secrets" "path" "auth-signing-key" "secret" $v.auth.signingKeySecret.name "key" $v.auth.signingKeySecret.key) -}}
{{- end -}}
{{- if and $v.certificates.api.enabled (has $t (splitList " " (include "chukan.apiTargets" .root))) -}}
  {{- $api := include "chukan.certSecret" (dict "root" .root "cert" "api" "suffix" "api-tls") -}}
  {{- $files = append $files (dict "section" "server" "setting" "tls_cert_file" "dir" "tls" "path" "api/tls.crt" "secret" $api "key" "tls.crt") -}}
  {{- $files = append $files (dict "section" "server" "setting" "tls_key_file" "dir" "tls" "path" "api/tls.key" "secret" $api "key" "tls.key") -}}
{{- end -}}
{{- if and $v.certificates.api.enabled (not (has $t (list "admin" "migration"))) -}}
  {{- /* admin's JWKS (and, for the console, the API) are served over HTTPS: trust the issuer's CA.
  The console verifies no token, so it gets the CA for its API calls only. */ -}}
  {{- $api := include "chukan.certSecret" (dict "root" .root "cert" "api" "suffix" "api-tls") -}}
  {{- if eq $t "console" -}}
    {{- $files = append $files (dict "section" "console" "setting" "api_ca_file" "dir" "tls" "path" "api/ca.crt" "secret" $api "key" "ca.crt") -}}
  {{- else -}}
    {{- $files = append $files (dict "section" "auth" "setting" "jwks_ca_file" "dir" "tls" "path" "api/ca.crt" "secret" $api "key" "ca.crt") -}}
  {{- end -}}
{{- end -}}
{{- if eq $t "relay" -}}
  {{- $files = append $files (dict "section" "relay" "setting" "signing_key_file" "dir" "secrets" "path" "relay-signing-key" "secret" $v.relay.signingKeySecret.name "key" $v.relay.signingKeySecret.key) -}}
  {{- if $v.certificates.relayInbound.enabled -}}
    {{- $in := include "chukan.certSecret" (dict "root" .root "cert" "relayInbound" "suffix" "relay-inbound-tls") -}}
    {{- $files = append $files (dict "section" "relay" "setting" "inbound_tls_cert_file" "dir" "tls" "path" "relay-inbound/tls.crt" "secret" $in "key" "tls.crt") -}}
    {{- $files = append $files (dict "section" "relay" "setting" "inbound_tls_key_file" "dir" "tls" "path" "relay-inbound/tls.key" "secret" $in "key" "tls.key") -}}
    {{- $files = append $files (dict "section" "relay" "setting" "inbound_client_ca_file" "dir" "tls" "path" "relay-inbound/client-ca.crt" "secret" $v.relay.inboundClientCaSecret.name "key" $v.relay.inboundClientCaSecret.key) -}}
  {{- end -}}
  {{- with $v.relay.nwsCaSecret -}}
    {{- $files = append $files (dict "section" "relay" "setting" "nws_ca_file" "dir" "tls" "path" "nws/ca.crt" "secret" .name "key" .key) -}}
  {{- end -}}
  {{- with $v.relay.nwsClientCertSecret -}}
    {{- $files = append $files (dict "section" "relay" "setting" "nws_client_cert_file" "dir" "tls" "path" "nws/tls.crt" "secret" . "key" "tls.crt") -}}
    {{- $files = append $files (dict "section" "relay" "setting" "nws_client_key_file" "dir" "tls" "path" "nws/tls.key" "secret" . "key" "tls.key") -}}
  {{- end -}}
{{- end -}}
{{- if eq $t "audit" -}}
  {{- $files = append $files (dict "section" "audit" "setting" "signing_key_file" "dir" "secrets" "path" "audit-signing-key" "secret" $v.audit.signingKeySecret.name "key" $v.audit.signingKeySecret.key) -}}
{{- end -}}
{{- if eq $t "console" -}}
  {{- $files = append $files (dict "section" "console" "setting" "cookie_key_file" "dir" "secrets" "path" "console-cookie-key" "secret" $v.console.cookieKeySecret.name "key" $v.console.cookieKeySecret.key) -}}
{{- end -}}
{{- toYaml $files -}}
{{- end -}}

{{/* The API's base URL inside the cluster for one target's Service. */}}
{{- define "chukan.serviceUrl" -}}
{{- printf "%s://%s-%s:%v" (include "chukan.apiScheme" .root) (include "chukan.fullname" .root) .target .root.Values.ports.api -}}
{{- end -}}

{{/* The URL the console calls: console.apiUrl, else the entry. */}}
{{- define "chukan.consoleApiUrl" -}}
{{- if .Values.console.apiUrl -}}
{{- .Values.console.apiUrl -}}
{{- else if .Values.ingress.enabled -}}
{{- printf "%s://%s" (ternary "https" "http" .Values.ingress.tls.enabled) .Values.ingress.host -}}
{{- else -}}
{{- fail "console.apiUrl: set it, or enable the ingress (the console calls the API through the entry)" -}}
{{- end -}}
{{- end -}}

{{/*
chukan.toml for (dict "root" $ "target" "<target>"|"migration"): the settings file the
process reads with `--config`. Secrets appear only as `<key>_file` paths; listeners bind
0.0.0.0 inside the pod.
*/}}
{{- define "chukan.settingsToml" -}}
{{- $v := .root.Values -}}
{{- $t := .target -}}
{{- $files := include "chukan.files" . | fromYamlArray -}}
{{- $sections := dict -}}
{{- range $f := $files -}}
{{- $_ := set $sections $f.section (append (get $sections $f.section | default list) (printf "%s = %q" $f.setting (printf "/etc/chukan/%s/%s" $f.dir $f.path))) -}}
{{- end -}}
# chukan settings for {{ if eq $t "migration" }}`chukan migrate`{{ else }}--target={{ $t }}{{ end }}, rendered by the chart
# (release {{ .root.Release.Name }}). Secrets are files mounted from Secrets (`*_file`).
region = {{ $v.region | quote }}

[server]
host = "0.0.0.0"
port = {{ $v.ports.api }}
{{- range (get $sections "server" | default list) }}
{{ . }}
{{- end }}

[metrics]
host = "0.0.0.0"
port = {{ $v.ports.ops }}
{{- if ne $t "console" }}

[database]
{{- if ne $t "migration" }}
# No credentials in the URL: the application role's password is a file.
url = {{ printf "postgres://%s:%v/%s" $v.database.host $v.database.port $v.database.name | quote }}
{{- end }}
app_user = {{ $v.database.appUser | quote }}
{{- with $v.database.poolMaxSize }}
pool_max_size = {{ . }}
{{- end }}
{{- with $v.database.poolWaitTimeout }}
pool_wait_timeout_ms = {{ include "chukan.durationMs" . }}
{{- end }}
tls_mode = {{ $v.database.tls.mode | quote }}
{{- range (get $sections "database" | default list) }}
{{ . }}
{{- end }}

[amqp]
{{- with $v.amqp.prefetch }}
prefetch = {{ . }}
{{- end }}
{{- with $v.amqp.queueType }}
queue_type = {{ . | quote }}
{{- end }}
tls_mode = {{ $v.amqp.tls.mode | quote }}
{{- if and (ne $t "migration") $v.amqp.outboxReplayWindow }}
outbox_replay_window_secs = {{ include "chukan.durationSecs" $v.amqp.outboxReplayWindow }}
{{- end }}
{{- range (get $sections "amqp" | default list) }}
{{ . }}
{{- end }}
{{- end }}
{{- if and (ne $t "migration") (ne $t "console") }}

[cells]
# ADR 0006: a request for an organisation homed in the other cell is forwarded to its doors,
# in this order (its own region first, then its standby slot in this region).
peer_api_urls = [{{ range $i, $u := $v.cells.peerApiUrls }}{{ if $i }}, {{ end }}{{ $u | quote }}{{ end }}]
{{- with $v.cells.forwardTimeout }}
forward_timeout_ms = {{ include "chukan.durationMs" . }}
{{- end }}
{{- with $v.cells.homedRefresh }}
homed_refresh_ms = {{ include "chukan.durationMs" . }}
{{- end }}
{{- with $v.cells.replicationSample }}
replication_sample_ms = {{ include "chukan.durationMs" . }}
{{- end }}
synchronous_standby_names = {{ $v.cells.synchronousStandbyNames | default "" | quote }}
{{- with $v.cells.syncDegradeAfter }}
sync_degrade_after_ms = {{ include "chukan.durationMs" . }}
{{- end }}
{{- range (get $sections "cells" | default list) }}
{{ . }}
{{- end }}
{{- end }}
{{- with get $sections "crypto" }}

[crypto]
{{- range . }}
{{ . }}
{{- end }}
{{- end }}
{{- if ne $t "migration" }}

[auth]
{{- with $v.auth.issuer }}
issuer = {{ . | quote }}
{{- end }}
{{- with $v.auth.audience }}
audience = {{ . | quote }}
{{- end }}
{{- with $v.auth.tokenTtl }}
token_ttl_secs = {{ include "chukan.durationSecs" . }}
{{- end }}
signing_kid = {{ $v.auth.signingKid | quote }}
client_address_header = {{ $v.auth.clientAddressHeader | default "" | quote }}
{{- if ne $t "admin" }}
# Tokens are verified against admin's published keys; only admin holds the signing key.
jwks_url = {{ printf "%s/.well-known/jwks.json" (include "chukan.serviceUrl" (dict "root" .root "target" "admin")) | quote }}
{{- end }}
{{- range (get $sections "auth" | default list) }}
{{ . }}
{{- end }}
{{- end }}
{{- if eq $t "relay" }}

[relay]
nws_url = {{ $v.relay.nwsUrl | quote }}
inbound_host = "0.0.0.0"
inbound_port = {{ $v.ports.relayInbound }}
inbound_public_url = {{ $v.relay.inboundPublicUrl | quote }}
signing_kid = {{ $v.relay.signingKid | quote }}
nws_public_keys = [{{ range $i, $k := $v.relay.nwsPublicKeys }}{{ if $i }}, {{ end }}{{ $k | quote }}{{ end }}]
{{- with $v.relay.sendTimeout }}
send_timeout_ms = {{ include "chukan.durationMs" . }}
{{- end }}
{{- with $v.relay.releasePerSecond }}
release_per_second = {{ . }}
{{- end }}
{{- range (get $sections "relay" | default list) }}
{{ . }}
{{- end }}
{{- end }}
{{- if eq $t "audit" }}

[audit]
signing_kid = {{ $v.audit.signingKid | quote }}
{{- with $v.audit.retentionYears }}
retention_years = {{ . }}
{{- end }}
{{- range (get $sections "audit" | default list) }}
{{ . }}
{{- end }}
{{- end }}
{{- if eq $t "provision" }}

[provision]
{{- with $v.provision.nightlyBatchAt }}
nightly_batch_at = {{ . | quote }}
{{- end }}
{{- end }}
{{- if eq $t "console" }}

[console]
host = "0.0.0.0"
port = {{ $v.ports.console }}
api_url = {{ include "chukan.consoleApiUrl" .root | quote }}
# Sign-in straight at admin's Service: through the ingress, the lockout would count the
# console's own address (the ingress appends its hop to the client-address header).
login_url = {{ include "chukan.serviceUrl" (dict "root" .root "target" "admin") | quote }}
{{- with $v.console.idleMinutes }}
idle_minutes = {{ . }}
{{- end }}
{{- if not $v.console.treeHeadKeys }}
{{- fail "console.treeHeadKeys: the console verifies audit proofs against these public keys (`chukan keys public`); set them or disable targets.console" }}
{{- end }}
tree_head_keys = [{{ range $i, $k := $v.console.treeHeadKeys }}{{ if $i }}, {{ end }}{{ $k | quote }}{{ end }}]
{{- range (get $sections "console" | default list) }}
{{ . }}
{{- end }}
{{- end }}

[telemetry]
log_format = "json"
log_level = {{ $v.telemetry.logLevel | default "info" | quote }}
otlp_endpoint = {{ $v.telemetry.otlpEndpoint | default "" | quote }}

[calendar]
enforce_service_hours = {{ $v.calendar.enforceServiceHours }}
planned_outages = [{{ range $i, $d := $v.calendar.plannedOutages }}{{ if $i }}, {{ end }}{{ $d | quote }}{{ end }}]

[shutdown]
grace_secs = {{ include "chukan.durationSecs" $v.shutdownGracePeriod }}
{{- if and (ne $t "migration") (ne $t "console") $v.lease }}

[lease]
{{- with $v.lease.retry }}
retry_secs = {{ include "chukan.durationSecs" . }}
{{- end }}
{{- with $v.lease.check }}
check_secs = {{ include "chukan.durationSecs" . }}
{{- end }}
{{- with $v.lease.abandon }}
abandon_secs = {{ include "chukan.durationSecs" . }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The volumes holding one process's files: "secrets" (secret values) and "tls" (PEM files),
projected from the referenced Secrets, read-only, 0400 (group-readable through fsGroup).
*/}}
{{- define "chukan.fileVolumes" -}}
{{- $files := include "chukan.files" . | fromYamlArray -}}
{{- range $dir := list "secrets" "tls" }}
{{- $mine := list -}}
{{- range $files }}{{ if eq .dir $dir }}{{ $mine = append $mine . }}{{ end }}{{ end }}
{{- if $mine }}
- name: {{ $dir }}
  projected:
    defaultMode: 0400
    sources:
      {{- range $mine }}
      - secret:
          name: {{ .secret }}
          items:
            - key: {{ .key }}
              path: {{ .path }}
      {{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "chukan.fileMounts" -}}
{{- $files := include "chukan.files" . | fromYamlArray -}}
{{- range $dir := list "secrets" "tls" }}
{{- $n := 0 -}}
{{- range $files }}{{ if eq .dir $dir }}{{ $n = add1 $n }}{{ end }}{{ end }}
{{- if $n }}
- name: {{ $dir }}
  mountPath: /etc/chukan/{{ $dir }}
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{- define "chukan.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "chukan.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Pod-level hardening shared by every pod. */}}
{{- define "chukan.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
# Mounted secret files are 0400 root-owned; fsGroup makes them readable to the group.
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "chukan.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}


{{/*
The standby slot (ADR 0006): the peer cell's processes in this region, bound to the local
replica of the peer's cluster (writable once promoted) and a local broker for the peer cell,
with the peer's escrowed keys. It is this chart rendered a second time with these values:
the cell's name (`region`) is the peer's, object names are "<fullname>-<cell>-<target>",
pods carry app.kubernetes.io/name "<name>-<cell>" (so no selector of the own cell picks
them), every Deployment starts at standbySlot.replicas (0: nothing runs until a failover
scales it), with no HPA, no migration (the promoted cluster has its schema) and no console.
*/}}
{{- define "chukan.slotValues" -}}
{{- $s := .Values.standbySlot -}}
{{- $v := deepCopy .Values -}}
{{- $_ := set $v "region" $s.cell -}}
{{- $_ = set $v "peerRegion" .Values.region -}}
{{- $_ = set $v "fullnameOverride" (printf "%s-%s" (include "chukan.fullname" .) $s.cell) -}}
{{- $_ = set $v "nameOverride" (printf "%s-%s" (include "chukan.name" .) $s.cell) -}}
{{- $_ = set $v "standbySlot" (dict "enabled" false) -}}
{{- $_ = set $v.tests "enabled" false -}}
{{- /* The release's one ServiceAccount (no token; chukan never calls the API). */ -}}
{{- $_ = set $v.serviceAccount "name" (include "chukan.serviceAccountName" .) -}}
{{- $_ = set $v.migration "enabled" false -}}
{{- $_ = set $v.database "host" $s.database.host -}}
{{- $_ = set $v.database "appPasswordSecret" $s.database.appPasswordSecret -}}
{{- $_ = set $v.database.tls "caSecret" $s.database.caSecret -}}
{{- $_ = set $v.database.tls "clientCertSecret" "" -}}
{{- $_ = set $v.amqp "urlSecret" $s.amqp.urlSecret -}}
{{- $_ = set $v.amqp.tls "caSecret" $s.amqp.caSecret -}}
{{- $_ = set $v.amqp.tls "clientCertSecret" "" -}}
{{- $_ = set $v.crypto "kekSecret" $s.kekSecret -}}
{{- $_ = set $v.auth "signingKeySecret" $s.auth.signingKeySecret -}}
{{- $_ = set $v.auth "signingKid" $s.auth.signingKid -}}
{{- $_ = set $v.relay "signingKeySecret" $s.relay.signingKeySecret -}}
{{- $_ = set $v.relay "signingKid" $s.relay.signingKid -}}
{{- $_ = set $v.relay "inboundPublicUrl" $s.relay.inboundPublicUrl -}}
{{- $_ = set $v.audit "signingKeySecret" $s.audit.signingKeySecret -}}
{{- $_ = set $v.audit "signingKid" $s.audit.signingKid -}}
{{- $_ = set $v.cells "peerApiUrls" ($s.peerApiUrls | default list) -}}
{{- /* After a failover the promoted replica has no standby of its own: asynchronous. */ -}}
{{- $_ = set $v.cells "synchronousStandbyNames" "" -}}
{{- $_ = set $v.ingress "host" $s.ingressHost -}}
{{- $_ = set $v.ingress "consoleHost" "" -}}
{{- $_ = set $v.networkPolicy "database" $s.networkPolicy.database -}}
{{- $_ = set $v.networkPolicy "rabbitmq" $s.networkPolicy.rabbitmq -}}
{{- /* The slot forwards only to this region's entry (standbySlot.peerApiUrls): no
cross-region egress for it. */ -}}
{{- $_ = set $v.networkPolicy "peerApiCidrs" list -}}
{{- range $t := splitList " " (include "chukan.allTargets" .) -}}
{{- $tv := get $v.targets $t -}}
{{- $_ = set $tv "replicas" $s.replicas -}}
{{- if hasKey $tv "hpa" }}{{ $_ = set $tv.hpa "enabled" false }}{{ end -}}
{{- if eq $t "console" }}{{ $_ = set $tv "enabled" false }}{{ end -}}
{{- end -}}
{{- toYaml $v -}}
{{- end -}}

{{/*
Renders the template named .template for the own cell and, when standbySlot.enabled, again
for the standby slot: (dict "root" $ "template" "<name>").
*/}}
{{- define "chukan.eachCell" -}}
{{- $root := .root -}}
{{- include .template $root }}
{{- if $root.Values.standbySlot.enabled }}
{{- $slot := dict "Values" (include "chukan.slotValues" $root | fromYaml) "Release" $root.Release "Chart" $root.Chart "Capabilities" $root.Capabilities "Template" $root.Template "Files" $root.Files }}
---
{{ include .template $slot }}
{{- end }}
{{- end -}}
