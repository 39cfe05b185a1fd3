#!/usr/bin/env bash
# Validates the Kubernetes manifests in deploy/, offline but for PyPI:
#
# 1. kubernetes-validate, in strict mode (unknown fields are errors), against
#    the newest Kubernetes version whose schemas it bundles, on every object
#    of every manifest. Kinds it has no schema for (CRDs) fail, except the
#    ones listed in CRD_KINDS below, which are checked by step 2 instead; the
#    output says which objects were and were not schema-validated.
# 2. Structure and wiring: the CRD objects' apiVersion, kind and the fields
#    they need; kustomization.yaml lists exactly the manifests; the
#    DaemonSet's service account, ConfigMap, ports and probes, the RBAC
#    binding, the metrics Service and ServiceMonitor selectors all point at
#    something that exists; an unprivileged DaemonSet passes --proc-sys-net
#    naming a writable hostPath /proc/sys/net mount outside /proc; the
#    KubeProxyConfiguration parses; every
#    checkov.io/skipN annotation has a check ID and a reason.
# 3. checkov (kubernetes framework): fails on any failed check; the only
#    accepted findings are the ones skipped by checkov.io/skipN annotations
#    in the manifests themselves, each with its reason, and a skip that no
#    longer matches a finding fails too (it would hide a future one).
#
# Tools go to a venv in target/deploy-venv (created, and the tools
# installed at the versions below, only when missing). Runs as root on
# Debian; installs python3-venv with apt-get when `python3 -m venv` cannot
# make a venv. Exits non-zero, saying why, on any failure.
#
# Usage: bash integration/scripts/validate-deploy.sh
# Env:   KUBERNETES_VALIDATE_VERSION, CHECKOV_VERSION (pip versions),
#        KUBERNETES_VERSION (default: the newest kubernetes-validate bundles).
set -euo pipefail

cd "$(dirname "$0")/../.."
DEPLOY=deploy
VENV=target/deploy-venv
OUT=target/deploy-validate
KUBERNETES_VALIDATE_VERSION=${KUBERNETES_VALIDATE_VERSION:-1.37.0}
CHECKOV_VERSION=${CHECKOV_VERSION:-3.3.30}
# Kinds without a schema in kubernetes-validate, checked structurally
# instead ("apiVersion kind" per line).
CRD_KINDS="monitoring.coreos.com/v1 ServiceMonitor"

say() { echo "validate-deploy: $*"; }
fail() {
    echo "validate-deploy: FAILED: $*" >&2
    exit 1
}
trap 'echo "validate-deploy: FAILED: unexpected error at line $LINENO (exit $?)" >&2' ERR

# --- tools -------------------------------------------------------------------

make_venv() {
    rm -rf "$VENV"
    python3 -m venv "$VENV"
}

tools_installed() {
    [ -x "$VENV/bin/python" ] || return 1
    [ -x "$VENV/bin/kubernetes-validate" ] && [ -x "$VENV/bin/checkov" ] || return 1
    "$VENV/bin/python" - "$KUBERNETES_VALIDATE_VERSION" "$CHECKOV_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if (version("kubernetes-validate"), version("checkov")) == tuple(sys.argv[1:3]) else 1)
PY
}

mkdir -p target "$OUT"
if tools_installed; then
    say "tools: already in $VENV"
else
    if ! command -v python3 >/dev/null; then
        say "installing python3 and python3-venv (apt-get)"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-venv
    fi
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        if ! make_venv 2>"$OUT/venv.err"; then
            cat "$OUT/venv.err" >&2
            say "python3 -m venv failed; installing python3-venv (apt-get)"
            apt-get update -q
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
            make_venv || fail "python3 -m venv still fails after installing python3-venv"
        fi
    fi
    say "tools: installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION checkov==$CHECKOV_VERSION into $VENV (PyPI)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "checkov==$CHECKOV_VERSION" \
        || fail "pip could not install kubernetes-validate and checkov"
    tools_installed || fail "kubernetes-validate $KUBERNETES_VALIDATE_VERSION / checkov $CHECKOV_VERSION missing from $VENV after pip install"
