{{- define "otp-gateway.fullname" -}}
{{- printf "%s-otp-gateway" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "otp-gateway.selectorLabels" -}}
app.kubernetes.io/name: otp-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "otp-gateway.labels" -}}
{{ include "otp-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* A duration value ("500ms", "5s", "2m") in whole seconds, rounded up. */}}
{{- define "otp-gateway.seconds" -}}
{{- $v := toString . -}}
{{- if hasSuffix "ms" $v -}}{{ div (add (trimSuffix "ms" $v | atoi) 999) 1000 }}
{{- else if hasSuffix "m" $v -}}{{ mul (trimSuffix "m" $v | atoi) 60 }}
{{- else -}}{{ trimSuffix "s" $v | atoi }}
{{- end -}}
{{- end -}}

{{/*
preStop sleep + http.shutdown_grace + the drain of in-flight requests (each bounded by
http.request_timeout for its head and body plus smpp.submit_timeout for its SMS) + a margin
for the SMPP unbind and the admin listener. Defaults are the gateway's own.
*/}}
{{- define "otp-gateway.terminationGrace" -}}
{{- $c := .Values.config -}}
{{- $grace := include "otp-gateway.seconds" (dig "http" "shutdown_grace" "5s" $c) | atoi -}}
{{- $request := include "otp-gateway.seconds" (dig "http" "request_timeout" "10s" $c) | atoi -}}
{{- $submit := include "otp-gateway.seconds" (dig "smpp" "submit_timeout" "5s" $c) | atoi -}}
{{- add (int .Values.preStopSleepSeconds) $grace $request $submit (int .Values.shutdownMarginSeconds) -}}
{{- end -}}

{{/* One TOML value: strings, numbers, booleans and arrays of them; JSON spelling is TOML. */}}
{{- define "otp-gateway.tomlValue" -}}
{{- toJson . -}}
{{- end -}}

{{/* A TOML table [name] from a map: scalar keys first, then sub-tables. */}}
{{- define "otp-gateway.tomlTable" -}}
{{- $name := index . 0 -}}
{{- $table := index . 1 -}}
[{{ $name }}]
{{- range $k, $v := $table }}
{{- if not (kindIs "map" $v) }}
{{ toJson $k }} = {{ include "otp-gateway.tomlValue" $v }}
{{- end }}
{{- end }}
{{- range $k, $v := $table }}
{{- if kindIs "map" $v }}
{{ include "otp-gateway.tomlTable" (list (printf "%s.%s" $name $k) $v) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The whole gateway.toml: config plus what the chart owns (listeners, sandbox, key file). */}}
{{- define "otp-gateway.toml" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $http := default (dict) $cfg.http -}}
{{- $_ := set $http "listen" (printf "0.0.0.0:%d" (int .Values.ports.http)) -}}
{{- $_ := set $cfg "http" $http -}}
{{- $admin := default (dict) $cfg.admin -}}
{{- $_ := set $admin "listen" (printf "0.0.0.0:%d" (int .Values.ports.admin)) -}}
{{- $_ := set $cfg "admin" $admin -}}
{{- $sandbox := default (dict) $cfg.sandbox -}}
{{- $_ := set $sandbox "expose" (and (eq .Values.profile "sandbox") .Values.smsc.embedded) -}}
{{- $_ := set $cfg "sandbox" $sandbox -}}
{{- if .Values.secrets.signingKey.name -}}
{{- $auth := default (dict) $cfg.auth -}}
{{- if .Values.secrets.signingKey.keys -}}
{{- $files := list -}}
{{- range .Values.secrets.signingKey.keys -}}
{{- $files = append $files (printf "/etc/otp-gateway-secrets/%s" .) -}}
{{- end -}}
{{- $_ := set $auth "signing_key_files" $files -}}
{{- else -}}
{{- $_ := set $auth "signing_key_file" "/etc/otp-gateway-secrets/signing-key.pem" -}}
{{- end -}}
{{- $_ := set $cfg "auth" $auth -}}
{{- end -}}
{{- with .Values.secrets.redisTls -}}
{{- if .name -}}
{{- $store := default (dict) $cfg.store -}}
{{- if .caKey -}}
{{- $_ := set $store "redis_ca_file" "/etc/otp-gateway-redis-tls/ca.pem" -}}
{{- end -}}
{{- if and .certKey .keyKey -}}
{{- $_ := set $store "redis_client_cert_file" "/etc/otp-gateway-redis-tls/client.pem" -}}
{{- $_ := set $store "redis_client_key_file" "/etc/otp-gateway-redis-tls/client-key.pem" -}}
{{- end -}}
{{- $_ := set $cfg "store" $store -}}
{{- end -}}
{{- end -}}
# Rendered by the otp-gateway chart from .Values.config; secrets come from the environment.
{{- range $section, $table := $cfg }}
{{ include "otp-gateway.tomlTable" (list $section (default (dict) $table)) }}
{{- end }}
{{- end -}}
