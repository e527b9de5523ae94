{{/* Names: every object is `<release>-r1-<role>` (or `<release>` when it already says r1). */}}
{{- define "r1.fullname" -}}
{{- if contains "r1" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-r1" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "r1.labels" -}}
app.kubernetes.io/name: r1
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one role: include "r1.selector" (list $ "coordinator") */}}
{{- define "r1.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: r1
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "r1.coordinator.name" -}}{{ include "r1.fullname" . }}-coordinator{{- end -}}
{{- define "r1.learner.name" -}}{{ include "r1.fullname" . }}-learner{{- end -}}

{{/* The coordinator's gRPC address, as every worker and r1ctl dials it. */}}
{{- define "r1.coordinator.url" -}}
http://{{ include "r1.coordinator.name" . }}.{{ .Release.Namespace }}.svc.cluster.local:{{ .Values.coordinator.port }}
{{- end -}}

{{/* Learner rank 0's stable DNS name (through the headless Service). */}}
{{- define "r1.learner0.host" -}}
{{ include "r1.learner.name" . }}-0.{{ include "r1.learner.name" . }}.{{ .Release.Namespace }}.svc.cluster.local
{{- end -}}

{{- define "r1.token.secret" -}}
{{- if .Values.auth.existingSecret -}}{{ .Values.auth.existingSecret }}{{- else -}}{{ include "r1.fullname" . }}-token{{- end -}}
{{- end -}}

{{- define "r1.token.key" -}}
{{- if .Values.auth.existingSecret -}}{{ .Values.auth.existingSecretKey }}{{- else -}}token{{- end -}}
{{- end -}}

{{/* One env var from the token Secret: include "r1.token.env" (list $ "R1_TOKEN") */}}
{{- define "r1.token.env" -}}
{{- $ := index . 0 -}}
- name: {{ index . 1 }}
  valueFrom:
    secretKeyRef:
      name: {{ include "r1.token.secret" $ }}
      key: {{ include "r1.token.key" $ }}
{{- end -}}

{{/* The image of a role: include "r1.image" (list $ gpuEnabled) */}}
{{- define "r1.image" -}}
{{- $ := index . 0 -}}
{{- $img := ternary $.Values.cudaImage $.Values.image (index . 1) -}}
image: {{ printf "%s:%s" $img.repository (default $.Chart.AppVersion $img.tag) | quote }}
imagePullPolicy: {{ $img.pullPolicy }}
{{- end -}}

{{/* GPU requests of a role, failing on a GPU role without a count: include "r1.gpu" (list $ .Values.learner.gpu "learner") */}}
{{- define "r1.gpu" -}}
{{- $gpu := index . 1 -}}
{{- if $gpu.enabled -}}
{{- if lt (int $gpu.count) 1 -}}
{{- fail (printf "%s.gpu.count is %v: with %s.gpu.enabled = true set %s.gpu.count to the GPUs per pod (1 or more)" (index . 2) $gpu.count (index . 2) (index . 2)) -}}
{{- end -}}
nvidia.com/gpu: {{ $gpu.count }}
{{- end -}}
{{- end -}}

{{/* Resources with the GPU request merged in: include "r1.resources" (list $ .Values.learner "learner") */}}
{{- define "r1.resources" -}}
{{- $ := index . 0 -}}
{{- $role := index . 1 -}}
{{- $gpu := include "r1.gpu" (list $ $role.gpu (index . 2)) | fromYaml -}}
{{- $res := deepCopy ($role.resources | default dict) -}}
{{- if $gpu -}}
{{- $_ := set $res "limits" (merge (deepCopy ($res.limits | default dict)) $gpu) -}}
{{- $_ := set $res "requests" (merge (deepCopy ($res.requests | default dict)) $gpu) -}}
{{- end -}}
{{- toYaml $res -}}
{{- end -}}

{{/* Pod-level security: non-root, no privilege escalation, the runtime's seccomp profile. */}}
{{- define "r1.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "r1.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* A claim: include "r1.claim" (list $ name storage) */}}
{{- define "r1.claim" -}}
{{- $ := index . 0 -}}
{{- $s := index . 2 -}}
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ index . 1 }}
  labels:
    {{- include "r1.labels" $ | nindent 4 }}
  annotations:
    # Data outlives the release: `helm uninstall` keeps the claim.
    helm.sh/resource-policy: keep
spec:
  accessModes: [{{ $s.accessMode | default "ReadWriteOnce" }}]
  {{- with $s.storageClass }}
  storageClassName: {{ . }}
  {{- end }}
  resources:
    requests:
      storage: {{ $s.size }}
{{- end -}}

{{- define "r1.data.claim" -}}
{{- .Values.data.existingClaim | default (printf "%s-data" (include "r1.fullname" .)) -}}
{{- end -}}

{{- define "r1.checkpoints.claim" -}}
{{- .Values.learner.checkpoints.existingClaim | default (printf "%s-checkpoints" (include "r1.fullname" .)) -}}
{{- end -}}

{{/* gRPC probes on a port (grpc.health.v1, service ""): include "r1.probes" (list port startupSeconds) */}}
{{- define "r1.probes" -}}
startupProbe:
  grpc: {port: {{ index . 0 }}}
  periodSeconds: 5
  failureThreshold: {{ div (index . 1) 5 }}
readinessProbe:
  grpc: {port: {{ index . 0 }}}
  periodSeconds: 10
livenessProbe:
  grpc: {port: {{ index . 0 }}}
  periodSeconds: 20
  failureThreshold: 6
{{- end -}}