fi
PY="$VENV/bin/python"

# --- the manifests -----------------------------------------------------------

[ -f "$DEPLOY/kustomization.yaml" ] || fail "$DEPLOY/kustomization.yaml is missing"
manifests=()
for file in "$DEPLOY"/*.yaml "$DEPLOY"/*.yml; do
    [ -e "$file" ] || continue
    [ "$(basename "$file")" = kustomization.yaml ] && continue
    manifests+=("$file")
done
[ ${#manifests[@]} -gt 0 ] || fail "no manifests in $DEPLOY/"
say "manifests: ${manifests[*]}"

# --- 1. kubernetes-validate --------------------------------------------------

# The newest version with bundled strict schemas (they ship in the wheel:
# nothing is downloaded).
read -r latest strict_dir < <("$PY" - <<'PY'
import os
import kubernetes_validate
from kubernetes_validate.utils import latest_version
version = latest_version()
schemas = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema")
print(version, os.path.join(schemas, f"v{version}-local-strict"))
PY
)
KUBERNETES_VERSION=${KUBERNETES_VERSION:-$latest}
[ -d "$strict_dir" ] || fail "kubernetes-validate has no bundled strict schemas ($strict_dir)"
say "kubernetes-validate $KUBERNETES_VALIDATE_VERSION: Kubernetes $KUBERNETES_VERSION (newest bundled: $latest), --strict, schemas bundled offline in $(dirname "$strict_dir")"

schema_validated=()
crd_documents=()
for file in "${manifests[@]}"; do
    # One "apiVersion kind name" line per document of the file.
    listing=$("$PY" - "$file" <<'PY'
import sys, yaml
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if doc is None:
        continue
    if not isinstance(doc, dict):
        sys.exit(f"{sys.argv[1]}: a document is not a mapping")
    print(doc.get("apiVersion"), doc.get("kind"), (doc.get("metadata") or {}).get("name"))
PY
) || fail "$file: not valid YAML"
    [ -n "$listing" ] || fail "$file: no Kubernetes objects"
    mapfile -t documents <<<"$listing"
    status=0
    output=$("$VENV/bin/kubernetes-validate" -k "$KUBERNETES_VERSION" --strict "$file" 2>&1) || status=$?
    printf '%s\n' "$output" | sed 's/^/  /'
    [ "$status" -eq 0 ] || fail "kubernetes-validate rejected $file (exit $status)"
    for document in "${documents[@]}"; do
        read -r api_version kind name <<<"$document"
        if grep -qxF "$api_version $kind" <<<"$CRD_KINDS"; then
            # kubernetes-validate has no schema for it: it must say so, and
            # the structural check below takes over.
            grep -q "Couldn't find schema for kind $kind with api version $api_version" <<<"$output" \
                || fail "$file: expected kubernetes-validate to report no schema for $kind $api_version"
            crd_documents+=("$file: $kind/$name ($api_version)")
        elif grep -qi "passed for resource ${kind}/${name} " <<<"$output"; then
            schema_validated+=("$file: $kind/$name")
        else
            fail "$file: $kind/$name ($api_version) was not schema-validated (no schema for it and not in CRD_KINDS?)"
        fi
    done
    # Anything without a schema that is not an expected CRD is an error, never a skip.
    while read -r line; do
        [ -n "$line" ] || continue
        kind=$(sed -n "s/.*Couldn't find schema for kind \([^ ]*\) with api version \([^ ]*\) .*/\2 \1/p" <<<"$line")
        grep -qxF "$kind" <<<"$CRD_KINDS" || fail "$file: no schema and not an expected CRD: $line"
    done < <(grep "Couldn't find schema" <<<"$output" || true)
done

# --- 2. structure and wiring -------------------------------------------------

say "structure and wiring checks (CRDs: $(tr '\n' ';' <<<"$CRD_KINDS"))"
"$PY" - "$DEPLOY" "${manifests[@]}" <<'PY' || fail "structure and wiring checks (problems above)"
import ipaddress
import re
import sys
from pathlib import Path

import yaml

deploy, files = Path(sys.argv[1]), sys.argv[2:]
problems = []


