"""Structural schemas, ported from apiextensions-apiserver (v1.36)
`pkg/apiserver/schema/{convert,validation,complete}.go`, and the validation of defaults
(`pkg/apiserver/schema/defaulting/validation.go`).
"""

from __future__ import annotations

import copy
from typing import Any

from canaryd.sandbox.apiserver import goregexp, schema
from canaryd.sandbox.apiserver.crd_fields import (
    META_FIELDS,
    FieldErr,
    forbidden,
    invalid,
    is_dns1035_label,
    key_path,
    required,
)
from canaryd.sandbox.apiserver.errors import Obj

# Go field name of JSONSchemaProps -> v1 JSON key, in declaration order.
GO_FIELDS = [
    ("ID", "id"), ("Schema", "$schema"), ("Ref", "$ref"), ("Description", "description"),
    ("Type", "type"), ("Nullable", "nullable"), ("Format", "format"), ("Title", "title"),
    ("Default", "default"), ("Maximum", "maximum"), ("ExclusiveMaximum", "exclusiveMaximum"),
    ("Minimum", "minimum"), ("ExclusiveMinimum", "exclusiveMinimum"),
    ("MaxLength", "maxLength"), ("MinLength", "minLength"), ("Pattern", "pattern"),
    ("MaxItems", "maxItems"), ("MinItems", "minItems"), ("UniqueItems", "uniqueItems"),
    ("MultipleOf", "multipleOf"), ("Enum", "enum"), ("MaxProperties", "maxProperties"),
    ("MinProperties", "minProperties"), ("Required", "required"), ("Items", "items"),
    ("AllOf", "allOf"), ("OneOf", "oneOf"), ("AnyOf", "anyOf"), ("Not", "not"),
    ("Properties", "properties"), ("AdditionalProperties", "additionalProperties"),
    ("PatternProperties", "patternProperties"), ("Dependencies", "dependencies"),
    ("AdditionalItems", "additionalItems"), ("Definitions", "definitions"),
    ("ExternalDocs", "externalDocs"), ("Example", "example"),
    ("XPreserveUnknownFields", "x-kubernetes-preserve-unknown-fields"),
    ("XEmbeddedResource", "x-kubernetes-embedded-resource"),
    ("XIntOrString", "x-kubernetes-int-or-string"),
    ("XListMapKeys", "x-kubernetes-list-map-keys"), ("XListType", "x-kubernetes-list-type"),
    ("XMapType", "x-kubernetes-map-type"), ("XValidations", "x-kubernetes-validations"),
]
_BOOL_KEYS = {"nullable", "exclusiveMaximum", "exclusiveMinimum", "uniqueItems",
              "x-kubernetes-embedded-resource", "x-kubernetes-int-or-string"}
_STRING_KEYS = {"id", "$schema", "description", "type", "format", "title", "pattern"}
ALLOWED_AT_STATUS_ROOT = [
    "Description", "Type", "Format", "Title", "Maximum", "ExclusiveMaximum", "Minimum",
    "ExclusiveMinimum", "MaxLength", "MinLength", "Pattern", "MaxItems", "MinItems",
    "UniqueItems", "MultipleOf", "Required", "Items", "Properties", "ExternalDocs", "Example",
    "XPreserveUnknownFields", "XValidations",
]


def is_zero(s: Obj, key: str) -> bool:
    v = s.get(key)
    if key in _BOOL_KEYS:
        return not v
    if key in _STRING_KEYS:
        return not v
    return v is None


def _nonzero_keys(s: Obj) -> list[str]:
    return [k for _, k in GO_FIELDS if not is_zero(s, k)]


# -- structural schemas (schema/convert.go, validation.go, complete.go) ----------------------

_UNSUPPORTED = [("id", "id"), ("$schema", "schema"), ("$ref", "$ref"),
                ("patternProperties", "patternProperties"), ("dependencies", "dependencies"),
                ("additionalItems", "additionalItems"), ("definitions", "definitions")]


def _unsupported(s: Obj) -> str | None:
    for key, name in _UNSUPPORTED:
        v = s.get(key)
        present = v is not None if key == "additionalItems" else bool(v)
        if present:
            return f"OpenAPIV3Schema '{name}' is not supported"
    return None


