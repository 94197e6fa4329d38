{{/* Chart name, shortened to the 63 characters of a label value. */}}
{{- define "kollect.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object name: the release name, plus the chart name unless it already holds it. */}}
{{- define "kollect.fullname" -}}
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

{{/* Labels of every object. */}}
{{- define "kollect.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kollect.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kollect
{{- end }}

{{/* Labels selecting the operator pods. */}}
{{- define "kollect.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kollect.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kollect.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kollect.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kollect.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "kollect.webhookServiceName" -}}
{{- printf "%s-webhook" (include "kollect.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kollect.metricsServiceName" -}}
{{- printf "%s-metrics" (include "kollect.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The port of an address such as ":8443" or "0.0.0.0:8443". */}}
{{- define "kollect.port" -}}
{{- regexReplaceAll "^.*:" . "" }}
{{- end }}

{{/* Resources and controller settings of the chosen resourcesProfile. */}}
{{- define "kollect.resources" -}}
{{- if eq .Values.resourcesProfile "largeCluster" }}
{{- toYaml .Values.largeCluster.resources }}
{{- else }}
{{- toYaml .Values.resources }}
{{- end }}
{{- end }}

{{- define "kollect.controller" -}}
{{- if eq .Values.resourcesProfile "largeCluster" }}
{{- toYaml (mergeOverwrite (deepCopy .Values.controller) .Values.largeCluster.controller) }}
{{- else }}
{{- toYaml .Values.controller }}
{{- end }}
{{- end }}


{{/* What the operator does with the namespaced Kollect kinds: it reads all of them, keeps its
finalizers on targets and inventories, clears probe requests on sinks and connection tests,
writes the status of what it reconciles and deletes finished connection tests. */}}
{{- define "kollect.namespacedKollectRules" -}}
- apiGroups: [kollect.dev]
  resources:
    - kollectprofiles
    - kollecttargets
    - kollectinventories
    - kollectscopes
    - kollectsnapshotsinks
    - kollectdatabasesinks
    - kollecteventsinks
    - kollectconnectiontests
  verbs: [get, list, watch]
- apiGroups: [kollect.dev]
  resources:
    - kollecttargets
    - kollectinventories
    - kollectsnapshotsinks
    - kollectdatabasesinks
    - kollecteventsinks
    - kollectconnectiontests
    - kollecttargets/status
    - kollectinventories/status
    - kollectsnapshotsinks/status
    - kollectdatabasesinks/status
    - kollecteventsinks/status
    - kollectconnectiontests/status
  verbs: [patch]
- apiGroups: [kollect.dev]
  resources: [kollectconnectiontests]
  verbs: [delete]
{{- end }}

{{/* What the operator does with core objects in the namespaces it manages: it reads the
Secrets sinks name (one by one, never listing them) and records Events. */}}
{{- define "kollect.namespacedCoreRules" -}}
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}