def check(condition, message):
    if not condition:
        problems.append(message)
    return condition


objects = []  # (file, object)
for file in files:
    for doc in yaml.safe_load_all(open(file)):
        if doc:
            objects.append((file, doc))


def find(kind, name=None, api_version=None):
    return [
        (f, o) for f, o in objects
        if o.get("kind") == kind
        and (name is None or o["metadata"].get("name") == name)
        and (api_version is None or o.get("apiVersion") == api_version)
    ]


def one(kind, name=None, api_version=None):
    found = find(kind, name, api_version)
    check(len(found) == 1, f"expected exactly one {kind} {name or ''}, found {len(found)}")
    return found[0][1] if found else {}


def subset(small, big):
    return all(big.get(k) == v for k, v in (small or {}).items())


CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}
NAMESPACE = "kube-system"

# Every object: named, in kube-system unless cluster-scoped, skips with reasons.
for file, obj in objects:
    meta = obj.get("metadata") or {}
    where = f"{file}: {obj.get('kind')}/{meta.get('name')}"
    check(meta.get("name"), f"{where}: no metadata.name")
    if obj.get("kind") in CLUSTER_SCOPED:
        check("namespace" not in meta, f"{where}: cluster-scoped but has a namespace")
    else:
        check(meta.get("namespace") == NAMESPACE, f"{where}: namespace must be {NAMESPACE}")
    for key, value in (meta.get("annotations") or {}).items():
        if key.startswith("checkov.io/skip"):
            match = re.fullmatch(r"(CKV2?_K8S_\d+)=(.+)", str(value))
            if check(match, f"{where}: {key} must be CHECK_ID=reason, is {value!r}"):
                check(len(match.group(2).split()) >= 5,
                      f"{where}: {key} ({match.group(1)}) needs a real reason, not {match.group(2)!r}")

# kustomization.yaml lists exactly the manifests.
kustomization = yaml.safe_load(open(deploy / "kustomization.yaml"))
check(kustomization.get("kind") == "Kustomization", "kustomization.yaml: kind is not Kustomization")
listed = set(kustomization.get("resources") or [])
on_disk = {Path(f).name for f in files}
check(listed == on_disk, f"kustomization.yaml resources {sorted(listed)} != manifests {sorted(on_disk)}")

# ServiceMonitor (no schema in kubernetes-validate): fields the Prometheus
# Operator needs, and only known ones.
monitors = find("ServiceMonitor")
for file, sm in monitors:
    where = f"{file}: ServiceMonitor/{sm['metadata'].get('name')}"
    check(sm.get("apiVersion") == "monitoring.coreos.com/v1", f"{where}: apiVersion must be monitoring.coreos.com/v1")
    check(set(sm) <= {"apiVersion", "kind", "metadata", "spec"}, f"{where}: unexpected top-level keys {sorted(set(sm))}")
    spec = sm.get("spec") or {}
    known_spec = {"selector", "namespaceSelector", "endpoints", "jobLabel", "targetLabels", "podTargetLabels",
                  "sampleLimit", "targetLimit", "labelLimit", "labelNameLengthLimit", "labelValueLengthLimit",
                  "attachMetadata", "scrapeProtocols", "keepDroppedTargets", "bodySizeLimit", "scrapeClass"}
    check(set(spec) <= known_spec, f"{where}: unknown spec keys {sorted(set(spec) - known_spec)}")
    selector = spec.get("selector")
    check(isinstance(selector, dict) and isinstance(selector.get("matchLabels"), dict) and selector["matchLabels"],
          f"{where}: spec.selector.matchLabels is required")
    endpoints = spec.get("endpoints")
    check(isinstance(endpoints, list) and endpoints, f"{where}: spec.endpoints must be a non-empty list")
    known_endpoint = {"port", "targetPort", "path", "scheme", "interval", "scrapeTimeout", "honorLabels",
                      "honorTimestamps", "relabelings", "metricRelabelings", "params", "tlsConfig",
                      "authorization", "bearerTokenSecret", "followRedirects", "enableHttp2", "filterRunning"}
    for index, endpoint in enumerate(endpoints or []):
        check(set(endpoint) <= known_endpoint, f"{where}: endpoints[{index}] unknown keys {sorted(set(endpoint) - known_endpoint)}")
        check(isinstance(endpoint.get("port"), str), f"{where}: endpoints[{index}].port must name a Service port")
        check(endpoint.get("scheme", "http") in ("http", "https"), f"{where}: endpoints[{index}].scheme")
        check(str(endpoint.get("path", "/metrics")).startswith("/"), f"{where}: endpoints[{index}].path")
        for duration in ("interval", "scrapeTimeout"):
            if duration in endpoint:
                check(re.fullmatch(r"(\d+(ms|s|m|h))+", str(endpoint[duration])), f"{where}: endpoints[{index}].{duration}")
        for relabel in endpoint.get("relabelings") or []:
            check(set(relabel) <= {"sourceLabels", "separator", "targetLabel", "regex", "modulo", "replacement", "action"},
                  f"{where}: endpoints[{index}].relabelings: unknown keys {sorted(relabel)}")
            check(str(relabel.get("action", "replace")).lower() in
                  {"replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep", "lowercase",
                   "uppercase", "keepequal", "dropequal"}, f"{where}: relabeling action {relabel.get('action')!r}")

