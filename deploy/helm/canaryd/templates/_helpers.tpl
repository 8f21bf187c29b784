{{/* The chart's name, and the objects' base name (release `canaryd`: `canaryd`). */}}
{{- define "canaryd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "canaryd.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* What selects the release's pods. */}}
{{- define "canaryd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "canaryd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Every object's labels (kustomize's app.kubernetes.io/part-of, and Helm's own). */}}
{{- define "canaryd.labels" -}}
{{ include "canaryd.selectorLabels" . }}
app.kubernetes.io/part-of: canaryd
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "canaryd.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The ServiceAccount subject every binding names. */}}
{{- define "canaryd.subject" -}}
- kind: ServiceAccount
  name: {{ include "canaryd.fullname" . }}
  namespace: {{ .Release.Namespace }}
{{- end -}}

{{/*
Exactly what canaryd calls on application namespaces (tests/deploy/test_rbac.py compares
the kustomize ClusterRole with an end-to-end run's calls; the chart's equals it). `.cluster`
adds the rollout cache's list and watch, which the namespaced scope grants cluster-wide
on its own; `.hookSecrets` the webhook hooks' Secret reads; `.jobHooks` the Job hooks' Jobs.
*/}}
{{- define "canaryd.rules" -}}
- apiGroups: ["canaryd.io"]
  resources: ["rollouts"]
  verbs: {{ if .cluster }}["get", "list", "watch", "create", "patch", "delete"]{{ else }}["get", "create", "patch", "delete"]{{ end }}
- apiGroups: ["canaryd.io"]
  resources: ["rollouts/status"]
  verbs: ["patch"]
{{- if .cluster }}
- apiGroups: ["canaryd.io"]
  resources: ["rolloutpolicies"]
  verbs: ["list", "watch"]
{{- end }}
- apiGroups: ["canaryd.io"]
  resources: ["rolloutpolicies/status"]
  verbs: ["patch"]
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices"]
  verbs: ["get", "patch"]
- apiGroups: ["gateway.networking.k8s.io", "policy.linkerd.io"]
  resources: ["httproutes"]
  verbs: ["get", "patch"]
- apiGroups: ["split.smi-spec.io"]
  resources: ["trafficsplits"]
  verbs: ["get", "patch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["patch"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if .hookSecrets }}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
{{- if .jobHooks }}
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "delete"]
{{- end }}
{{- end -}}
