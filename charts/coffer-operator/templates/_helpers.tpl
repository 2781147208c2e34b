{{/* Names, labels and small helpers of the coffer-operator chart. */}}

{{- define "coffer-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-coffer-operator, or the release name when it already contains the chart name. */}}
{{- define "coffer-operator.fullname" -}}
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

{{- define "coffer-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Pod selector: never add to it (a Deployment's selector is immutable). */}}
{{- define "coffer-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "coffer-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "coffer-operator.labels" -}}
helm.sh/chart: {{ include "coffer-operator.chart" . }}
{{ include "coffer-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: coffer
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "coffer-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "coffer-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "coffer-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "coffer-operator.leaseNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.namespace }}
{{- end }}

{{- define "coffer-operator.leaseName" -}}
{{- default (include "coffer-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* Checks of value combinations that would install a broken operator. */}}
{{- define "coffer-operator.validate" -}}
{{- if lt (int .Values.replicas) 0 }}
{{- fail "replicas must not be negative" }}
{{- end }}
{{- if and .Values.watchNamespace (not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" .Values.watchNamespace)) }}
{{- fail (printf "watchNamespace %q is not a namespace name (one namespace; empty watches all)" .Values.watchNamespace) }}
{{- end }}
{{- if and .Values.sync.enabled .Values.sync.watchNamespace (not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" .Values.sync.watchNamespace)) }}
{{- fail (printf "sync.watchNamespace %q is not a namespace name (one namespace; empty watches all)" .Values.sync.watchNamespace) }}
{{- end }}
{{- if and .Values.sync.enabled (lt (int .Values.sync.replicas) 0) }}
{{- fail "sync.replicas must not be negative" }}
{{- end }}
{{- end }}

{{/* The sync controller (coffer sync run): fixed names, its own selector. */}}
{{- define "coffer-operator.syncSelectorLabels" -}}
app.kubernetes.io/name: coffer-sync
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "coffer-operator.syncLabels" -}}
helm.sh/chart: {{ include "coffer-operator.chart" . }}
{{ include "coffer-operator.syncSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: sync
app.kubernetes.io/part-of: coffer
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
