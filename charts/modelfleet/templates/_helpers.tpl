{{/* The name of every object the chart names: `<release>-operator` unless overridden. */}}
{{- define "modelfleet.fullname" -}}
{{- default (printf "%s-operator" .Release.Name) .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object: kustomize's part-of plus Helm's own (tests compare without these four). */}}
{{- define "modelfleet.labels" -}}
app.kubernetes.io/part-of: modelfleet
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selects the operator pods (immutable once installed). */}}
{{- define "modelfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelfleet.fullname" . }}
{{- end -}}

{{/* The Secret the operator reads its default notification URLs from; empty when none is set. */}}
{{- define "modelfleet.notifySecret" -}}
{{- with .Values.notify -}}
{{- if .existingSecret -}}
{{- .existingSecret -}}
{{- else if or .slackUrl .teamsUrl .cloudeventsUrl -}}
{{- printf "%s-notify" (include "modelfleet.fullname" $) -}}
{{- end -}}
{{- end -}}
{{- end -}}