# The DaemonSet and what it refers to.
ds = one("DaemonSet", "ipvs-agent", "apps/v1")
pod = ds.get("spec", {}).get("template", {}).get("spec", {})
pod_labels = ds.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
check(subset(ds.get("spec", {}).get("selector", {}).get("matchLabels"), pod_labels),
      "DaemonSet selector does not match its pod labels")
check(pod.get("hostNetwork") is True, "DaemonSet: hostNetwork must be true")
check(pod.get("priorityClassName") == "system-node-critical", "DaemonSet: priorityClassName")
account = pod.get("serviceAccountName")
check(find("ServiceAccount", account), f"DaemonSet serviceAccountName {account!r} has no ServiceAccount")
containers = {c["name"]: c for c in pod.get("containers", [])}
agent = containers.get("ipvs-agent", {})
check(agent, "DaemonSet: no container ipvs-agent")
ports = {p.get("name"): p.get("containerPort") for p in agent.get("ports", [])}
for probe in ("livenessProbe", "readinessProbe"):
    port = (agent.get(probe) or {}).get("httpGet", {}).get("port")
    check(port in ports or port in ports.values(), f"DaemonSet {probe} port {port!r} is not a container port")
mounts = {m["name"]: m for m in agent.get("volumeMounts", [])}
volumes = {v["name"]: v for v in pod.get("volumes", [])}
check(set(mounts) <= set(volumes), f"volumeMounts without a volume: {sorted(set(mounts) - set(volumes))}")
for name, volume in volumes.items():
    if "configMap" in volume:
        check(find("ConfigMap", volume["configMap"]["name"]), f"volume {name}: no ConfigMap {volume['configMap']['name']}")
for env in agent.get("env", []):
    ref = (env.get("valueFrom") or {}).get("configMapKeyRef")
    if ref:
        check(find("ConfigMap", ref["name"]), f"env {env['name']}: no ConfigMap {ref['name']}")
        check(ref.get("optional") is True or ref["key"] in one("ConfigMap", ref["name"]).get("data", {}),
              f"env {env['name']}: ConfigMap {ref['name']} has no key {ref['key']} and the ref is not optional")
command = agent.get("command", []) + agent.get("args", [])


def flag(name):
    """A flag's value in either of pflag's forms, --name=value or --name value."""
    for index, word in enumerate(command):
        if word.startswith(f"--{name}="):
            return word.split("=", 1)[1]
        if word == f"--{name}" and index + 1 < len(command):
            return command[index + 1]
    return None


def mounted_key(path, what):
    """The ConfigMap data key mounted at PATH, or None (with a problem)."""
    directory, key = path.rsplit("/", 1)
    volume_names = [n for n, m in mounts.items() if m["mountPath"] == directory]
    if not check(volume_names, f"{what} {path}: nothing mounted at {directory}"):
        return None
    check(mounts[volume_names[0]].get("readOnly") is True, f"{directory} must be mounted readOnly")
    cm_name = volumes[volume_names[0]].get("configMap", {}).get("name")
    data = one("ConfigMap", cm_name).get("data", {})
    return data[key] if check(key in data, f"ConfigMap {cm_name} has no key {key}") else None


