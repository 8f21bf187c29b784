"""PATCH bodies: JSON merge patch, JSON patch and a strategic merge patch subset.

Strategic merge follows apimachinery's `strategicpatch` for what kubectl sends:
lists of named things merge by their key (`containers` by name, container `ports`
by containerPort, `conditions` by type, ...), `$patch: delete|replace|merge`,
`$retainKeys`, `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>`
(order hints, honoured loosely: listed items first). Every other list is replaced.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch

from canaryd.sandbox.apiserver.errors import ApiError, Obj

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"

# Field name -> merge key, for the list fields of built-in types that merge.
_MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "secrets": "name",
}
# Lists of scalars merged as sets.
_SET_LISTS = {"finalizers"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


_GO_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "bool", int: "number",
                  float: "number", type(None): "null"}
# A JSON patch that cannot be applied (a failing test, a missing path): no detail given.
_REJECTED = "the server rejected our request due to an error in our request"


def _cannot_unmarshal(value: Any, into: str) -> ApiError:
    got = _GO_JSON_TYPES.get(type(value), "value")
    return ApiError(400, f"error decoding patch: json: cannot unmarshal {got} into Go value of "
                         f"type {into}")


def json_patch(target: Obj, ops: Any) -> Obj:
    if not isinstance(ops, list):
        raise _cannot_unmarshal(ops, "[]handlers.jsonPatchOp")
    try:
        result = jsonpatch.JsonPatch(ops).apply(target)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError,
            IndexError, TypeError, ValueError) as exc:
        raise ApiError(422, _REJECTED, details={}) from exc
    if not isinstance(result, dict):
        raise ApiError(422, "the patch produced a non-object document")
    return result


def _list_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":
        for item in items:
            if isinstance(item, dict):
                return "containerPort" if "containerPort" in item else "port"
        return None
    return _MERGE_KEYS.get(field)


def strategic_merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    result: Obj = copy.deepcopy(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = value
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _reorder(field, result[field], order)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(field: str, current: Any, patch: list[Any]) -> list[Any]:
    if not isinstance(current, list):
        current = []
    if field in _SET_LISTS:
        out = list(current)
        for v in patch:
            if v not in out:
                out.append(v)
        return out
    key = _list_key(field, patch + current)
    if key is None or not all(isinstance(p, dict) for p in patch):
        return [p for p in copy.deepcopy(patch) if not (isinstance(p, dict) and "$patch" in p)]
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [copy.deepcopy(p) for p in patch if "$patch" not in p]
    out = copy.deepcopy(current)
    for item in patch:
        ident = item.get(key)
        idx = next((i for i, c in enumerate(out)
                    if isinstance(c, dict) and c.get(key) == ident), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(strategic_merge({}, item))
        else:
            out[idx] = strategic_merge(out[idx], item)
    return out


def _reorder(field: str, items: list[Any], order: list[Any]) -> list[Any]:
    key = _list_key(field, items)

    def ident(item: Any) -> Any:
        if key and isinstance(item, dict):
            return json.dumps(item.get(key))
        return json.dumps(item)

    wanted = [ident(o) for o in order]
    first = sorted((i for i in items if ident(i) in wanted), key=lambda i: wanted.index(ident(i)))
    return first + [i for i in items if ident(i) not in wanted]


def parse_body(raw: bytes, content_type: str) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        raise ApiError(400, f"error decoding patch: {exc}") from exc


def apply(current: Obj, raw: bytes, content_type: str, *, builtin: bool) -> Obj:
    """The patched object; raises `ApiError` 400/415/422 as kube-apiserver would."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == APPLY:
        raise ApiError(415, "server-side apply is not supported by the sandbox API server; "
                            "use client-side apply (kubectl apply without --server-side)")
    if not builtin and ctype not in (MERGE, JSON_PATCH):
        raise ApiError(415, "the body of the request was in an unknown format - accepted media "
                            f"types include: {JSON_PATCH}, {MERGE}, {APPLY}")
    if ctype not in (MERGE, JSON_PATCH, STRATEGIC):
        # Refused by the route itself (go-restful's Consumes check).
        raise ApiError(415, "415: Unsupported Media Type", details={})
    body = parse_body(raw, ctype)
    if ctype == JSON_PATCH:
        return json_patch(current, body)
    if not isinstance(body, dict):
        raise _cannot_unmarshal(body, "map[string]interface {}")
    result = merge_patch(current, body) if ctype == MERGE else strategic_merge(current, body)
    if not isinstance(result, dict):
        raise ApiError(422, "the patch produced a non-object document")
    return result
