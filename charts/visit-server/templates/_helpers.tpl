{{/*
The chart's name: nameOverride, or visit-server. At most 52 characters, like the full name.
*/}}
{{- define "visit-server.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/*
The name of every object: <release>-visit-server, or the release alone when it contains the
chart's name (release visit-server gives visit-server, as the overlays name their objects).
At most 52 characters: the StatefulSet's controller labels each pod with the name, a dash
and a 10-character hash, and a label value holds 63.
*/}}
{{- define "visit-server.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The headless Service that governs the StatefulSet: each pod is <fullname>-N.<this>.
*/}}
{{- define "visit-server.headlessName" -}}
{{- include "visit-server.fullname" . }}-headless
{{- end }}

{{/*
The pod port a Service leads to: by name (http) when the server faces its clients; by number
behind the front proxy, whose port is an init container's, which some network plugins do not
resolve by name.
*/}}
{{- define "visit-server.targetPort" -}}
targetPort: {{ if .Values.frontProxy.enabled }}8080{{ else }}http{{ end }}
{{- end }}

{{/*
The chart label's value: name and version.
*/}}
{{- define "visit-server.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
What selects this release's pods. Fixed for the life of a release: a StatefulSet's selector
cannot change.
*/}}
{{- define "visit-server.selectorLabels" -}}
app.kubernetes.io/name: {{ include "visit-server.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The pod template's labels: the selector and the application, nothing that changes with the
chart's version (a new label would be a new pod template, and a rollout).
*/}}
{{- define "visit-server.podLabels" -}}
{{ include "visit-server.selectorLabels" . }}
app.kubernetes.io/part-of: visit-journal
{{- end }}

{{/*
Every object's labels: Kubernetes' recommended ones.
*/}}
{{- define "visit-server.labels" -}}
helm.sh/chart: {{ include "visit-server.chart" . }}
{{ include "visit-server.podLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}: repository@digest when a digest is given
(as kustomize's `images: digest:` writes it), else repository:tag, the tag defaulting to the
second argument.
*/}}
{{- define "visit-server.imageRef" -}}
{{- $image := index . 0 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default (index . 1) $image.tag) }}
{{- end }}
{{- end }}

{{/*
A SIZE value as the server reads it: a string as written, a number as whole bytes (a number
from a values file reaches the template as a float, which would print as 8.388608e+06).
*/}}
{{- define "visit-server.size" -}}
{{- if kindIs "string" . }}{{ . }}{{ else }}{{ . | int64 }}{{ end }}
{{- end }}

{{/*
A value in bytes, as a float, from (list VALUE FACTORS): VALUE is a number and a suffix that
FACTORS maps to its multiplier. The schema has checked the syntax.
*/}}
{{- define "visit-server.bytes" -}}
{{- $text := include "visit-server.size" (index . 0) }}
{{- $number := regexFind "^[0-9]*[.]?[0-9]*" $text }}
{{- mulf (float64 $number) (get (index . 1) (trimPrefix $number $text)) }}
{{- end }}

{{/*
The multipliers of a SIZE's suffixes (CONTRACT.md section 6): powers of 1024, whatever the
spelling.
*/}}
{{- define "visit-server.sizeFactors" -}}
{{- dict "" 1 "K" 1024 "KiB" 1024 "M" 1048576 "MiB" 1048576 "G" 1073741824 "GiB" 1073741824 | toJson }}
{{- end }}

{{/*
The multipliers of a Kubernetes quantity's suffixes: Ki..Ei are powers of 1024, k..E of 1000.
*/}}
{{- define "visit-server.quantityFactors" -}}
{{- dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 "Ei" 1152921504606846976 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "P" 1000000000000000 "E" 1000000000000000000 | toJson }}
{{- end }}

{{/*
The checks the schema cannot make, each failing with the values it is about.
*/}}
{{- define "visit-server.validate" -}}
{{- if and .Values.frontProxy.enabled .Values.trustedProxies }}
{{- fail (printf "trustedProxies %v: with frontProxy.enabled the server believes only its own proxy, 127.0.0.1, and nginx.conf sets X-Forwarded-For to the address of the proxy's client; set frontProxy.enabled=false to trust other proxies, or leave trustedProxies empty" .Values.trustedProxies) }}
{{- end }}
{{- $sizes := include "visit-server.sizeFactors" . | fromJson }}
{{- $rotate := include "visit-server.bytes" (list .Values.journal.rotateSize $sizes) | float64 }}
{{- $retain := include "visit-server.bytes" (list .Values.journal.retainSize $sizes) | float64 }}
{{- $claim := include "visit-server.bytes" (list .Values.persistence.size (include "visit-server.quantityFactors" . | fromJson)) | float64 }}
{{- if and (gt $retain 0.0) (gt (addf $retain $rotate) (mulf $claim 0.85)) }}
{{- fail (printf "journal.retainSize %v plus journal.rotateSize %v is more than 85%% of persistence.size %v: the live file grows by up to one rotate size before it is sealed, and retiring a segment needs room for the new summary first, so a journal this large would fill its claim; lower journal.retainSize or raise persistence.size" (include "visit-server.size" .Values.journal.retainSize) (include "visit-server.size" .Values.journal.rotateSize) .Values.persistence.size) }}
{{- end }}
{{- include "visit-server.validateMetrics" . }}
{{- end }}