def new_structural_error(s: Any, nested: bool = False) -> str | None:
    """NewStructural's error for a schema that cannot be made structural, else None."""
    if not isinstance(s, dict):
        return None
    err = _unsupported(s)
    if err:
        return err
    for key in ("not",):
        if isinstance(s.get(key), dict):
            err = new_structural_error(s[key], True)
            if err:
                return err
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in s.get(key) or []:
            err = new_structural_error(sub, True)
            if err:
                return err
    if s.get("x-kubernetes-preserve-unknown-fields") is False:
        return "internal error: 'x-kubernetes-preserve-unknown-fields' must be true or undefined"
    items = s.get("items")
    if isinstance(items, list) and items:
        return "OpenAPIV3Schema 'items' must be a schema, but is an array"
    if isinstance(items, dict):
        err = new_structural_error(items, nested)
        if err:
            return err
    for k in sorted(s.get("properties") or {}):
        err = new_structural_error(s["properties"][k], nested)
        if err:
            return err
    addl = s.get("additionalProperties")
    if isinstance(addl, dict):
        return new_structural_error(addl, nested)
    return None


_INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]


def _significant(s: Any) -> Any:
    if not isinstance(s, dict):
        return s
    return {k: s[k] for k in s if not is_zero(s, k)}


def _is_int_or_string_any_of(s: Obj) -> bool:
    any_of = s.get("anyOf") or []
    return len(any_of) == 2 and [_significant(x) for x in any_of] == _INT_OR_STRING_ANY_OF


def _is_int_or_string_all_of(s: Obj) -> bool:
    all_of = s.get("allOf") or []
    return bool(all_of) and isinstance(all_of[0], dict) and _is_int_or_string_any_of(all_of[0])


_ROOT, _ITEM, _FIELD = 0, 1, 2


def _invariants(s: Any, lvl: int, path: str) -> list[FieldErr]:
    if not isinstance(s, dict):
        return []
    errs: list[FieldErr] = []
    typ = s.get("type", "")
    items = s.get("items")
    if typ == "array" and items is None:
        errs.append(required(f"{path}.items", "must be specified"))
    errs += _invariants(items, _ITEM, f"{path}.items")
    for k in sorted(s.get("properties") or {}):
        errs += _invariants(s["properties"][k], _FIELD, key_path(f"{path}.properties", k))
    addl = s.get("additionalProperties")
    if addl is not None:
        if lvl == _ROOT:
            errs.append(forbidden(f"{path}.additionalProperties", "must not be used at the root"))
        if isinstance(addl, dict):
            errs += _invariants(addl, _FIELD, f"{path}.additionalProperties")
    int_or_string = bool(s.get("x-kubernetes-int-or-string"))
    preserve = s.get("x-kubernetes-preserve-unknown-fields") is True
    embedded = bool(s.get("x-kubernetes-embedded-resource"))
    if int_or_string and preserve:
        errs.append(invalid(f"{path}.x-kubernetes-preserve-unknown-fields", True,
                            "must be false if x-kubernetes-int-or-string is true"))
    if int_or_string and embedded:
        errs.append(invalid(f"{path}.x-kubernetes-embedded-resource", True,
                            "must be false if x-kubernetes-int-or-string is true"))
    errs += _value_validation(s, _is_int_or_string_any_of(s), _is_int_or_string_all_of(s), path)
    check_metadata = lvl == _ROOT or embedded
    if embedded and typ != "object":
        if not typ:
            errs.append(required(f"{path}.type",
                                 "must be object if x-kubernetes-embedded-resource is true"))
        else:
            errs.append(invalid(f"{path}.type", typ,
                                "must be object if x-kubernetes-embedded-resource is true"))
    elif not typ and not int_or_string and not preserve:
        detail = {_ROOT: "must not be empty at the root",
                  _ITEM: "must not be empty for specified array items",
                  _FIELD: "must not be empty for specified object fields"}[lvl]
        errs.append(required(f"{path}.type", detail))
    if embedded and addl is not None:
        errs.append(forbidden(f"{path}.additionalProperties",
                              "must not be used if x-kubernetes-embedded-resource is set"))
    if lvl == _ROOT and typ and typ != "object":
        errs.append(invalid(f"{path}.type", typ, "must be object at the root"))
    props = s.get("properties") or {}
    for name in ("kind", "apiVersion"):
        sub = props.get(name)
        if isinstance(sub, dict) and check_metadata and sub.get("type", "") != "string":
            errs.append(invalid(f"{key_path(f'{path}.properties', name)}.type", sub.get("type", ""),
                                "must be string"))
    meta = props.get("metadata")
    if isinstance(meta, dict):
        errs += _metadata_invariants(meta, check_metadata, lvl,
                                     key_path(f"{path}.properties", "metadata"))
    if embedded and not preserve and not props:
        errs.append(required(f"{path}.properties", "must not be empty if "
                             "x-kubernetes-embedded-resource is true without "
                             "x-kubernetes-preserve-unknown-fields"))
    return errs


