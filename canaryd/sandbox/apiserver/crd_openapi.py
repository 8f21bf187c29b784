"""A CRD version's OpenAPI schema, ported from apiextensions-apiserver (v1.36)
`pkg/apis/apiextensions/validation/validation.go`: the schema walk, `x-kubernetes-*`
extensions and the shape of `x-kubernetes-validations` rules (CEL is not compiled), and
`validate_schema`, which adds the structural and defaulting checks (crd_structural).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from canaryd.sandbox.apiserver import celrules
from canaryd.sandbox.apiserver.crd_fields import (
    META_FIELDS,
    OPENAPI_TYPES,
    FieldErr,
    forbidden,
    go_struct,
    invalid,
    key_path,
    not_supported,
    required,
    rule_struct,
    schema_struct,
)
from canaryd.sandbox.apiserver.crd_structural import (
    ALLOWED_AT_STATUS_ROOT,
    GO_FIELDS,
    is_zero,
    new_structural_error,
    validate_defaults,
    validate_structural,
)
from canaryd.sandbox.apiserver.errors import Obj

# -- OpenAPI schema rules (ValidateCustomResourceDefinitionOpenAPISchema) ------------------


@dataclass(frozen=True)
class _Ssv:
    allow_defaults: bool = True
    disallow_reason: str = ""
    inside_meta: bool = False

    def forbid_defaults(self, reason: str) -> _Ssv:
        return _Ssv(False, reason, self.inside_meta)

    def meta(self) -> _Ssv:
        return _Ssv(self.allow_defaults, self.disallow_reason, True)


def _node_rules(s: Obj, path: str, ssv: _Ssv) -> list[FieldErr]:
    errs: list[FieldErr] = []
    typ = s.get("type", "")
    if typ and typ not in OPENAPI_TYPES:
        errs.append(not_supported(f"{path}.type", typ, OPENAPI_TYPES))
    if s.get("default") is not None and not ssv.allow_defaults:
        detail = "must not be set" + (f" {ssv.disallow_reason}" if ssv.disallow_reason else "")
        errs.append(forbidden(f"{path}.default", detail))
    if s.get("id"):
        errs.append(forbidden(f"{path}.id", "id is not supported"))
    if s.get("additionalItems") is not None:
        errs.append(forbidden(f"{path}.additionalItems", "additionalItems is not supported"))
    if s.get("patternProperties"):
        errs.append(forbidden(f"{path}.patternProperties", "patternProperties is not supported"))
    if s.get("definitions"):
        errs.append(forbidden(f"{path}.definitions", "definitions is not supported"))
    if s.get("dependencies") is not None:
        errs.append(forbidden(f"{path}.dependencies", "dependencies is not supported"))
    if s.get("$ref") is not None:
        errs.append(forbidden(f"{path}.$ref", "$ref is not supported"))
    if typ == "null":
        errs.append(forbidden(f"{path}.type",
                              "type cannot be set to null, use nullable as an alternative"))
    if isinstance(s.get("items"), list) and s["items"]:
        errs.append(forbidden(f"{path}.items", "items must be a schema object and not an array"))
    if ssv.inside_meta and s.get("x-kubernetes-embedded-resource"):
        errs.append(forbidden(f"{path}.x-kubernetes-embedded-resource",
                              "must not be used inside of resource meta"))
    return errs


_RULE_REASONS = ["FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid",
                 "FieldValueRequired"]
_NEWLINES = re.compile(r"[\n\r]+")


def openapi_schema_errors(s: Any, path: str, ssv: _Ssv, is_root: bool,
                          cel_errs: list[FieldErr] | None = None) -> list[FieldErr]:
    """The schema errors of `s` and below; when `cel_errs` is given (the schema is
    structural), the compile errors of rules in subtrees without schema errors go there."""
    if not isinstance(s, dict):
        return []
    errs = _node_rules(s, path, ssv)
    if s.get("uniqueItems"):
        errs.append(forbidden(f"{path}.uniqueItems", "uniqueItems cannot be set to true since the "
                                                     "runtime complexity becomes quadratic"))
    props = s.get("properties") or {}
    addl = s.get("additionalProperties")
    if addl is not None:
        if props and (addl is False or isinstance(addl, dict)):
            errs.append(forbidden(f"{path}.additionalProperties",
                                  "additionalProperties and properties are mutual exclusive"))
        sub = ssv.forbid_defaults("inside additionalProperties applying to object metadata") \
            if ssv.inside_meta else ssv
        errs += openapi_schema_errors(addl, f"{path}.additionalProperties", sub, False,
                                      cel_errs)
    embedded = bool(s.get("x-kubernetes-embedded-resource"))
    for k in sorted(props):
        sub = ssv
        if (is_root or embedded) and k in META_FIELDS:
            sub = sub.meta()
            if is_root:
                sub = sub.forbid_defaults(f"in top-level {k}")
        errs += openapi_schema_errors(props[k], key_path(f"{path}.properties", k), sub, False,
                                      cel_errs)
    errs += openapi_schema_errors(s.get("not"), f"{path}.not", ssv, False)
    for key in ("allOf", "oneOf", "anyOf"):
        for i, sub_s in enumerate(s.get(key) or []):
            errs += openapi_schema_errors(sub_s, f"{path}.{key}[{i}]", ssv, False)
    defs = s.get("definitions") or {}
    for k in sorted(defs):
        errs += openapi_schema_errors(defs[k], key_path(f"{path}.definitions", k), ssv, False)
    items = s.get("items")
    if isinstance(items, dict):
        errs += openapi_schema_errors(items, f"{path}.items", ssv, False, cel_errs)
    elif isinstance(items, list):
        for i, sub_s in enumerate(items):
            errs += openapi_schema_errors(sub_s, f"{path}.items[{i}]", ssv, False)
    deps = s.get("dependencies") or {}
    for k in sorted(deps):
        errs += openapi_schema_errors(deps[k], key_path(f"{path}.dependencies", k), ssv, False)
    errs += _extension_rules(s, path)
    if cel_errs is not None and not errs:
        cel_errs += _rule_compile_errors(s, path)
    return errs


def _rule_compile_errors(s: Obj, path: str) -> list[FieldErr]:
    out: list[FieldErr] = []
    for i, rule in enumerate(s.get("x-kubernetes-validations") or []):
        at = f"{path}.x-kubernetes-validations[{i}]"
        err = celrules.syntax_error(str(rule.get("rule", "")))
        if err is not None:
            out.append(invalid(f"{at}.rule", rule_struct(rule), f"compilation failed: {err}"))
            continue
        expr = rule.get("messageExpression")
        if expr and (err := celrules.syntax_error(str(expr))) is not None:
            out.append(invalid(f"{at}.messageExpression", rule_struct(rule),
                               f"messageExpression compilation failed: {err}"))
    return out


def _extension_rules(s: Obj, path: str) -> list[FieldErr]:
    errs: list[FieldErr] = []
    typ = s.get("type", "")
    if s.get("x-kubernetes-preserve-unknown-fields") is False:
        errs.append(invalid(f"{path}.x-kubernetes-preserve-unknown-fields", False,
                            "must be true or undefined"))
    map_type = s.get("x-kubernetes-map-type")
    if map_type is not None and typ != "object":
        msg = "must be object if x-kubernetes-map-type is specified"
        errs.append(required(f"{path}.type", msg) if not typ else invalid(f"{path}.type", typ, msg))
    if map_type is not None and map_type not in ("atomic", "granular"):
        errs.append(not_supported(f"{path}.x-kubernetes-map-type", map_type,
                                  ["atomic", "granular"]))
    list_type = s.get("x-kubernetes-list-type")
    items = s.get("items")
    if list_type is not None and typ != "array":
        msg = "must be array if x-kubernetes-list-type is specified"
        errs.append(required(f"{path}.type", msg) if not typ else invalid(f"{path}.type", typ, msg))
    elif list_type == "set" and isinstance(items, dict):
        msg = "must be atomic as item of a list with x-kubernetes-list-type=set"
        if items.get("type") == "array":
            if items.get("x-kubernetes-list-type") not in (None, "atomic"):
                errs.append(invalid(f"{path}.items.x-kubernetes-list-type",
                                    items.get("x-kubernetes-list-type"), msg))
        elif items.get("type") == "object" and items.get("x-kubernetes-map-type") != "atomic":
            errs.append(invalid(f"{path}.items.x-kubernetes-map-type",
                                items.get("x-kubernetes-list-type"), msg))
    if list_type is not None and list_type not in ("atomic", "set", "map"):
        errs.append(not_supported(f"{path}.x-kubernetes-list-type", list_type,
                                  ["atomic", "set", "map"]))
    keys = s.get("x-kubernetes-list-map-keys") or []
    if keys:
        msg = "must be map if x-kubernetes-list-map-keys is non-empty"
        if list_type is None:
            errs.append(required(f"{path}.x-kubernetes-list-type", msg))
        elif list_type != "map":
            errs.append(invalid(f"{path}.x-kubernetes-list-type", list_type, msg))
    if list_type == "map":
        errs += _list_map_rules(s, path, keys)
    errs += _map_list_keys_map_set(s, path)
    errs += _rule_shape(s, path)
    return errs


def _list_map_rules(s: Obj, path: str, keys: list[str]) -> list[FieldErr]:
    errs: list[FieldErr] = []
    items = s.get("items")
    if not keys:
        errs.append(required(f"{path}.x-kubernetes-list-map-keys",
                             "must not be empty if x-kubernetes-list-type is map"))
    if items is None:
        errs.append(required(f"{path}.items",
                             "must have a schema if x-kubernetes-list-type is map"))
    elif isinstance(items, list):
        errs.append(invalid(f"{path}.items", go_struct(
            [("Schema", None), ("JSONSchemas", [schema_struct(x) for x in items])]),
            "must only have a single schema if x-kubernetes-list-type is map"))
    elif items.get("type", "") != "object":
        errs.append(invalid(f"{path}.items.type", items.get("type", ""),
                            "must be object if parent array's x-kubernetes-list-type is map"))
    else:
        seen: set[str] = set()
        item_props = items.get("properties") or {}
        for k in keys:
            if k in item_props:
                if (item_props[k] or {}).get("type") in ("array", "object"):
                    errs.append(invalid(
                        f"{key_path(f'{path}.items.properties', k)}.type", items.get("type", ""),
                        "must be a scalar type if parent array's x-kubernetes-list-type is map"))
            else:
                errs.append(invalid(f"{path}.x-kubernetes-list-map-keys", keys,
                                    "entries must all be names of item properties"))
            if k in seen:
                errs.append(invalid(f"{path}.x-kubernetes-list-map-keys", keys,
                                    "must not contain duplicate entries"))
            seen.add(k)
    return errs


def _map_list_keys_map_set(s: Obj, path: str) -> list[FieldErr]:
    items = s.get("items")
    list_type = s.get("x-kubernetes-list-type")
    if not isinstance(items, dict) or list_type not in ("set", "map"):
        return []
    errs: list[FieldErr] = []
    if items.get("nullable"):
        errs.append(forbidden(f"{path}.items.nullable",
                              f"cannot be nullable when x-kubernetes-list-type is {list_type}"))
    if list_type == "map":
        req = set(items.get("required") or [])
        props = items.get("properties") or {}
        for k in s.get("x-kubernetes-list-map-keys") or []:
            if k not in props or not isinstance(props[k], dict):
                continue
            at = key_path(f"{path}.items.properties", k)
            if k not in req and props[k].get("default") is None:
                errs.append(required(f"{at}.default", "this property is in "
                                     "x-kubernetes-list-map-keys, so it must have a default or "
                                     "be a required property"))
            if props[k].get("nullable"):
                errs.append(forbidden(f"{at}.nullable", "this property is in "
                                      "x-kubernetes-list-map-keys, so it cannot be nullable"))
    return errs


def _rule_shape(s: Obj, path: str) -> list[FieldErr]:
    errs: list[FieldErr] = []
    for i, rule in enumerate(s.get("x-kubernetes-validations") or []):
        at = f"{path}.x-kubernetes-validations[{i}]"
        text = str(rule.get("rule", "")).strip()
        message = str(rule.get("message", ""))
        msg = message.strip()
        if not text:
            errs.append(required(f"{at}.rule", "rule is not specified"))
        elif message and not msg:
            errs.append(invalid(f"{at}.message", message, "must be non-empty if specified"))
        elif _NEWLINES.search(msg):
            errs.append(invalid(f"{at}.message", message, "must not contain line breaks"))
        elif _NEWLINES.search(text) and not msg:
            errs.append(required(f"{at}.message",
                                 "message must be specified if rule contains line breaks"))
        expr = str(rule.get("messageExpression", ""))
        if expr and not expr.strip():
            errs.append(required(f"{at}.messageExpression",
                                 "messageExpression must be non-empty if specified"))
        reason = rule.get("reason")
        if reason is not None and reason not in _RULE_REASONS:
            errs.append(not_supported(f"{at}.reason", reason, _RULE_REASONS))
        fp = str(rule.get("fieldPath", ""))
        if fp and not fp.strip():
            errs.append(invalid(f"{at}.fieldPath", fp, "must be non-empty if specified"))
        if _NEWLINES.search(fp):
            errs.append(invalid(f"{at}.fieldPath", fp, "must not contain line breaks"))
        if fp and field_path_target(s, fp) is None:
            errs.append(invalid(f"{at}.fieldPath", fp, "must be a valid path"))
    return errs


_PATH_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\['([^']*)'\]|\[(\d+)\]")


def field_path_target(s: Obj, path: str, *, arrays: bool = True) -> Obj | None:
    """cel.ValidFieldPath: the schema a `.a.b['c'][0]` path names, or None."""
    cur: Any = s
    pos = 0
    while pos < len(path):
        m = _PATH_SEGMENT.match(path, pos)
        if m is None or not isinstance(cur, dict):
            return None
        name = m.group(1) if m.group(1) is not None else m.group(2)
        if m.group(3) is not None:
            if not arrays or cur.get("type") != "array" or not isinstance(cur.get("items"), dict):
                return None
            cur = cur["items"]
        else:
            props = cur.get("properties") or {}
            addl = cur.get("additionalProperties")
            if name in props:
                cur = props[name]
            elif isinstance(addl, dict):
                cur = addl
            else:
                return None
        pos = m.end()
    return cur if pos > 0 else None


def validate_schema(validation: Obj | None, status_enabled: bool, path: str) -> list[FieldErr]:
    """validateCustomResourceDefinitionValidation for one (hoisted or per-version) schema."""
    if not isinstance(validation, dict):
        return []
    s = validation.get("openAPIV3Schema")
    if not isinstance(s, dict):
        return []
    errs: list[FieldErr] = []
    root = f"{path}.openAPIV3Schema"
    if status_enabled:
        for go_name, key in GO_FIELDS:
            if is_zero(s, key):
                continue
            if go_name == "Type":
                if s.get("type") != "object":
                    errs.append(invalid(f"{root}.type", s.get("type"), 'only "object" is allowed '
                                        "as the type at the root of the schema if the status "
                                        "subresource is enabled"))
                    break
                continue
            if go_name not in ALLOWED_AT_STATUS_ROOT:
                errs.append(invalid(root, schema_struct(s), "only [" + " ".join(
                    ALLOWED_AT_STATUS_ROOT) + "] fields are allowed at the root of the schema "
                    "if the status subresource is enabled"))
                break
    if s.get("nullable"):
        errs.append(forbidden(f"{root}.nullable", "nullable cannot be true at the root"))
    init_err = new_structural_error(s)
    cel_errs: list[FieldErr] | None = None
    if init_err is None:
        structural = validate_structural(s, root)
        errs += structural or validate_defaults(s, root)
        if not structural:
            cel_errs = []
    errs += openapi_schema_errors(s, root, _Ssv(), True, cel_errs)
    errs += cel_errs or []
    if not errs and init_err is not None:
        errs.append(invalid(root, "", init_err))
    return errs