{{/*
nginx.conf, from the chart's files/nginx.conf: a symbolic link to
k8s/components/front-proxy/nginx.conf, the one copy the overlays use too (`helm package`
stores the file it points at). A checkout without symbolic links holds the link's target
path instead, which nginx could not run: refuse it.
*/}}
{{- define "visit-server.nginxConf" -}}
{{- $conf := .Files.Get "files/nginx.conf" }}
{{- if not (and (contains "events {" $conf) (contains "http {" $conf)) }}
{{- fail (printf "files/nginx.conf is not an nginx configuration (%d bytes: %q): it should be a symbolic link to k8s/components/front-proxy/nginx.conf; check out the repository with symbolic links, or install the packaged chart" (len $conf) ($conf | trunc 80)) }}
{{- end }}
{{- $conf }}
{{- end }}

{{/*
The alerts' rule groups: the spec.groups of k8s/components/monitoring/prometheusrule.yaml,
read through the chart's files/prometheusrule.yaml, a symbolic link to it (the one file of
alerts, which the component renders and CI runs promtool on; `helm package` stores its
content). The file is data, never a template: the annotations' $labels and $value reach
Prometheus as written. A checkout without symbolic links holds the link's target path
instead: refuse it.
*/}}
{{- define "visit-server.ruleGroups" -}}
{{- $text := .Files.Get "files/prometheusrule.yaml" }}
{{- $rule := fromYaml $text }}
{{- $groups := dig "spec" "groups" list $rule }}
{{- if or (hasKey $rule "Error") (ne (get $rule "kind") "PrometheusRule") (not $groups) }}
{{- fail (printf "files/prometheusrule.yaml is not a PrometheusRule with spec.groups (%d bytes: %q): it should be a symbolic link to k8s/components/monitoring/prometheusrule.yaml; check out the repository with symbolic links, or install the packaged chart" (len $text) ($text | trunc 80)) }}
{{- end }}
{{- toYaml $groups }}
{{- end }}

{{/*
A Prometheus duration (30s, 1m30s, 500ms; the schema has checked the syntax) in
milliseconds, as a float.
*/}}
{{- define "visit-server.milliseconds" -}}
{{- $factors := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000 "w" 604800000 "y" 31536000000 }}
{{- $total := 0.0 }}
{{- range regexFindAll "[0-9]+(ms|[ywdhms])" . -1 }}
{{- $number := regexFind "^[0-9]+" . }}
{{- $total = addf $total (mulf (float64 $number) (get $factors (trimPrefix $number .))) }}
{{- end }}
{{- $total }}
{{- end }}

{{/*
The monitoring values' checks that the schema cannot make, each failing with the values it
is about. Made whether or not the objects are on, so that a bad value is found when it is
written, not when monitoring is turned on later.
*/}}
{{- define "visit-server.validateMetrics" -}}
{{- $own := include "visit-server.labels" . | fromYaml }}
{{- range $kind := list "serviceMonitor" "prometheusRule" }}
{{- range $key, $value := (get $.Values.metrics $kind).labels }}
{{- if hasKey $own $key }}
{{- fail (printf "metrics.%s.labels %s: the chart sets this label itself (%s: %s); give the Prometheus's selector another label, such as release" $kind $key $key (get $own $key)) }}
{{- end }}
{{- end }}
{{- end }}
{{- $monitor := .Values.metrics.serviceMonitor }}
{{- $name := include "visit-server.name" . }}
{{- if and $monitor.enabled (ne $name "visit-server") }}
{{- fail (printf "nameOverride %s: with metrics.serviceMonitor.enabled the scraped targets' job is the headless Service's app.kubernetes.io/name, which would be %q, and the alerts select job=\"visit-server\", so none of them could fire; leave nameOverride empty and rename the objects with fullnameOverride" .Values.nameOverride $name) }}
{{- end }}
{{- $interval := 0.0 }}
{{- if $monitor.interval }}
{{- $interval = include "visit-server.milliseconds" $monitor.interval | float64 }}
{{- if eq $interval 0.0 }}
{{- fail (printf "metrics.serviceMonitor.interval %s: a scrape interval must be longer than 0; empty uses the Prometheus's own interval" $monitor.interval) }}
{{- end }}
{{- if gt $interval 120000.0 }}
{{- fail (printf "metrics.serviceMonitor.interval %s is longer than 2m: the alerts count over 10-minute windows, and Prometheus drops a series 5 minutes after its last sample, so they would miss or flap; scrape at least every 2m, or leave it empty for the Prometheus's own interval" $monitor.interval) }}
{{- end }}
{{- end }}
{{- if $monitor.scrapeTimeout }}
{{- $timeout := include "visit-server.milliseconds" $monitor.scrapeTimeout | float64 }}
{{- if eq $timeout 0.0 }}
{{- fail (printf "metrics.serviceMonitor.scrapeTimeout %s: a scrape needs some time; empty uses the Prometheus's own timeout" $monitor.scrapeTimeout) }}
{{- end }}
{{- if and $monitor.interval (gt $timeout $interval) }}
{{- fail (printf "metrics.serviceMonitor.scrapeTimeout %s is longer than metrics.serviceMonitor.interval %s: the Prometheus Operator rejects such a ServiceMonitor; shorten the timeout or leave it empty" $monitor.scrapeTimeout $monitor.interval) }}
{{- end }}
{{- if and (not $monitor.interval) (gt $timeout 120000.0) }}
{{- fail (printf "metrics.serviceMonitor.scrapeTimeout %s is longer than 2m, the longest scrape interval the alerts allow, and the Prometheus Operator rejects a timeout longer than the interval; shorten the timeout or leave it empty" $monitor.scrapeTimeout) }}
{{- end }}
{{- end }}
{{- end }}
