"""meta.k8s.io/v1 Table rendering, which `kubectl get` asks for via its Accept header.

Columns follow what kube-apiserver prints: NAME and AGE by default, a CRD's
`additionalPrinterColumns` (JSONPath subset: `.a.b`, `[0]`, `[?(@.type=="X")]`) for
custom resources, and kube-apiserver's own columns for the built-in types the sandbox
serves (Events excepted: they get NAME and AGE).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from canaryd.sandbox.apiserver.errors import Obj
from canaryd.sandbox.apiserver.resources import ResourceDef

_NAME_COL: Obj = {"name": "Name", "type": "string", "format": "name", "priority": 0,
                  "description": "Name must be unique within a namespace."}
_AGE_COL: Obj = {"name": "Age", "type": "string", "format": "", "priority": 0,
                 "description": "CreationTimestamp is a timestamp representing the server time "
                                "when this object was created."}

_SEGMENT = re.compile(
    r"\.([A-Za-z0-9_\-/]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_]+)==[\"'](.*?)[\"']\)\]"
)


def jsonpath(obj: object, path: str) -> object:
    cur: object = obj
    pos = 0
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    while pos < len(path):
        m = _SEGMENT.match(path, pos)
        if m is None:
            return None
        pos = m.end()
        if m.group(1) is not None:
            cur = cur.get(m.group(1)) if isinstance(cur, dict) else None
        elif m.group(2) is not None:
            idx = int(m.group(2))
            cur = cur[idx] if isinstance(cur, list) and idx < len(cur) else None
        else:
            key, want = m.group(3), m.group(4)
            found = [i for i in cur if isinstance(i, dict) and str(i.get(key)) == want] \
                if isinstance(cur, list) else []
            cur = found[0] if found else None
        if cur is None:
            return None
    return cur


def human_age(ts: object, now: dt.datetime) -> str:
    if not isinstance(ts, str):
        return "<unknown>"
    try:
        then = dt.datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
    except ValueError:
        return "<invalid>"
    secs = int((now - then).total_seconds())
    if secs < 0:
        return "0s"
    mins, hours = secs // 60, secs // 3600
    if secs < 120:
        return f"{secs}s"
    if mins < 10:
        return f"{mins}m{secs % 60}s" if secs % 60 else f"{mins}m"
    if mins < 180:
        return f"{mins}m"
    if hours < 8:
        return f"{hours}h{mins % 60}m" if mins % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    return f"{hours // 24}d"


def _int(v: object) -> int:
    return v if isinstance(v, int) else 0


def _deployment(obj: Obj, now: dt.datetime) -> list[object]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    sel = (spec.get("selector") or {}).get("matchLabels") or {}
    return [
        f"{_int(status.get('readyReplicas'))}/{_int(spec.get('replicas'))}",
        _int(status.get("updatedReplicas")),
        _int(status.get("availableReplicas")),
        human_age(obj["metadata"].get("creationTimestamp"), now),
        ",".join(str(c.get("name", "")) for c in containers),
        ",".join(str(c.get("image", "")) for c in containers),
        ",".join(f"{k}={v}" for k, v in sorted(sel.items())),
    ]


def _service(obj: Obj, now: dt.datetime) -> list[object]:
    spec = obj.get("spec") or {}
    ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
    return [spec.get("type", "ClusterIP"), spec.get("clusterIP", "<none>"), "<none>",
            ports or "<none>", human_age(obj["metadata"].get("creationTimestamp"), now)]


def _namespace(obj: Obj, now: dt.datetime) -> list[object]:
    return [(obj.get("status") or {}).get("phase", "Active"),
            human_age(obj["metadata"].get("creationTimestamp"), now)]


def _col(name: str, typ: str = "string", priority: int = 0) -> Obj:
    return {"name": name, "type": typ, "format": "", "description": name, "priority": priority}


def _age(obj: Obj, now: dt.datetime) -> str:
    return human_age(obj["metadata"].get("creationTimestamp"), now)


def _configmap(obj: Obj, now: dt.datetime) -> list[object]:
    return [len(obj.get("data") or {}) + len(obj.get("binaryData") or {}), _age(obj, now)]


def _secret(obj: Obj, now: dt.datetime) -> list[object]:
    return [obj.get("type", "Opaque"), len(obj.get("data") or {}), _age(obj, now)]


def _lease(obj: Obj, now: dt.datetime) -> list[object]:
    return [(obj.get("spec") or {}).get("holderIdentity") or "<none>", _age(obj, now)]


def _created_at(obj: Obj, now: dt.datetime) -> list[object]:
    return [obj["metadata"].get("creationTimestamp")]


def _binding(obj: Obj, now: dt.datetime) -> list[object]:
    ref = obj.get("roleRef") or {}
    subjects = obj.get("subjects") or []

    def of(kind: str) -> str:
        return ", ".join((f"{s['namespace']}/{s.get('name', '')}" if kind == "ServiceAccount"
                          else str(s.get("name", ""))) for s in subjects
                         if s.get("kind") == kind and (kind != "ServiceAccount" or
                                                       s.get("namespace")))

    return [f"{ref.get('kind', '')}/{ref.get('name', '')}", _age(obj, now), of("User"),
            of("Group"), of("ServiceAccount")]


def _pod(obj: Obj, now: dt.datetime) -> list[object]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(_int(c.get("restartCount")) for c in statuses)
    return [f"{ready}/{len(spec.get('containers') or [])}", status.get("phase", "Pending"),
            str(restarts), _age(obj, now), status.get("podIP") or "<none>",
            spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>",
            "<none>"]


def _pdb(obj: Obj, now: dt.datetime) -> list[object]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [str(spec.get("minAvailable", "N/A")), str(spec.get("maxUnavailable", "N/A")),
            _int(status.get("disruptionsAllowed")), _age(obj, now)]


def _netpol(obj: Obj, now: dt.datetime) -> list[object]:
    sel = ((obj.get("spec") or {}).get("podSelector") or {}).get("matchLabels") or {}
    return [",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>", _age(obj, now)]


_CREATED = ([{"name": "Created At", "type": "date", "format": "", "priority": 0,
              "description": "Created At"}], _created_at)
_BINDING = ([_col("Role"), _AGE_COL, _col("Users", priority=1), _col("Groups", priority=1),
             _col("ServiceAccounts", priority=1)], _binding)


_BUILTIN: dict[str, tuple[list[Obj], Callable[[Obj, dt.datetime], list[object]]]] = {
    "apps/deployments": (
        [_col("Ready"), _col("Up-to-date", "integer"), _col("Available", "integer"), _AGE_COL,
         _col("Containers", priority=1), _col("Images", priority=1),
         _col("Selector", priority=1)],
        _deployment,
    ),
    "/services": (
        [_col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"), _AGE_COL],
        _service,
    ),
    "/namespaces": ([_col("Status"), _AGE_COL], _namespace),
    "/configmaps": ([_col("Data"), _AGE_COL], _configmap),
    "/secrets": ([_col("Type"), _col("Data"), _AGE_COL], _secret),
    "/serviceaccounts": ([_AGE_COL], lambda o, now: [_age(o, now)]),
    "/pods": ([_col("Ready"), _col("Status"), _col("Restarts"), _AGE_COL,
               _col("IP", priority=1), _col("Node", priority=1),
               _col("Nominated Node", priority=1), _col("Readiness Gates", priority=1)], _pod),
    "coordination.k8s.io/leases": ([_col("Holder"), _AGE_COL], _lease),
    "apiextensions.k8s.io/customresourcedefinitions": _CREATED,
    "rbac.authorization.k8s.io/roles": _CREATED,
    "rbac.authorization.k8s.io/clusterroles": _CREATED,
    "rbac.authorization.k8s.io/rolebindings": _BINDING,
    "rbac.authorization.k8s.io/clusterrolebindings": _BINDING,
    "policy/poddisruptionbudgets": (
        [_col("Min Available"), _col("Max Unavailable"), _col("Allowed Disruptions", "integer"),
         _AGE_COL], _pdb),
    "networking.k8s.io/networkpolicies": ([_col("Pod-Selector"), _AGE_COL], _netpol),
}


def _cell(value: object, column: Obj, now: dt.datetime) -> object:
    if value is None:
        return None
    if column.get("type") == "date":
        return human_age(value, now)
    if isinstance(value, dict | list):
        import json

        return json.dumps(value)
    return value


def columns_and_cells(rdef: ResourceDef, version: str) -> tuple[
        list[Obj], Callable[[Obj, dt.datetime], list[object]]]:
    if rdef.builtin and rdef.key in _BUILTIN:
        cols, cells = _BUILTIN[rdef.key]
        return [_NAME_COL, *cols], lambda o, now: [o["metadata"]["name"], *cells(o, now)]
    v = rdef.version(version) or rdef.storage_version
    if v.printer_columns:
        defs = [
            {"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
             "description": c.get("description", ""), "priority": c.get("priority", 0)}
            for c in v.printer_columns
        ]
        paths = [str(c.get("jsonPath", "")) for c in v.printer_columns]

        def crd_cells(o: Obj, now: dt.datetime) -> list[object]:
            return [o["metadata"]["name"], *(
                _cell(jsonpath(o, p), d, now) for p, d in zip(paths, defs, strict=True))]

        return [_NAME_COL, *defs], crd_cells
    return [_NAME_COL, _AGE_COL], lambda o, now: [
        o["metadata"]["name"], human_age(o["metadata"].get("creationTimestamp"), now)]


def table(rdef: ResourceDef, version: str, objs: list[Obj], *, resource_version: str,
          include_object: str, continue_token: str = "", with_columns: bool = True) -> Obj:
    now = dt.datetime.now(dt.UTC)
    cols, cells = columns_and_cells(rdef, version)
    rows: list[Obj] = []
    for o in objs:
        row: Obj = {"cells": cells(o, now)}
        if include_object == "Object":
            row["object"] = o
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": o["metadata"]}
        rows.append(row)
    meta: Obj = {"resourceVersion": resource_version}
    if continue_token:
        meta["continue"] = continue_token
    out: Obj = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "rows": rows}
    out["columnDefinitions"] = cols if with_columns else []
    return out


def wants_table(accept: str) -> bool:
    """True when the first acceptable media type asks for a meta.k8s.io Table."""
    for part in accept.split(","):
        params = {p.split("=", 1)[0].strip(): p.split("=", 1)[1].strip()
                  for p in part.split(";")[1:] if "=" in p}
        if params.get("as") == "Table":
            return True
    return False