# kubeadm's command line: no subcommand, --config and --hostname-override.
check(not command[1:] or command[1].startswith("-"), f"DaemonSet: kubeadm's command has no subcommand: {command}")
check(flag("hostname-override") == "$(NODE_NAME)", "DaemonSet: --hostname-override must be $(NODE_NAME)")
config_path = flag("config")
check(config_path, "DaemonSet: the agent is not given --config")
config = {}
if config_path:
    text = mounted_key(config_path, "--config")
    if text is not None:
        config = yaml.safe_load(text)
kubeconfig = (config.get("clientConnection") or {}).get("kubeconfig")
if kubeconfig:
    mounted_key(kubeconfig, "clientConnection.kubeconfig")
check(config.get("apiVersion") == "kubeproxy.config.k8s.io/v1alpha1" and config.get("kind") == "KubeProxyConfiguration",
      "config.conf is not a kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration")
check(config.get("mode") == "ipvs", "config.conf: mode must be ipvs")

# Least privilege: an unprivileged container's /proc/sys is read-only, so
# the agent writes its net sysctls where the host's /proc/sys/net is
# mounted read-write (--proc-sys-net), outside /proc.
security = agent.get("securityContext") or {}
proc_sys_net = flag("proc-sys-net")
if not security.get("privileged"):
    check(proc_sys_net, "DaemonSet: not privileged, so --proc-sys-net must name the host's /proc/sys/net mount")
if proc_sys_net:
    check(not proc_sys_net.startswith("/proc/"), f"--proc-sys-net {proc_sys_net}: runc refuses mounts inside /proc")
    names = [n for n, m in mounts.items() if m["mountPath"] == proc_sys_net]
    if check(names, f"--proc-sys-net {proc_sys_net}: nothing mounted there"):
        check(not mounts[names[0]].get("readOnly"), f"--proc-sys-net {proc_sys_net}: the mount must be writable")
        check((volumes.get(names[0], {}).get("hostPath") or {}).get("path") == "/proc/sys/net",
              f"--proc-sys-net {proc_sys_net}: the volume must be hostPath /proc/sys/net")


def bind(field):
    host, _, port = str(config.get(field, "")).rpartition(":")
    try:
        return ipaddress.ip_address(host.strip("[]")), int(port)
    except ValueError:
        problems.append(f"config.conf {field} {config.get(field)!r} is not ADDRESS:PORT")
        return None, None


healthz_host, healthz_port = bind("healthzBindAddress")
metrics_host, metrics_port = bind("metricsBindAddress")
check(ports.get("healthz") == healthz_port, f"container port healthz {ports.get('healthz')} != healthzBindAddress port {healthz_port}")
check(ports.get("metrics") == metrics_port, f"container port metrics {ports.get('metrics')} != metricsBindAddress port {metrics_port}")
check(healthz_host is None or not healthz_host.is_loopback, "healthzBindAddress is loopback: the kubelet's probes cannot reach it")
if monitors:
    check(metrics_host is None or not metrics_host.is_loopback,
          "a ServiceMonitor is shipped but metricsBindAddress is loopback: Prometheus cannot scrape it")
else:
    check(metrics_host is None or metrics_host.is_loopback,
          "no ServiceMonitor is shipped: metricsBindAddress should stay on 127.0.0.1 (kube-proxy's default)")