def _metadata_invariants(s: Obj, check: bool, lvl: int, path: str) -> list[FieldErr]:
    errs: list[FieldErr] = []
    if check and s.get("type", "") != "object":
        errs.append(invalid(f"{path}.type", s.get("type", ""), "must be object"))
    if lvl == _ROOT:
        props = s.get("properties") or {}
        names = set(props)
        rest = [k for k in _nonzero_keys(s) if k not in ("type", "default", "properties")]
        props_ok = not props or (names <= {"name", "generateName"})
        if rest or not props_ok:
            errs.append(forbidden(path, "must not specify anything other than name and "
                                        "generateName, but metadata is implicitly specified"))
    return errs


def _value_validation(s: Obj, skip_any_of: bool, skip_first_all_of_any_of: bool,
                      path: str) -> list[FieldErr]:
    errs: list[FieldErr] = []
    if not skip_any_of:
        for i, sub in enumerate(s.get("anyOf") or []):
            errs += _nested(sub, False, False, f"{path}.anyOf[{i}]")
    for i, sub in enumerate(s.get("allOf") or []):
        errs += _nested(sub, skip_first_all_of_any_of and i == 0, False, f"{path}.allOf[{i}]")
    for i, sub in enumerate(s.get("oneOf") or []):
        errs += _nested(sub, False, False, f"{path}.oneOf[{i}]")
    if isinstance(s.get("not"), dict):
        errs += _nested(s["not"], False, False, f"{path}.not")
    pattern = s.get("pattern")
    if pattern:
        err = goregexp.error_of(str(pattern))
        if err:
            errs.append(invalid(f"{path}.pattern", pattern,
                                f"must be a valid regular expression, but isn't: {err}"))
    return errs


def _nested(v: Any, skip_any_of: bool, skip_all_of_any_of: bool, path: str) -> list[FieldErr]:
    if not isinstance(v, dict):
        return []
    errs = _value_validation(v, skip_any_of, skip_all_of_any_of, path)
    if isinstance(v.get("items"), dict):
        errs += _nested(v["items"], False, False, f"{path}.items")
    for k in sorted(v.get("properties") or {}):
        errs += _nested(v["properties"][k], False, False, key_path(f"{path}.properties", k))
    if v.get("type"):
        errs.append(forbidden(f"{path}.type", "must be empty to be structural"))
    addl = v.get("additionalProperties")
    if isinstance(addl, dict) or addl is True:
        errs.append(forbidden(f"{path}.additionalProperties", "must be undefined to be structural"))
    if v.get("default") is not None:
        errs.append(forbidden(f"{path}.default", "must be undefined to be structural"))
    if v.get("title"):
        errs.append(forbidden(f"{path}.title", "must be empty to be structural"))
    if v.get("description"):
        errs.append(forbidden(f"{path}.description", "must be empty to be structural"))
    if v.get("nullable"):
        errs.append(forbidden(f"{path}.nullable", "must be false to be structural"))
    for key, word in (("x-kubernetes-preserve-unknown-fields", "false"),
                      ("x-kubernetes-embedded-resource", "false"),
                      ("x-kubernetes-int-or-string", "false")):
        if v.get(key) is True:
            errs.append(forbidden(f"{path}.{key}", f"must be {word} to be structural"))
    if v.get("x-kubernetes-list-map-keys"):
        errs.append(forbidden(f"{path}.x-kubernetes-list-map-keys",
                              "must be empty to be structural"))
    for key in ("x-kubernetes-list-type", "x-kubernetes-map-type"):
        if v.get(key) is not None:
            errs.append(forbidden(f"{path}.{key}", "must be undefined to be structural"))
    if v.get("x-kubernetes-validations"):
        errs.append(forbidden(f"{path}.x-kubernetes-validations", "must be empty to be structural"))
    if "metadata" in (v.get("properties") or {}):
        errs.append(forbidden(key_path(f"{path}.properties", "metadata"),
                              "must not be specified in a nested context"))
    return errs


def _completeness(s: Obj, path: str) -> list[FieldErr]:
    return _vv_completeness(s, s, path, path)


def _vv_completeness(v: Obj, s: Any, s_path: str, v_path: str) -> list[FieldErr]:
    if not isinstance(s, dict):
        return [required(s_path, f"because it is defined in {v_path}")]
    errs: list[FieldErr] = []
    if isinstance(v.get("not"), dict):
        errs += _nested_completeness(v["not"], s, s_path, f"{v_path}.not")
    for key in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(v.get(key) or []):
            errs += _nested_completeness(sub, s, s_path, f"{v_path}.{key}[{i}]")
    return errs


