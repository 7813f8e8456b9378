{{/* Names and labels. */}}
{{- define "radflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "radflow.fullname" -}}
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

{{/* Cluster-scoped objects carry the namespace: two releases of one name must not clash. */}}
{{- define "radflow.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "radflow.fullname" .) }}
{{- end }}

{{- define "radflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "radflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "radflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "radflow.labels" -}}
helm.sh/chart: {{ include "radflow.chart" . }}
{{ include "radflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: radflow
{{- end }}

{{- define "radflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "radflow.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "radflow.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Lease the operator campaigns for (src/config/operator-config.ts: leaseName). */}}
{{- define "radflow.leaseName" -}}radflow-operator{{- end }}

{{/* NATS is on when a URL comes from the values or from the Secret. */}}
{{- define "radflow.natsEnabled" -}}
{{- if or .Values.nats.url .Values.nats.secretKeys.url }}true{{- end }}
{{- end }}

{{- define "radflow.syslogEnabled" -}}
{{- if .Values.audit.syslog.existingSecret }}true{{- end }}
{{- end }}

{{/* stat=radflow-stat,urgent=… for RADFLOW_PRIORITY_CLASSES; empty when not wired. */}}
{{- define "radflow.priorityClassesEnv" -}}
{{- if or .Values.priorityClasses.create .Values.priorityClasses.useExisting }}
{{- $pairs := list }}
{{- range $p := list "stat" "urgent" "routine" "batch" }}
{{- $c := index $.Values.priorityClasses $p }}
{{- if $c.name }}{{ $pairs = append $pairs (printf "%s=%s" $p $c.name) }}{{ end }}
{{- end }}
{{- join "," $pairs }}
{{- end }}
{{- end }}

{{/* rbac.scope with auto resolved: namespaced when watchNamespaces is given. */}}
{{- define "radflow.rbacScope" -}}
{{- if eq .Values.rbac.scope "auto" }}{{ if .Values.watchNamespaces }}namespaced{{ else }}cluster{{ end }}
{{- else }}{{ .Values.rbac.scope }}{{ end }}
{{- end }}

{{/* The allowed Secrets grouped by namespace: {"radiology": ["imaging-s3"], …} as JSON. */}}
{{- define "radflow.allowedSecretsByNamespace" -}}
{{- $by := dict }}
{{- range .Values.storageTrust.secrets }}
{{- $parts := splitList "/" . }}
{{- $ns := first $parts }}
{{- $_ := set $by $ns (append (get $by $ns | default list) (last $parts)) }}
{{- end }}
{{- toJson $by }}
{{- end }}

{{/*
Egress destinations of the operator's NetworkPolicy, as a JSON list of NetworkPolicyPeers; empty
when nothing pins them. Argument: (dict "target" <egress value> "derived" <peers found elsewhere>).
*/}}
{{- define "radflow.egressPeers" -}}
{{- $peers := list }}
{{- range .target.cidrs }}{{ $peers = append $peers (dict "ipBlock" (dict "cidr" .)) }}{{ end }}
{{- range .target.to }}{{ $peers = append $peers . }}{{ end }}
{{- if not $peers }}{{ $peers = .derived }}{{ end }}
{{- toJson $peers }}
{{- end }}

{{/* The API server's addresses from the EndpointSlice default/kubernetes (empty under helm template). */}}
{{- define "radflow.apiServerPeers" -}}
{{- $peers := list }}
{{- $slice := lookup "discovery.k8s.io/v1" "EndpointSlice" "default" "kubernetes" }}
{{- if $slice }}
{{- range $slice.endpoints }}
{{- range .addresses }}
{{- $peers = append $peers (dict "ipBlock" (dict "cidr" (printf "%s/%s" . (ternary "128" "32" (contains ":" .))))) }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $peers }}
{{- end }}

{{/* NATS servers from nats.url: <service>.<namespace>.svc → that namespace; an IPv4 address → /32. */}}
{{- define "radflow.natsPeers" -}}
{{- $peers := list }}
{{- range (splitList "," .Values.nats.url) }}
{{- $host := regexReplaceAll "^([a-z]+://)?([^@/]*@)?([^:/]+).*$" (trim .) "${3}" }}
{{- if regexMatch "^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$" $host }}
{{- $peers = append $peers (dict "ipBlock" (dict "cidr" (printf "%s/32" $host))) }}
{{- else if regexMatch "^[a-z0-9-]+\\.[a-z0-9-]+\\.svc(\\..*)?$" $host }}
{{- $ns := index (splitList "." $host) 1 }}
{{- $peers = append $peers (dict "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" $ns))) }}
{{- else }}
{{- $peers = list }}{{ break }}
{{- end }}
{{- end }}
{{- toJson ($peers | uniq) }}
{{- end }}

{{/* The operator's egress targets that no cidrs, to or lookup pins (JSON list of names). */}}
{{- define "radflow.unpinnedEgress" -}}
{{- $np := .Values.networkPolicy }}
{{- $open := list }}
{{- if not (include "radflow.egressPeers" (dict "target" $np.egress.apiServer "derived" (include "radflow.apiServerPeers" . | fromJsonArray)) | fromJsonArray) }}{{ $open = append $open "apiServer" }}{{ end }}
{{- if and (include "radflow.natsEnabled" .) (not (include "radflow.egressPeers" (dict "target" $np.egress.nats "derived" (include "radflow.natsPeers" . | fromJsonArray)) | fromJsonArray)) }}{{ $open = append $open "nats" }}{{ end }}
{{- if and (include "radflow.syslogEnabled" .) (not (include "radflow.egressPeers" (dict "target" $np.egress.syslog "derived" list) | fromJsonArray)) }}{{ $open = append $open "syslog" }}{{ end }}
{{- toJson $open }}
{{- end }}

{{/*
RBAC rules the operator needs in every namespace it watches. Each verb is used by a code path
(README.md, "RBAC"); test/integration/helm.test.ts removes each one in turn and shows the
operation that needs it fail with 403.
*/}}
{{- define "radflow.watchRules" -}}
# AIWorkflow informer (src/controllers/manager.ts)
- apiGroups: [radflow.io]
  resources: [aiworkflows]
  verbs: [list, watch]
# Ready condition of a validated workflow (src/controllers/aiworkflow.ts)
- apiGroups: [radflow.io]
  resources: [aiworkflows/status]
  verbs: [patch]
# informer (manager.ts); create from study ingest (src/ingest/consumer.ts); finalizer
# patch and TTL delete (src/controllers/inferencetask.ts)
- apiGroups: [radflow.io]
  resources: [inferencetasks]
  verbs: [list, watch, create, patch, delete]
# phase, conditions, steps (inferencetask.ts)
- apiGroups: [radflow.io]
  resources: [inferencetasks/status]
  verbs: [patch]
{{- if .Values.rbac.ownerReferencesPermissionEnforcement }}
# Jobs' ownerReferences with blockOwnerDeletion, where OwnerReferencesPermissionEnforcement runs
- apiGroups: [radflow.io]
  resources: [inferencetasks/finalizers]
  verbs: [update]
{{- end }}
# Job informer (manager.ts); a Job per step, deleted on cancel/timeout (inferencetask.ts)
- apiGroups: [batch]
  resources: [jobs]
  verbs: [list, watch, create, delete]
# Pod informer: exit codes, termination messages, scheduling failures (manager.ts)
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
# Kubernetes Events on workflows and tasks; repeats patch the event's series (src/kube/events.ts)
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/*
Cross-field checks that JSON schema cannot word clearly. values.schema.json checks types,
ranges and names first.
*/}}
{{- define "radflow.validate" -}}
{{- if and (eq .Values.rbac.scope "cluster") .Values.watchNamespaces }}
{{- fail (printf "rbac.scope=cluster with watchNamespaces=%s: the operator would hold pods/jobs rights in every namespace while working in these only; use rbac.scope=auto (Roles in each of them)" (join "," .Values.watchNamespaces)) }}
{{- end }}
{{- if and .Values.stepNetworkPolicy.enabled (not (or .Values.stepNetworkPolicy.namespaces .Values.watchNamespaces)) }}
{{- fail "stepNetworkPolicy.enabled needs the namespaces the step pods run in: set stepNetworkPolicy.namespaces or watchNamespaces" }}
{{- end }}
{{- if and (eq .Values.rbac.scope "namespaced") (empty .Values.watchNamespaces) }}
{{- fail "rbac.scope=namespaced needs watchNamespaces: the namespaces to grant Roles in and to watch (e.g. --set watchNamespaces={radiology})" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicaCount=%d with leaderElection.enabled=false: every replica would reconcile and ingest at once; enable leader election or run one replica" (int .Values.replicaCount)) }}
{{- end }}
{{- if and .Values.nats.url .Values.nats.secretKeys.url }}
{{- fail "nats.url and nats.secretKeys.url are both set: give the NATS URL in one place" }}
{{- end }}
{{- $keys := .Values.nats.secretKeys }}
{{- if and (not .Values.nats.existingSecret) (or $keys.url $keys.user $keys.password $keys.token $keys.creds $keys.nkeySeed) }}
{{- fail "nats.secretKeys names keys but nats.existingSecret is empty: name the Secret that holds them" }}
{{- end }}
{{- if and .Values.nats.existingSecret (not (or $keys.url $keys.user $keys.password $keys.token $keys.creds $keys.nkeySeed)) }}
{{- fail "nats.existingSecret is set but nats.secretKeys names no key: set e.g. nats.secretKeys.token=token" }}
{{- end }}
{{- if and $keys.user (not $keys.password) }}
{{- fail "nats.secretKeys.user needs nats.secretKeys.password" }}
{{- end }}
{{- if and $keys.user $keys.token }}
{{- fail "nats.secretKeys: user/password and token are two ways to authenticate; choose one" }}
{{- end }}
{{- if and $keys.creds $keys.nkeySeed }}
{{- fail "nats.secretKeys: creds and nkeySeed are two ways to authenticate; choose one" }}
{{- end }}
{{- if and (or .Values.nats.existingSecret .Values.nats.tls.existingSecret) (not (include "radflow.natsEnabled" .)) }}
{{- fail "NATS credentials or TLS are configured but no NATS URL: set nats.url (or nats.secretKeys.url)" }}
{{- end }}
{{- if and .Values.nats.tls.existingSecret (not (or .Values.nats.tls.secretKeys.ca .Values.nats.tls.secretKeys.cert)) }}
{{- fail "nats.tls.existingSecret is set but nats.tls.secretKeys names neither ca nor cert" }}
{{- end }}
{{- if ne (empty .Values.nats.tls.secretKeys.cert) (empty .Values.nats.tls.secretKeys.key) }}
{{- fail "nats.tls.secretKeys.cert and nats.tls.secretKeys.key go together (mutual TLS)" }}
{{- end }}
{{- if and (include "radflow.syslogEnabled" .) (not (include "radflow.natsEnabled" .)) }}
{{- fail "audit.syslog needs NATS: audit records are spooled on JetStream until the repository has them; set nats.url" }}
{{- end }}
{{- if and (include "radflow.syslogEnabled" .) (not (and .Values.audit.syslog.secretKeys.host .Values.audit.syslog.secretKeys.ca)) }}
{{- fail "audit.syslog.secretKeys.host and audit.syslog.secretKeys.ca are required with audit.syslog.existingSecret" }}
{{- end }}
{{- if and .Values.priorityClasses.create .Values.priorityClasses.useExisting }}
{{- fail "priorityClasses.create and priorityClasses.useExisting: choose one" }}
{{- end }}
{{- if eq (int .Values.metrics.port) (int .Values.health.port) }}
{{- fail (printf "metrics.port and health.port are both %d: give the probes their own port" (int .Values.metrics.port)) }}
{{- end }}
{{- end }}
