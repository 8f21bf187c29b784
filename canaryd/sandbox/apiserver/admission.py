"""Per-type defaulting and validation, run on every create and update before storing.

Built-in types get the handful of defaults clients look at (Deployment replicas and
strategy, Service clusterIP and port protocol, Namespace phase); custom resources
go through their CRD's structural schema; CRDs themselves are checked and given the
`NamesAccepted`/`Established` status the apiextensions controller would set.
"""

from __future__ import annotations

import base64
import hashlib
import re

from canaryd.sandbox.apiserver import crd_validation, schema
from canaryd.sandbox.apiserver.errors import Obj, cause, invalid
from canaryd.sandbox.apiserver.resources import ResourceDef

CRD_KEY = "apiextensions.k8s.io/customresourcedefinitions"
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


def admit(rdef: ResourceDef, obj: Obj, *, version: str, old: Obj | None, now: str) -> None:
    """Default and validate `obj` in place; raises 422 Invalid with causes."""
    # A CRD's name is checked with its spec (it must be plural.group).
    causes = [] if rdef.key == CRD_KEY else _name_causes(obj)
    if rdef.builtin:
        hook = _HOOKS.get(rdef.key)
        if hook is not None:
            causes.extend(hook(obj, old, now))
    else:
        v = rdef.version(version) or rdef.storage_version
        causes.extend(schema.process(obj, v.schema, old))
    if causes:
        # Events of both APIs are validated as the internal core Event (no group).
        group = "" if rdef.key == "events.k8s.io/events" else rdef.group
        raise invalid(rdef.kind, group, obj["metadata"].get("name", ""), causes)


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
    if not isinstance(obj.get("spec"), dict):
        return [cause("FieldValueRequired", "spec", "spec: Required value")]
    crd_validation.default_crd(obj)
    spec = obj["spec"]
    stored = crd_validation.stored_versions_after(spec, old)
    causes = crd_validation.validate_crd(obj, old, stored)
    if causes:
        return causes
    names = spec["names"]
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


def _secret(obj: Obj, old: Obj | None, now: str) -> list[Obj]:
    """stringData is write-only: merged into data (base64) on every write."""
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict):
        data = obj.setdefault("data", {})
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()
    obj.setdefault("type", "Opaque")
    return []


def _event_causes(obj: Obj, involved: str, strict: bool) -> list[Obj]:
    """ValidateEventCreate (the legacy rules, plus the strict ones of events.k8s.io/v1)."""
    causes: list[Obj] = []
    ns = obj["metadata"].get("namespace", "")
    ref: Obj = obj[involved] if isinstance(obj.get(involved), dict) else {}
    ref_ns = str(ref.get("namespace") or "")
    event_time = obj.get("eventTime")
    if not event_time:  # an old-style event: its namespace is its object's
        bad_ns = ref_ns != ns if ref_ns else ns not in ("", "default")
    else:
        bad_ns = not ref_ns and ns not in ("default", "kube-system")
    if bad_ns:
        causes.append(cause("FieldValueInvalid", "involvedObject.namespace",
                            f'involvedObject.namespace: Invalid value: "{ref_ns}": does not match '
                            "event.namespace"))
    if event_time:
        controller = "reportingController" if strict else "reportingComponent"
        for fld, key in ((controller, "reportingController"),
                         ("reportingInstance", "reportingInstance"), ("action", "action"),
                         ("reason", "reason")):
            if not obj.get(key):
                causes.append(cause("FieldValueRequired", fld, f"{fld}: Required value"))
    if strict:
        if not event_time:
            causes.append(cause("FieldValueRequired", "eventTime", "eventTime: Required value"))
        if obj.get("type") not in ("Normal", "Warning"):
            causes.append(cause("FieldValueInvalid", "type", 'type: Invalid value: "": has '
                                f"invalid value: {obj.get('type') or ''}"))
    return causes


def _core_event(obj: Obj, old: Obj | None, now: str) -> list[Obj]:
    return _event_causes(obj, "involvedObject", strict=False)


def _events_v1(obj: Obj, old: Obj | None, now: str) -> list[Obj]:
    return _event_causes(obj, "regarding", strict=old is None)


_HOOKS = {
    "apps/deployments": _deployment,
    "/services": _service,
    "/namespaces": _namespace,
    "/secrets": _secret,
    "/events": _core_event,
    "events.k8s.io/events": _events_v1,
    "apiextensions.k8s.io/customresourcedefinitions": _crd,
}