def _nested_completeness(v: Any, s: Any, s_path: str, v_path: str) -> list[FieldErr]:
    if not isinstance(v, dict):
        return []
    if not isinstance(s, dict):
        return [required(s_path, f"because it is defined in {v_path}")]
    errs = _vv_completeness(v, s, s_path, v_path)
    if isinstance(v.get("items"), dict):
        errs += _nested_completeness(v["items"], s.get("items"), f"{s_path}.items",
                                     f"{v_path}.items")
    s_props = s.get("properties") or {}
    for k in sorted(v.get("properties") or {}):
        if k not in s_props:
            errs.append(required(key_path(f"{s_path}.properties", k), "because it is defined in "
                                 + key_path(f"{v_path}.properties", k)))
        else:
            errs += _nested_completeness(v["properties"][k], s_props[k],
                                         key_path(f"{s_path}.properties", k),
                                         key_path(f"{v_path}.properties", k))
    return errs


def validate_structural(s: Obj, path: str) -> list[FieldErr]:
    errs = _invariants(s, _ROOT, path) + _completeness(s, path)
    return sorted(errs, key=lambda e: e.error())


# -- defaults (schema/defaulting/validation.go) --------------------------------------------


def _embedded_resource_errors(path: str, x: Obj) -> list[FieldErr]:
    errs: list[FieldErr] = []
    if "apiVersion" not in x:
        errs.append(required(f"{path}.apiVersion"))
    if "kind" not in x:
        errs.append(required(f"{path}.kind"))
    for k in sorted(x):
        v = x[k]
        if k == "apiVersion":
            if not isinstance(v, str):
                errs.append(invalid(f"{path}.apiVersion", v, "must be a string"))
            elif not v:
                errs.append(invalid(f"{path}.apiVersion", v, "must not be empty"))
        elif k == "kind":
            if not isinstance(v, str):
                errs.append(invalid(f"{path}.kind", v, "must be a string"))
            elif not v:
                errs.append(invalid(f"{path}.kind", v, "must not be empty"))
            elif (msgs := is_dns1035_label(v.lower())):
                errs.append(invalid(f"{path}.kind", v, "may have mixed case, but should "
                                    "otherwise match: " + ",".join(msgs)))
    return errs


def _objectmeta_errors(path: str, x: Any, s: Any) -> list[FieldErr]:
    """objectmeta.Validate: apiVersion/kind of every embedded resource in a default."""
    if not isinstance(s, dict):
        return []
    errs: list[FieldErr] = []
    if isinstance(x, dict):
        if s.get("x-kubernetes-embedded-resource"):
            errs += _embedded_resource_errors(path, x)
        props = s.get("properties") or {}
        addl = s.get("additionalProperties")
        for k in sorted(x):
            if k in props:
                errs += _objectmeta_errors(f"{path}.{k}", x[k], props[k])
            elif isinstance(addl, dict):
                errs += _objectmeta_errors(key_path(path, k), x[k], addl)
    elif isinstance(x, list):
        for i, v in enumerate(x):
            errs += _objectmeta_errors(f"{path}[{i}]", v, s.get("items"))
    return errs


def _value_errors(base: str, value: Any, s: Obj) -> list[FieldErr]:
    return [FieldErr(c["reason"], c["field"], c["message"])
            for c in schema.validate(copy.deepcopy(value), s, "", base)]


def validate_defaults(s: Obj, path: str) -> list[FieldErr]:
    root = dict(s)
    root["x-kubernetes-embedded-resource"] = True
    return _defaults(path, root, root, inside_meta=False)


def _defaults(path: str, s: Any, root: Obj, *, inside_meta: bool) -> list[FieldErr]:
    if not isinstance(s, dict):
        return []
    errs: list[FieldErr] = []
    if s.get("x-kubernetes-embedded-resource"):
        inside_meta, root = False, s
    default = s.get("default")
    if default is not None:
        where = f"{path}.default"
        if inside_meta:
            errs += _value_errors(where, default, s)
        else:
            embedded = bool(s.get("x-kubernetes-embedded-resource"))
            pruned = schema.prune(copy.deepcopy(default), s, root=embedded)
            if pruned != default:
                errs.append(invalid(where, default, "must not have unknown fields"))
            meta_errs = _objectmeta_errors(where, default, s)
            errs += meta_errs or _value_errors(where, default, s)
    if isinstance(s.get("items"), dict):
        errs += _defaults(f"{path}.items", s["items"], root, inside_meta=inside_meta)
    embedded = bool(s.get("x-kubernetes-embedded-resource"))
    for k in sorted(s.get("properties") or {}):
        sub_meta = inside_meta or (embedded and k in META_FIELDS)
        errs += _defaults(key_path(f"{path}.properties", k), s["properties"][k], root,
                          inside_meta=sub_meta)
    return errs
