"""Per-type defaulting and validation, run on every create and update before storing.

Built-in types get the handful of defaults clients look at (Deployment replicas and
strategy, Service clusterIP and port protocol, Namespace phase); custom resources
go through their CRD's structural schema; CRDs themselves are checked and given the
`NamesAccepted`/`Established` status the apiextensions controller would set.
"""

from __future__ import annotations

import hashlib
import re

from canaryd.sandbox.apiserver import schema
from canaryd.sandbox.apiserver.errors import Obj, cause, invalid
from canaryd.sandbox.apiserver.resources import ResourceDef

_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


def admit(rdef: ResourceDef, obj: Obj, *, version: str, old: Obj | None, now: str) -> None:
    """Default and validate `obj` in place; raises 422 Invalid with causes."""
    causes = _name_causes(obj)
    if rdef.builtin:
        hook = _HOOKS.get(rdef.key)
        if hook is not None:
            causes.extend(hook(obj, old, now))
    else:
        v = rdef.version(version) or rdef.storage_version
        causes.extend(schema.process(obj, v.schema))
    if causes:
        raise invalid(rdef.kind, rdef.group, obj["metadata"].get("name", ""), causes)


def _name_causes(obj: Obj) -> list[Obj]:
    name = obj["metadata"].get("name", "")
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        return [cause(
            "FieldValueInvalid", "metadata.name",
            f'metadata.name: Invalid value: "{name}": a lowercase RFC 1123 subdomain must '
            "consist of lower case alphanumeric characters, '-' or '.', and must start and end "
            "with an alphanumeric character (e.g. 'example.com', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        )]
    return []


def _matches(selector: Obj, labels: Obj) -> bool:
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _pod_template_defaults(template: Obj) -> None:
    pod = template.setdefault("spec", {})
    pod.setdefault("restartPolicy", "Always")
    pod.setdefault("terminationGracePeriodSeconds", 30)
    pod.setdefault("dnsPolicy", "ClusterFirst")
    pod.setdefault("securityContext", {})
    pod.setdefault("schedulerName", "default-scheduler")
    for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
        if not isinstance(c, dict):
            continue
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        image = str(c.get("image", ""))
        tag = image.rsplit("/", 1)[-1]
        latest = ":" not in tag or tag.endswith(":latest")
        c.setdefault("imagePullPolicy", "Always" if latest and "@" not in tag else "IfNotPresent")
        c.setdefault("resources", {})
        for p in c.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")


def _deployment(obj: Obj, old: Obj | None, now: str) -> list[Obj]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [cause("FieldValueRequired", "spec", "spec: Required value")]
    causes: list[Obj] = []
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        ru = strategy.setdefault("rollingUpdate", {})
        ru.setdefault("maxUnavailable", "25%")
        ru.setdefault("maxSurge", "25%")
    template = spec.get("template")
    selector = spec.get("selector")
    if not isinstance(selector, dict):
        causes.append(cause("FieldValueRequired", "spec.selector", "spec.selector: Required value"))
    if not isinstance(template, dict):
        causes.append(cause("FieldValueRequired", "spec.template", "spec.template: Required value"))
        return causes
    _pod_template_defaults(template)
    labels = (template.get("metadata") or {}).get("labels") or {}
    if isinstance(selector, dict) and not _matches(selector, labels):
        causes.append(cause(
            "FieldValueInvalid", "spec.template.metadata.labels",
            f"spec.template.metadata.labels: Invalid value: {labels!r}: `selector` does not "
            "match template `labels`",
        ))
    if not template["spec"].get("containers"):
        causes.append(cause("FieldValueRequired", "spec.template.spec.containers",
                            "spec.template.spec.containers: Required value"))
    if isinstance(spec.get("replicas"), int) and spec["replicas"] < 0:
        causes.append(cause("FieldValueInvalid", "spec.replicas",
                            f"spec.replicas: Invalid value: {spec['replicas']}: must be greater "
                            "than or equal to 0"))
    obj.setdefault("status", {})
    return causes


def _service(obj: Obj, old: Obj | None, now: str) -> list[Obj]:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        old_ip = ((old or {}).get("spec") or {}).get("clusterIP")
        if old_ip:
            spec["clusterIP"] = old_ip
        elif "clusterIP" not in spec:
            digest = hashlib.sha256(obj["metadata"].get("name", "").encode()).digest()
            spec["clusterIP"] = f"10.96.{digest[0]}.{max(digest[1], 1)}"
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        if not spec.get("ports") and spec.get("clusterIP") != "None":
            return [cause("FieldValueRequired", "spec.ports", "spec.ports: Required value")]
    for p in spec.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
    obj.setdefault("status", {"loadBalancer": {}})
    return []


def _namespace(obj: Obj, old: Obj | None, now: str) -> list[Obj]:
    name = obj["metadata"]["name"]
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj["status"] = {"phase": "Active"}
    return []


def _crd(obj: Obj, old: Obj | None, now: str) -> list[Obj]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [cause("FieldValueRequired", "spec", "spec: Required value")]
    names = spec.get("names") or {}
    causes: list[Obj] = []
    for fld in ("group",):
        if not spec.get(fld):
            causes.append(cause("FieldValueRequired", f"spec.{fld}", f"spec.{fld}: Required value"))
    for fld in ("plural", "kind"):
        if not names.get(fld):
            causes.append(cause("FieldValueRequired", f"spec.names.{fld}",
                                f"spec.names.{fld}: Required value"))
    versions = spec.get("versions") or []
    if not versions:
        causes.append(cause("FieldValueRequired", "spec.versions", "spec.versions: Required value"))
    if causes:
        return causes
    expected = f"{names['plural']}.{spec['group']}"
    if obj["metadata"]["name"] != expected:
        causes.append(cause(
            "FieldValueInvalid", "metadata.name",
            f'metadata.name: Invalid value: "{obj["metadata"]["name"]}": must be '
            'spec.names.plural+"."+spec.group',
        ))
    if sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(cause("FieldValueInvalid", "spec.versions",
                            "spec.versions: Invalid value: must have exactly one version marked "
                            "as storage version"))
    for i, v in enumerate(versions):
        if not ((v.get("schema") or {}).get("openAPIV3Schema")):
            fld = f"spec.versions[{i}].schema.openAPIV3Schema"
            causes.append(cause("FieldValueRequired", fld,
                                f"{fld}: Required value: schemas are required"))
    if causes:
        return causes
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", names["kind"] + "List")
    spec.setdefault("scope", "Namespaced")
    spec.setdefault("conversion", {"strategy": "None"})
    storage = next(v["name"] for v in versions if v.get("storage"))
    stored = list(((old or {}).get("status") or {}).get("storedVersions") or [])
    if storage not in stored:
        stored.append(storage)
    obj["status"] = {
        "acceptedNames": dict(names),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
        "storedVersions": stored,
    }
    if old is not None and old.get("status", {}).get("conditions"):
        # Keep transition times stable so a re-apply of the same CRD is a no-op.
        for new_c, old_c in zip(obj["status"]["conditions"], old["status"]["conditions"],
                                strict=False):
            new_c["lastTransitionTime"] = old_c.get("lastTransitionTime", now)
    return []


_HOOKS = {
    "apps/deployments": _deployment,
    "/services": _service,
    "/namespaces": _namespace,
    "apiextensions.k8s.io/customresourcedefinitions": _crd,
}
