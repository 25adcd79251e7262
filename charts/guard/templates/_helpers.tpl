{{/* Names, labels and the values several templates share. */}}

{{- define "guard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "guard.fullname" -}}
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

{{- define "guard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "guard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "guard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "guard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: guard
{{- end -}}

{{- define "guard.serviceAccountName" -}}
{{- default (include "guard.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "guard.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- if .Values.image.tag -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- end -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The webhook Service; its DNS names go into the serving certificate. */}}
{{- define "guard.webhookServiceName" -}}
{{- include "guard.fullname" . -}}
{{- end -}}

{{- define "guard.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "secret" -}}
{{- .Values.certificates.secret.name -}}
{{- else -}}
{{- printf "%s-tls" (include "guard.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "guard.dnsNames" -}}
{{- $svc := include "guard.webhookServiceName" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson -}}
{{- end -}}

{{/*
Namespaces the API server never sends to guard. The system namespaces and
guard's own are always there, so a guard outage can never stop the control
plane, node recovery or guard's own repair.
*/}}
{{- define "guard.excludedNamespaces" -}}
{{- $names := list "kube-system" "kube-public" "kube-node-lease" .Release.Namespace -}}
{{- if eq .Values.certificates.mode "certManager" -}}
{{- $names = append $names .Values.certificates.certManager.namespace -}}
{{- end -}}
{{- $names = concat $names .Values.webhook.excludedNamespaces -}}
{{- $names | uniq | toJson -}}
{{- end -}}

{{/* A user request fails closed only in deny mode; controllers always fail open. */}}
{{- define "guard.userFailurePolicy" -}}
{{- if eq .Values.enforcement "deny" -}}
{{- .Values.webhook.failurePolicy -}}
{{- else -}}
Ignore
{{- end -}}
{{- end -}}

{{/*
Checks across values that the schema cannot say clearly. Called from the
Deployment, so every render runs them.
*/}}
{{- define "guard.validate" -}}
{{- if eq .Values.webhook.optOutLabel "kubernetes.io/metadata.name" -}}
{{- fail "webhook.optOutLabel: kubernetes.io/metadata.name is on every namespace, so guard would judge nothing; choose a label of your own such as guard.dev/ignore" -}}
{{- end -}}
{{- if and (gt (int .Values.podDisruptionBudget.maxUnavailable) 0) (gt (int .Values.replicaCount) 1) (ge (int .Values.podDisruptionBudget.maxUnavailable) (int .Values.replicaCount)) -}}
{{- fail (printf "podDisruptionBudget.maxUnavailable (%d) must be lower than replicaCount (%d), or a drain could take every replica at once" (int .Values.podDisruptionBudget.maxUnavailable) (int .Values.replicaCount)) -}}
{{- end -}}
{{- end -}}
