"""Checks deploy/kubernetes offline: every document against the Kubernetes schemas
(kubernetes-validate, strict: unknown fields are errors), the kustomization lists exactly the
files there, and the references between them resolve (Secret keys, the ConfigMap, Service and
ServiceMonitor port names, the HPA's target, selectors that match pod labels). Prints the
Sluice configuration the ConfigMap carries (the test runs `sluice check` on it) as the last line,
JSON-encoded; exits non-zero with every problem found.

usage: check_manifests.py DIR [KUBERNETES_VERSION]"""
import json
import pathlib
import sys

import kubernetes_validate
import yaml

base = pathlib.Path(sys.argv[1])
version = sys.argv[2] if len(sys.argv) > 2 else "1.31.0"
problems = []
docs = []
# Kinds outside the Kubernetes API: checked here by hand.
CUSTOM = {"Kustomization", "ServiceMonitor"}

for path in sorted(base.glob("*.yaml")):
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc:
            continue
        docs.append((path.name, doc))
        if doc.get("kind") in CUSTOM:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{path.name}: {doc.get('kind')} {doc['metadata'].get('name')}: {e.message} at {list(e.path)}")
        except kubernetes_validate.SchemaNotFoundError as e:
            problems.append(f"{path.name}: no schema: {e}")

by_kind = {}
for name, doc in docs:
    by_kind.setdefault(doc["kind"], []).append((name, doc))

kustomizations = by_kind.get("Kustomization", [])
if len(kustomizations) != 1:
    problems.append("exactly one kustomization.yaml")
else:
    listed = set(kustomizations[0][1].get("resources", []))
    present = {p.name for p in base.glob("*.yaml")} - {"kustomization.yaml"}
    for missing in sorted(present - listed):
        problems.append(f"kustomization.yaml does not list {missing}")
    for extra in sorted(listed - present):
        problems.append(f"kustomization.yaml lists {extra}, which does not exist")

secrets = {d["metadata"]["name"]: set(d.get("stringData", {})) | set(d.get("data", {})) for _, d in by_kind.get("Secret", [])}
configmaps = {d["metadata"]["name"]: d.get("data", {}) for _, d in by_kind.get("ConfigMap", [])}
deployments = {d["metadata"]["name"]: d for _, d in by_kind.get("Deployment", [])}

def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())

pod_labels = []
for name, dep in deployments.items():
    spec = dep["spec"]
    labels = spec["template"]["metadata"]["labels"]
    pod_labels.append((name, labels, spec["template"]["spec"]))
    if not matches(spec["selector"]["matchLabels"], labels):
        problems.append(f"Deployment {name}: its selector does not match its pods")
    pod = spec["template"]["spec"]
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        problems.append(f"Deployment {name}: not runAsNonRoot")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        if not sc.get("readOnlyRootFilesystem") or sc.get("allowPrivilegeEscalation", True):
            problems.append(f"Deployment {name}: container {c['name']} needs a read-only root and no privilege escalation")
        for probe in ("readinessProbe", "livenessProbe"):
            if probe not in c:
                problems.append(f"Deployment {name}: no {probe}")
        for env in c.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref["key"] not in secrets.get(ref["name"], set()):
                problems.append(f"Deployment {name}: env {env['name']} names secret {ref['name']}/{ref['key']}, which is not declared")
    for v in pod.get("volumes", []):
        cm = v.get("configMap")
        if cm and cm["name"] not in configmaps:
            problems.append(f"Deployment {name}: volume {v['name']} names ConfigMap {cm['name']}, which is not declared")

service_ports = {}
for _, svc in by_kind.get("Service", []):
    name = svc["metadata"]["name"]
    selected = [(d, spec) for d, labels, spec in pod_labels if matches(svc["spec"]["selector"], labels)]
    if not selected:
        problems.append(f"Service {name} selects no pods")
    container_ports = {p["name"] for _, spec in selected for c in spec["containers"] for p in c.get("ports", [])}
    for p in svc["spec"]["ports"]:
        if isinstance(p.get("targetPort"), str) and p["targetPort"] not in container_ports:
            problems.append(f"Service {name}: targetPort {p['targetPort']} is no container port")
    service_ports[name] = (svc["metadata"].get("labels", {}), {p["name"] for p in svc["spec"]["ports"]})

for _, sm in by_kind.get("ServiceMonitor", []):
    sel = sm["spec"]["selector"]["matchLabels"]
    ports = set().union(*[p for labels, p in service_ports.values() if matches(sel, labels)] or [set()])
    if not ports:
        problems.append(f"ServiceMonitor {sm['metadata']['name']} selects no Service")
    for ep in sm["spec"]["endpoints"]:
        if ep["port"] not in ports:
            problems.append(f"ServiceMonitor {sm['metadata']['name']}: port {ep['port']} is on no selected Service")

for _, hpa in by_kind.get("HorizontalPodAutoscaler", []):
    target = hpa["spec"]["scaleTargetRef"]
    if target["kind"] != "Deployment" or target["name"] not in deployments:
        problems.append(f"HPA {hpa['metadata']['name']}: target {target['name']} is not declared")

for _, pdb in by_kind.get("PodDisruptionBudget", []):
    if not any(matches(pdb["spec"]["selector"]["matchLabels"], labels) for _, labels, _ in pod_labels):
        problems.append(f"PodDisruptionBudget {pdb['metadata']['name']} selects no pods")

for p in problems:
    print(p, file=sys.stderr)
config = next(iter(configmaps.values()), {}).get("sluice.yaml", "")
print(json.dumps(config))
sys.exit(1 if problems else 0)