# RBAC: the binding gives the ClusterRole to the DaemonSet's service account.
binding = one("ClusterRoleBinding", "ipvs-agent")
role_ref = binding.get("roleRef", {})
check(role_ref.get("kind") == "ClusterRole" and find("ClusterRole", role_ref.get("name")), "ClusterRoleBinding roleRef has no ClusterRole")
check({"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE} in binding.get("subjects", []),
      "ClusterRoleBinding does not bind the DaemonSet's service account")
for rule in one("ClusterRole", "ipvs-agent").get("rules", []):
    check("*" not in rule.get("verbs", []) + rule.get("resources", []) + rule.get("apiGroups", []),
          f"ClusterRole: wildcard in {rule}")

# Metrics: ServiceMonitor -> Service (labels, namespace, port name) -> pods.
for file, sm in monitors:
    spec = sm["spec"]
    namespaces = (spec.get("namespaceSelector") or {}).get("matchNames") or [sm["metadata"].get("namespace")]
    services = [o for _, o in find("Service") if o["metadata"].get("namespace") in namespaces
                and subset(spec["selector"]["matchLabels"], o["metadata"].get("labels", {}))]
    if check(len(services) == 1, f"{file}: the ServiceMonitor selects {len(services)} Services, expected 1"):
        service = services[0]
        check(service["spec"].get("clusterIP") == "None", "the metrics Service should be headless (clusterIP: None)")
        check(subset(service["spec"].get("selector"), pod_labels), "the metrics Service does not select the DaemonSet's pods")
        service_ports = {p.get("name"): p for p in service["spec"].get("ports", [])}
        for endpoint in spec["endpoints"]:
            # kubernetes-mixin's kube-proxy dashboard and KubeProxyDown alert
            # select job="kube-proxy".
            job = service["metadata"].get("labels", {}).get(spec.get("jobLabel", ""), service["metadata"]["name"])
            for relabel in endpoint.get("relabelings") or []:
                if relabel.get("targetLabel") == "job" and relabel.get("action", "replace") == "replace" \
                        and not relabel.get("sourceLabels"):
                    job = relabel.get("replacement")
            check(job == "kube-proxy", f"{file}: the scrape's job label is {job!r}, not kube-proxy (kubernetes-mixin)")
            if check(endpoint.get("port") in service_ports, f"ServiceMonitor port {endpoint.get('port')!r} is not a port of the Service"):
                target = service_ports[endpoint["port"]].get("targetPort")
                check(target in ports or target in ports.values(), f"Service targetPort {target!r} is not a container port")

if problems:
    for problem in problems:
        print(f"  problem: {problem}", file=sys.stderr)
    sys.exit(f"validate-deploy: FAILED: {len(problems)} structure/wiring problem(s)")
for file, sm in monitors:
    print(f"  {file}: {sm['kind']}/{sm['metadata']['name']}: structure checked (no schema)")
print(f"  {len(objects)} objects: references, ports, selectors, RBAC binding, command line, config.conf, skip annotations consistent")
PY

# --- 3. checkov --------------------------------------------------------------

# No network but PyPI: no Prisma Cloud / Bridgecrew downloads or uploads, no
# version check, no package (SCA) scan; parse errors are failures.
export BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=true CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false
export CKV_PARSE_ERROR_FAIL=true
checkov_version=$("$VENV/bin/checkov" --version)
say "checkov $checkov_version: checkov -d $DEPLOY --framework kubernetes --compact --quiet --skip-download"
status=0
"$VENV/bin/checkov" -d "$DEPLOY" --framework kubernetes --compact --quiet --skip-download || status=$?
[ "$status" -eq 0 ] || fail "checkov found failed checks or could not run (exit $status); fix them or skip them in the manifest with a checkov.io/skipN annotation and a reason"

# The same scan as JSON, to audit the skips: nothing failed, nothing
# unparsed, each skip has a reason. Then a scan of copies of the manifests
# with the checkov.io/skipN annotations removed: each annotation must match
# a finding there, in its file, or it is stale (and would hide a future one).
status=0
"$VENV/bin/checkov" -d "$DEPLOY" --framework kubernetes --skip-download -o json >"$OUT/checkov.json" 2>"$OUT/checkov.err" || status=$?
[ "$status" -eq 0 ] || { cat "$OUT/checkov.err" >&2; fail "checkov JSON run failed (exit $status)"; }
rm -rf "$OUT/unskipped"
mkdir -p "$OUT/unskipped"
"$PY" - "$OUT/unskipped" "${manifests[@]}" <<'PY' || fail "could not copy the manifests without their skip annotations"
import os, sys, yaml
target = sys.argv[1]
for file in sys.argv[2:]:
    docs = [d for d in yaml.safe_load_all(open(file)) if d]
    for doc in docs:
        annotations = doc.get("metadata", {}).get("annotations") or {}
        for key in [k for k in annotations if k.startswith("checkov.io/skip")]:
            del annotations[key]
    with open(os.path.join(target, os.path.basename(file)), "w") as out:
        yaml.safe_dump_all(docs, out, sort_keys=False)
PY
status=0
"$VENV/bin/checkov" -d "$OUT/unskipped" --framework kubernetes --skip-download -o json >"$OUT/checkov-unskipped.json" 2>"$OUT/checkov-unskipped.err" || status=$?
# Exit 1 is expected here (the findings the annotations accept); 2 is a crash.
[ "$status" -le 1 ] || { cat "$OUT/checkov-unskipped.err" >&2; fail "checkov run without skips crashed (exit $status)"; }
"$PY" - "$OUT/checkov.json" "$OUT/checkov-unskipped.json" "${manifests[@]}" <<'PY' || fail "checkov audit (problems above)"
import json
import os
import re
import sys

import yaml


def load(path):
    report = json.load(open(path))
    if isinstance(report, list) or report.get("check_type") != "kubernetes":
        sys.exit(f"validate-deploy: FAILED: {path}: not a single kubernetes checkov report")
    return report["results"], report["summary"]


results, summary = load(sys.argv[1])
unskipped, _ = load(sys.argv[2])
problems = []
if summary["failed"] or results["failed_checks"]:
    problems.append(f"{summary['failed']} failed checks")
if summary["parsing_errors"] or results.get("parsing_errors") or unskipped.get("parsing_errors"):
    problems.append(f"parsing errors: {results.get('parsing_errors') or unskipped.get('parsing_errors')}")
skipped = {}
for result in results["skipped_checks"]:
    reason = (result.get("check_result") or {}).get("suppress_comment") or ""
    if not reason.strip():
        problems.append(f"{result['check_id']} on {result['resource']} skipped without a reason")
    skipped.setdefault(result["check_id"], []).append((result["resource"], reason))
# What fails without the annotations, by (file, check).
would_fail = {(os.path.basename(r["file_path"]), r["check_id"]) for r in unskipped["failed_checks"]}
for file in sys.argv[3:]:
    for doc in yaml.safe_load_all(open(file)):
        for key, value in ((doc or {}).get("metadata", {}).get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                check_id = str(value).split("=", 1)[0]
                if (os.path.basename(file), check_id) not in would_fail:
                    problems.append(f"stale skip: {file}: {key} {check_id} no longer fails; remove the annotation")
scanned = {r["resource"] for key in ("passed_checks", "failed_checks", "skipped_checks") for r in results[key]}
if problems:
    for problem in problems:
        print(f"  problem: {problem}", file=sys.stderr)
    sys.exit("validate-deploy: FAILED: checkov audit")
print(f"  checkov: {summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped "
      f"over {len(scanned)} resources; every skip still matches a finding; accepted findings:")
for check_id in sorted(skipped, key=lambda c: (c.startswith("CKV2"), int(re.sub(r"\D", "", c.split("_K8S_")[1])))):
    for resource, reason in skipped[check_id]:
        print(f"    {check_id} ({resource.split('.')[0]}): {reason}")
PY

# --- summary -----------------------------------------------------------------

trap - ERR
echo
say "SUMMARY"
say "  schema-validated (kubernetes-validate $KUBERNETES_VALIDATE_VERSION, Kubernetes $KUBERNETES_VERSION, strict): ${#schema_validated[@]} objects"
for line in "${schema_validated[@]}"; do say "    $line"; done
say "  NOT schema-validated (no schema for CRDs; structure checked instead): ${#crd_documents[@]} objects"
for line in "${crd_documents[@]}"; do say "    $line"; done
say "  structure and wiring: passed"
say "  checkov $checkov_version: no failed checks; skips audited (each with a reason, none stale)"
say "PASSED"
