"""CustomResourceDefinition validation, ported from apiextensions-apiserver (v1.36).

`validate_crd` refuses what kube-apiserver refuses, with the same causes (reason, field,
message) in the same order, so a CRD that the sandbox accepts installs on a real cluster:
`pkg/apis/apiextensions/validation/validation.go` (the CRD and its OpenAPI schema),
`pkg/apiserver/schema/{convert,validation,complete}.go` (structural schemas) and
`pkg/apiserver/schema/defaulting/validation.go` (defaults). Every `field.Invalid/Required/
Forbidden/NotSupported` there becomes a `_E` here, worded by `field.Error.ErrorBody()`.

Like the real server this works on the internal form of a v1 CRD: `spec.version` is
`versions[0].name`, and per-version schemas, subresources, printer columns and selectable
fields that are identical in every version are hoisted to `spec.validation`,
`spec.subresources`, ... (which is why a single-version CRD's schema errors name
`spec.validation.openAPIV3Schema`). Not ported: CEL rule compilation and cost estimation
(`x-kubernetes-validations` are checked for shape only), conversion webhook client configs
beyond presence, and ObjectMeta validation of defaults inside embedded resources' metadata.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from canaryd.sandbox.apiserver import celrules, goregexp, schema
from canaryd.sandbox.apiserver.errors import Obj
from canaryd.sandbox.apiserver.goformat import GoJSON, go_json, go_quote, go_value

__all__ = ["GoJSON", "go_json", "go_quote", "go_value", "validate_crd"]

# -- field errors, as apimachinery's field.Error renders them ------------------------------


@dataclass(frozen=True)
class _E:
    reason: str
    field: str
    body: str

    def error(self) -> str:
        return f"{self.field}: {self.body}"

    def cause(self) -> Obj:
        return {"reason": self.reason, "message": self.body, "field": self.field}


def _go_struct(fields: list[tuple[str, Any]]) -> GoJSON:
    """A Go struct's json.Marshal (no tags: field names, declaration order)."""
    return GoJSON("{" + ",".join(f'"{k}":{go_json(v)}' for k, v in fields) + "}")


def required(path: str, detail: str = "") -> _E:
    return _E("FieldValueRequired", path, "Required value" + (f": {detail}" if detail else ""))


def forbidden(path: str, detail: str) -> _E:
    return _E("FieldValueForbidden", path, "Forbidden" + (f": {detail}" if detail else ""))


def invalid(path: str, value: Any, detail: str) -> _E:
    return _E("FieldValueInvalid", path,
              f"Invalid value: {go_value(value)}" + (f": {detail}" if detail else ""))


def not_supported(path: str, value: Any, valid: list[str]) -> _E:
    detail = ("supported values: " + ", ".join(go_quote(v) for v in valid)) if valid else ""
    return _E("FieldValueNotSupported", path,
              f"Unsupported value: {go_value(value)}" + (f": {detail}" if detail else ""))


def duplicate(path: str, value: Any) -> _E:
    return _E("FieldValueDuplicate", path, f"Duplicate value: {go_value(value)}")


def too_many(path: str, actual: int, most: int) -> _E:
    return _E("FieldValueTooMany", path,
              f"Too many: {actual}: must have at most {most} item{'' if most == 1 else 's'}")


def _key(path: str, k: str) -> str:
    return f"{path}[{k}]"


# -- name validation (apimachinery util/validation) ----------------------------------------

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN.match(value):
        errs.append(_SUBDOMAIN_MSG)
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS1035_LABEL.match(value):
        errs.append(_DNS1035_MSG)
    return errs


# -- the internal (Go) form of a schema ------------------------------------------------------

_OPENAPI_TYPES = ["array", "boolean", "integer", "number", "object", "string"]
_META_FIELDS = ("metadata", "kind", "apiVersion")


def _opt(s: Obj, key: str) -> Any:
    """A pointer/slice/map field: None when absent (JSON null too)."""
    return s.get(key)


def _or_bool(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, bool):
        return _go_struct([("Allows", v), ("Schema", None)])
    return _go_struct([("Allows", True), ("Schema", schema_struct(v))])


def schema_struct(s: Any) -> GoJSON:
    """json.Marshal of the internal apiextensions.JSONSchemaProps (field names, Go order)."""
    if not isinstance(s, dict):
        return GoJSON("null")

    def many(key: str) -> Any:
        v = s.get(key)
        return None if v is None else [schema_struct(x) for x in v]

    def mapping(key: str) -> Any:
        v = s.get(key)
        return None if v is None else {k: schema_struct(x) for k, x in v.items()}

    items = s.get("items")
    if items is None:
        items_v: Any = None
    elif isinstance(items, list):
        items_v = _go_struct([("Schema", None), ("JSONSchemas", [schema_struct(x) for x in items])])
    else:
        items_v = _go_struct([("Schema", schema_struct(items)), ("JSONSchemas", None)])
    deps = s.get("dependencies")
    deps_v = None if deps is None else {
        k: _go_struct([("Schema", schema_struct(d) if isinstance(d, dict) else None),
                       ("Property", d if isinstance(d, list) else None)])
        for k, d in deps.items()}
    docs = s.get("externalDocs")
    docs_v = None if docs is None else _go_struct(
        [("Description", docs.get("description", "")), ("URL", docs.get("url", ""))])
    rules = s.get("x-kubernetes-validations")
    rules_v = None if rules is None else [_rule_struct(r) for r in rules]
    return _go_struct([
        ("ID", s.get("id", "")), ("Schema", s.get("$schema", "")), ("Ref", _opt(s, "$ref")),
        ("Description", s.get("description", "")), ("Type", s.get("type", "")),
        ("Nullable", bool(s.get("nullable", False))), ("Format", s.get("format", "")),
        ("Title", s.get("title", "")), ("Default", _opt(s, "default")),
        ("Maximum", _opt(s, "maximum")), ("ExclusiveMaximum", bool(s.get("exclusiveMaximum"))),
        ("Minimum", _opt(s, "minimum")), ("ExclusiveMinimum", bool(s.get("exclusiveMinimum"))),
        ("MaxLength", _opt(s, "maxLength")), ("MinLength", _opt(s, "minLength")),
        ("Pattern", s.get("pattern", "")), ("MaxItems", _opt(s, "maxItems")),
        ("MinItems", _opt(s, "minItems")), ("UniqueItems", bool(s.get("uniqueItems"))),
        ("MultipleOf", _opt(s, "multipleOf")), ("Enum", _opt(s, "enum")),
        ("MaxProperties", _opt(s, "maxProperties")), ("MinProperties", _opt(s, "minProperties")),
        ("Required", _opt(s, "required")), ("Items", items_v), ("AllOf", many("allOf")),
        ("OneOf", many("oneOf")), ("AnyOf", many("anyOf")),
        ("Not", schema_struct(s["not"]) if s.get("not") is not None else None),
        ("Properties", mapping("properties")),
        ("AdditionalProperties", _or_bool(s.get("additionalProperties"))),
        ("PatternProperties", mapping("patternProperties")), ("Dependencies", deps_v),
        ("AdditionalItems", _or_bool(s.get("additionalItems"))),
        ("Definitions", mapping("definitions")), ("ExternalDocs", docs_v),
        ("Example", _opt(s, "example")),
        ("XPreserveUnknownFields", _opt(s, "x-kubernetes-preserve-unknown-fields")),
        ("XEmbeddedResource", bool(s.get("x-kubernetes-embedded-resource"))),
        ("XIntOrString", bool(s.get("x-kubernetes-int-or-string"))),
        ("XListMapKeys", _opt(s, "x-kubernetes-list-map-keys")),
        ("XListType", _opt(s, "x-kubernetes-list-type")),
        ("XMapType", _opt(s, "x-kubernetes-map-type")), ("XValidations", rules_v),
    ])


def _rule_struct(r: Obj) -> GoJSON:
    return _go_struct([
        ("Rule", r.get("rule", "")), ("Message", r.get("message", "")),
        ("MessageExpression", r.get("messageExpression", "")), ("Reason", r.get("reason")),
        ("FieldPath", r.get("fieldPath", "")), ("OptionalOldSelf", r.get("optionalOldSelf")),
    ])


# Go field name of JSONSchemaProps -> v1 JSON key, in declaration order.
_GO_FIELDS = [
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
_ALLOWED_AT_STATUS_ROOT = [
    "Description", "Type", "Format", "Title", "Maximum", "ExclusiveMaximum", "Minimum",
    "ExclusiveMinimum", "MaxLength", "MinLength", "Pattern", "MaxItems", "MinItems",
    "UniqueItems", "MultipleOf", "Required", "Items", "Properties", "ExternalDocs", "Example",
    "XPreserveUnknownFields", "XValidations",
]


def _is_zero(s: Obj, key: str) -> bool:
    v = s.get(key)
    if key in _BOOL_KEYS:
        return not v
    if key in _STRING_KEYS:
        return not v
    return v is None


def _nonzero_keys(s: Obj) -> list[str]:
    return [k for _, k in _GO_FIELDS if not _is_zero(s, k)]


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
    return {k: s[k] for k in s if not _is_zero(s, k)}


def _is_int_or_string_any_of(s: Obj) -> bool:
    any_of = s.get("anyOf") or []
    return len(any_of) == 2 and [_significant(x) for x in any_of] == _INT_OR_STRING_ANY_OF


def _is_int_or_string_all_of(s: Obj) -> bool:
    all_of = s.get("allOf") or []
    return bool(all_of) and isinstance(all_of[0], dict) and _is_int_or_string_any_of(all_of[0])


_ROOT, _ITEM, _FIELD = 0, 1, 2


def _invariants(s: Any, lvl: int, path: str) -> list[_E]:
    if not isinstance(s, dict):
        return []
    errs: list[_E] = []
    typ = s.get("type", "")
    items = s.get("items")
    if typ == "array" and items is None:
        errs.append(required(f"{path}.items", "must be specified"))
    errs += _invariants(items, _ITEM, f"{path}.items")
    for k in sorted(s.get("properties") or {}):
        errs += _invariants(s["properties"][k], _FIELD, _key(f"{path}.properties", k))
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
            errs.append(invalid(f"{_key(f'{path}.properties', name)}.type", sub.get("type", ""),
                                "must be string"))
    meta = props.get("metadata")
    if isinstance(meta, dict):
        errs += _metadata_invariants(meta, check_metadata, lvl,
                                     _key(f"{path}.properties", "metadata"))
    if embedded and not preserve and not props:
        errs.append(required(f"{path}.properties", "must not be empty if "
                             "x-kubernetes-embedded-resource is true without "
                             "x-kubernetes-preserve-unknown-fields"))
    return errs


def _metadata_invariants(s: Obj, check: bool, lvl: int, path: str) -> list[_E]:
    errs: list[_E] = []
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
                      path: str) -> list[_E]:
    errs: list[_E] = []
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


def _nested(v: Any, skip_any_of: bool, skip_all_of_any_of: bool, path: str) -> list[_E]:
    if not isinstance(v, dict):
        return []
    errs = _value_validation(v, skip_any_of, skip_all_of_any_of, path)
    if isinstance(v.get("items"), dict):
        errs += _nested(v["items"], False, False, f"{path}.items")
    for k in sorted(v.get("properties") or {}):
        errs += _nested(v["properties"][k], False, False, _key(f"{path}.properties", k))
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
        errs.append(forbidden(_key(f"{path}.properties", "metadata"),
                              "must not be specified in a nested context"))
    return errs


def _completeness(s: Obj, path: str) -> list[_E]:
    return _vv_completeness(s, s, path, path)


def _vv_completeness(v: Obj, s: Any, s_path: str, v_path: str) -> list[_E]:
    if not isinstance(s, dict):
        return [required(s_path, f"because it is defined in {v_path}")]
    errs: list[_E] = []
    if isinstance(v.get("not"), dict):
        errs += _nested_completeness(v["not"], s, s_path, f"{v_path}.not")
    for key in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(v.get(key) or []):
            errs += _nested_completeness(sub, s, s_path, f"{v_path}.{key}[{i}]")
    return errs


def _nested_completeness(v: Any, s: Any, s_path: str, v_path: str) -> list[_E]:
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
            errs.append(required(_key(f"{s_path}.properties", k), "because it is defined in "
                                 + _key(f"{v_path}.properties", k)))
        else:
            errs += _nested_completeness(v["properties"][k], s_props[k],
                                         _key(f"{s_path}.properties", k),
                                         _key(f"{v_path}.properties", k))
    return errs


def validate_structural(s: Obj, path: str) -> list[_E]:
    errs = _invariants(s, _ROOT, path) + _completeness(s, path)
    return sorted(errs, key=lambda e: e.error())


# -- defaults (schema/defaulting/validation.go) --------------------------------------------


def _embedded_resource_errors(path: str, x: Obj) -> list[_E]:
    errs: list[_E] = []
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


def _objectmeta_errors(path: str, x: Any, s: Any) -> list[_E]:
    """objectmeta.Validate: apiVersion/kind of every embedded resource in a default."""
    if not isinstance(s, dict):
        return []
    errs: list[_E] = []
    if isinstance(x, dict):
        if s.get("x-kubernetes-embedded-resource"):
            errs += _embedded_resource_errors(path, x)
        props = s.get("properties") or {}
        addl = s.get("additionalProperties")
        for k in sorted(x):
            if k in props:
                errs += _objectmeta_errors(f"{path}.{k}", x[k], props[k])
            elif isinstance(addl, dict):
                errs += _objectmeta_errors(_key(path, k), x[k], addl)
    elif isinstance(x, list):
        for i, v in enumerate(x):
            errs += _objectmeta_errors(f"{path}[{i}]", v, s.get("items"))
    return errs


def _value_errors(base: str, value: Any, s: Obj) -> list[_E]:
    return [_E(c["reason"], c["field"], c["message"])
            for c in schema.validate(copy.deepcopy(value), s, "", base)]


def validate_defaults(s: Obj, path: str) -> list[_E]:
    root = dict(s)
    root["x-kubernetes-embedded-resource"] = True
    return _defaults(path, root, root, inside_meta=False)


def _defaults(path: str, s: Any, root: Obj, *, inside_meta: bool) -> list[_E]:
    if not isinstance(s, dict):
        return []
    errs: list[_E] = []
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
        sub_meta = inside_meta or (embedded and k in _META_FIELDS)
        errs += _defaults(_key(f"{path}.properties", k), s["properties"][k], root,
                          inside_meta=sub_meta)
    return errs


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


def _node_rules(s: Obj, path: str, ssv: _Ssv) -> list[_E]:
    errs: list[_E] = []
    typ = s.get("type", "")
    if typ and typ not in _OPENAPI_TYPES:
        errs.append(not_supported(f"{path}.type", typ, _OPENAPI_TYPES))
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
                          cel_errs: list[_E] | None = None) -> list[_E]:
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
        if (is_root or embedded) and k in _META_FIELDS:
            sub = sub.meta()
            if is_root:
                sub = sub.forbid_defaults(f"in top-level {k}")
        errs += openapi_schema_errors(props[k], _key(f"{path}.properties", k), sub, False,
                                      cel_errs)
    errs += openapi_schema_errors(s.get("not"), f"{path}.not", ssv, False)
    for key in ("allOf", "oneOf", "anyOf"):
        for i, sub_s in enumerate(s.get(key) or []):
            errs += openapi_schema_errors(sub_s, f"{path}.{key}[{i}]", ssv, False)
    defs = s.get("definitions") or {}
    for k in sorted(defs):
        errs += openapi_schema_errors(defs[k], _key(f"{path}.definitions", k), ssv, False)
    items = s.get("items")
    if isinstance(items, dict):
        errs += openapi_schema_errors(items, f"{path}.items", ssv, False, cel_errs)
    elif isinstance(items, list):
        for i, sub_s in enumerate(items):
            errs += openapi_schema_errors(sub_s, f"{path}.items[{i}]", ssv, False)
    deps = s.get("dependencies") or {}
    for k in sorted(deps):
        errs += openapi_schema_errors(deps[k], _key(f"{path}.dependencies", k), ssv, False)
    errs += _extension_rules(s, path)
    if cel_errs is not None and not errs:
        cel_errs += _rule_compile_errors(s, path)
    return errs


def _rule_compile_errors(s: Obj, path: str) -> list[_E]:
    out: list[_E] = []
    for i, rule in enumerate(s.get("x-kubernetes-validations") or []):
        at = f"{path}.x-kubernetes-validations[{i}]"
        err = celrules.syntax_error(str(rule.get("rule", "")))
        if err is not None:
            out.append(invalid(f"{at}.rule", _rule_struct(rule), f"compilation failed: {err}"))
            continue
        expr = rule.get("messageExpression")
        if expr and (err := celrules.syntax_error(str(expr))) is not None:
            out.append(invalid(f"{at}.messageExpression", _rule_struct(rule),
                               f"messageExpression compilation failed: {err}"))
    return out


def _extension_rules(s: Obj, path: str) -> list[_E]:
    errs: list[_E] = []
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


def _list_map_rules(s: Obj, path: str, keys: list[str]) -> list[_E]:
    errs: list[_E] = []
    items = s.get("items")
    if not keys:
        errs.append(required(f"{path}.x-kubernetes-list-map-keys",
                             "must not be empty if x-kubernetes-list-type is map"))
    if items is None:
        errs.append(required(f"{path}.items",
                             "must have a schema if x-kubernetes-list-type is map"))
    elif isinstance(items, list):
        errs.append(invalid(f"{path}.items", _go_struct(
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
                        f"{_key(f'{path}.items.properties', k)}.type", items.get("type", ""),
                        "must be a scalar type if parent array's x-kubernetes-list-type is map"))
            else:
                errs.append(invalid(f"{path}.x-kubernetes-list-map-keys", keys,
                                    "entries must all be names of item properties"))
            if k in seen:
                errs.append(invalid(f"{path}.x-kubernetes-list-map-keys", keys,
                                    "must not contain duplicate entries"))
            seen.add(k)
    return errs


def _map_list_keys_map_set(s: Obj, path: str) -> list[_E]:
    items = s.get("items")
    list_type = s.get("x-kubernetes-list-type")
    if not isinstance(items, dict) or list_type not in ("set", "map"):
        return []
    errs: list[_E] = []
    if items.get("nullable"):
        errs.append(forbidden(f"{path}.items.nullable",
                              f"cannot be nullable when x-kubernetes-list-type is {list_type}"))
    if list_type == "map":
        req = set(items.get("required") or [])
        props = items.get("properties") or {}
        for k in s.get("x-kubernetes-list-map-keys") or []:
            if k not in props or not isinstance(props[k], dict):
                continue
            at = _key(f"{path}.items.properties", k)
            if k not in req and props[k].get("default") is None:
                errs.append(required(f"{at}.default", "this property is in "
                                     "x-kubernetes-list-map-keys, so it must have a default or "
                                     "be a required property"))
            if props[k].get("nullable"):
                errs.append(forbidden(f"{at}.nullable", "this property is in "
                                      "x-kubernetes-list-map-keys, so it cannot be nullable"))
    return errs


def _rule_shape(s: Obj, path: str) -> list[_E]:
    errs: list[_E] = []
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
        if fp and _field_path_target(s, fp) is None:
            errs.append(invalid(f"{at}.fieldPath", fp, "must be a valid path"))
    return errs


_PATH_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\['([^']*)'\]|\[(\d+)\]")


def _field_path_target(s: Obj, path: str, *, arrays: bool = True) -> Obj | None:
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


# -- the CustomResourceDefinition (validateCustomResourceDefinitionSpec and friends) ---------


@dataclass
class _Internal:
    """The parts of the internal CRD spec whose shape differs from v1."""

    validation: Obj | None
    subresources: Obj | None
    columns: list[Obj] | None
    selectable: list[Obj] | None
    hoisted_schema: bool
    hoisted_subresources: bool
    hoisted_columns: bool
    hoisted_selectable: bool


def _schema_of(v: Obj) -> Obj | None:
    sch = v.get("schema")
    if not isinstance(sch, dict):
        return None
    out = sch.get("openAPIV3Schema")
    return out if isinstance(out, dict) else None


def _internal(versions: list[Obj]) -> _Internal:
    def same(get: Any) -> bool:
        return all(get(v) == get(versions[0]) for v in versions)

    def sub(v: Obj) -> Any:
        return v.get("subresources")

    def cols(v: Obj) -> Any:
        return v.get("additionalPrinterColumns") or None

    def sel(v: Obj) -> Any:
        return v.get("selectableFields") or None

    def sch(v: Obj) -> Any:
        return v.get("schema")

    hs, hsub, hc, hsel = same(sch), same(sub), same(cols), same(sel)
    first = versions[0]
    return _Internal(
        validation=(first.get("schema") if hs else None),
        subresources=(sub(first) if hsub else None), columns=(cols(first) if hc else None),
        selectable=(sel(first) if hsel else None), hoisted_schema=hs,
        hoisted_subresources=hsub, hoisted_columns=hc, hoisted_selectable=hsel)


def _version_struct(v: Obj, internal: _Internal) -> GoJSON:
    sch = None if internal.hoisted_schema else v.get("schema")
    sch_v = None if not isinstance(sch, dict) else _go_struct(
        [("OpenAPIV3Schema", schema_struct(sch.get("openAPIV3Schema")))])
    sub = None if internal.hoisted_subresources else v.get("subresources")
    sub_v = None if not isinstance(sub, dict) else _subresources_struct(sub)
    cols = None if internal.hoisted_columns else v.get("additionalPrinterColumns")
    cols_v = None if not cols else [_go_struct([
        ("Name", c.get("name", "")), ("Type", c.get("type", "")), ("Format", c.get("format", "")),
        ("Description", c.get("description", "")), ("Priority", c.get("priority", 0)),
        ("JSONPath", c.get("jsonPath", ""))]) for c in cols]
    sel = None if internal.hoisted_selectable else v.get("selectableFields")
    sel_v = None if not sel else [_go_struct([("JSONPath", f.get("jsonPath", ""))]) for f in sel]
    return _go_struct([
        ("Name", v.get("name", "")), ("Served", bool(v.get("served"))),
        ("Storage", bool(v.get("storage"))), ("Deprecated", bool(v.get("deprecated"))),
        ("DeprecationWarning", v.get("deprecationWarning")), ("Schema", sch_v),
        ("Subresources", sub_v), ("AdditionalPrinterColumns", cols_v),
        ("SelectableFields", sel_v)])


def _subresources_struct(sub: Obj) -> GoJSON:
    scale = sub.get("scale")
    scale_v = None if not isinstance(scale, dict) else _go_struct([
        ("SpecReplicasPath", scale.get("specReplicasPath", "")),
        ("StatusReplicasPath", scale.get("statusReplicasPath", "")),
        ("LabelSelectorPath", scale.get("labelSelectorPath"))])
    status = sub.get("status")
    return _go_struct([("Status", None if status is None else GoJSON("{}")), ("Scale", scale_v)])


def _status_enabled(sub: Any) -> bool:
    return isinstance(sub, dict) and sub.get("status") is not None


def validate_schema(validation: Obj | None, status_enabled: bool, path: str) -> list[_E]:
    """validateCustomResourceDefinitionValidation for one (hoisted or per-version) schema."""
    if not isinstance(validation, dict):
        return []
    s = validation.get("openAPIV3Schema")
    if not isinstance(s, dict):
        return []
    errs: list[_E] = []
    root = f"{path}.openAPIV3Schema"
    if status_enabled:
        for go_name, key in _GO_FIELDS:
            if _is_zero(s, key):
                continue
            if go_name == "Type":
                if s.get("type") != "object":
                    errs.append(invalid(f"{root}.type", s.get("type"), 'only "object" is allowed '
                                        "as the type at the root of the schema if the status "
                                        "subresource is enabled"))
                    break
                continue
            if go_name not in _ALLOWED_AT_STATUS_ROOT:
                errs.append(invalid(root, schema_struct(s), "only [" + " ".join(
                    _ALLOWED_AT_STATUS_ROOT) + "] fields are allowed at the root of the schema "
                    "if the status subresource is enabled"))
                break
    if s.get("nullable"):
        errs.append(forbidden(f"{root}.nullable", "nullable cannot be true at the root"))
    init_err = new_structural_error(s)
    cel_errs: list[_E] | None = None
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


def _printer_column(col: Obj, path: str) -> list[_E]:
    errs: list[_E] = []
    types = ["boolean", "date", "integer", "number", "string"]
    formats = ["byte", "date", "date-time", "double", "float", "int32", "int64", "password"]
    if not col.get("name"):
        errs.append(required(f"{path}.name"))
    typ = col.get("type", "")
    if not typ:
        errs.append(required(f"{path}.type", "must be one of " + ",".join(types)))
    elif typ not in types:
        errs.append(invalid(f"{path}.type", typ, "must be one of " + ",".join(types)))
    fmt = col.get("format", "")
    if fmt and fmt not in formats:
        errs.append(invalid(f"{path}.format", fmt, "must be one of " + ",".join(formats)))
    jp = col.get("jsonPath", "")
    if not jp:
        errs.append(required(f"{path}.JSONPath"))
    else:
        errs += _simple_json_path(jp, f"{path}.JSONPath")
    return errs


def _simple_json_path(s: str, path: str) -> list[_E]:
    if not s:
        return [invalid(path, s, "must not be empty")]
    if s[0] != ".":
        return [invalid(path, s, "must be a simple json path starting with .")]
    return []


def _subresources(sub: Any, path: str) -> list[_E]:
    if not isinstance(sub, dict) or not isinstance(sub.get("scale"), dict):
        return []
    scale = sub["scale"]
    errs: list[_E] = []
    for key, prefix, word in (("specReplicasPath", (".spec.",), ".spec"),
                              ("statusReplicasPath", (".status.",), ".status")):
        at = f"{path}.scale.{key}"
        value = scale.get(key, "")
        if not value:
            errs.append(required(at))
        elif (e := _simple_json_path(value, at)):
            errs += e
        elif not value.startswith(prefix):
            errs.append(invalid(at, value, f"should be a json path under {word}"))
    sel = scale.get("labelSelectorPath")
    if sel:
        at = f"{path}.scale.labelSelectorPath"
        if (e := _simple_json_path(sel, at)):
            errs += e
        elif not sel.startswith((".spec.", ".status.")):
            errs.append(invalid(at, sel, "should be a json path under either .spec or .status"))
    return errs


def _selectable_fields(fields: list[Obj], sch: Obj | None, path: str) -> list[_E]:
    errs: list[_E] = []
    seen: set[str] = set()
    for i, f in enumerate(fields):
        at = f"{path}[{i}].jsonPath"
        jp = f.get("jsonPath", "")
        if not jp:
            errs.append(required(at))
            continue
        target = _field_path_target(sch or {}, jp, arrays=False)
        if target is None:
            errs.append(invalid(at, jp, "is an invalid path: does not refer to a valid field"))
            continue
        if jp.startswith(".metadata"):
            errs.append(invalid(at, jp, "must not point to fields in metadata"))
        if target.get("type") not in ("string", "boolean", "integer"):
            errs.append(invalid(at, jp, "must point to a field of type string, boolean or "
                                        "integer. Enum string fields and strings with formats "
                                        "are allowed."))
        if jp in seen:
            errs.append(duplicate(at, jp))
        seen.add(jp)
    if len(seen) > 8:
        errs.append(too_many(path, len(seen), 8))
    return errs


def _conversion(conv: Any, path: str) -> list[_E]:
    if not isinstance(conv, dict):
        return []
    errs: list[_E] = []
    strategy = conv.get("strategy", "")
    if not strategy:
        errs.append(required(f"{path}.strategy"))
    elif strategy not in ("None", "Webhook"):
        errs.append(not_supported(f"{path}.strategy", strategy, ["None", "Webhook"]))
    webhook = conv.get("webhook") or {}
    client = webhook.get("clientConfig") if isinstance(webhook, dict) else None
    review = webhook.get("conversionReviewVersions") if isinstance(webhook, dict) else None
    if strategy == "Webhook":
        if client is None:
            errs.append(required(f"{path}.webhookClientConfig",
                                 "required when strategy is set to Webhook"))
        elif (client.get("url") is None) == (client.get("service") is None):
            errs.append(required(f"{path}.webhookClientConfig",
                                 "exactly one of url or service is required"))
        if not review:
            errs.append(required(f"{path}.conversionReviewVersions"))
        elif not set(review) & {"v1", "v1beta1"}:
            errs.append(invalid(f"{path}.conversionReviewVersions", review,
                                "must include at least one of v1, v1beta1"))
    else:
        if client is not None:
            errs.append(forbidden(f"{path}.webhookClientConfig",
                                  "should not be set when strategy is not set to Webhook"))
        if review:
            errs.append(forbidden(f"{path}.conversionReviewVersions",
                                  "should not be set when strategy is not set to Webhook"))
    return errs


def _names(names: Obj, path: str) -> list[_E]:
    errs: list[_E] = []
    for key in ("plural", "singular"):
        v = names.get(key, "")
        if v and (msgs := is_dns1035_label(v)):
            errs.append(invalid(f"{path}.{key}", v, ",".join(msgs)))
    for key in ("kind", "listKind"):
        v = names.get(key, "")
        if v and (msgs := is_dns1035_label(v.lower())):
            errs.append(invalid(f"{path}.{key}", v, "may have mixed case, but should otherwise "
                                                     "match: " + ",".join(msgs)))
    for i, short in enumerate(names.get("shortNames") or []):
        if (msgs := is_dns1035_label(short)):
            errs.append(invalid(f"{path}.shortNames[{i}]", short, ",".join(msgs)))
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        errs.append(invalid(f"{path}.listKind", names.get("listKind"),
                            "kind and listKind may not be the same"))
    for i, cat in enumerate(names.get("categories") or []):
        if (msgs := is_dns1035_label(cat)):
            errs.append(invalid(f"{path}.categories[{i}]", cat, ",".join(msgs)))
    return errs


def _has_defaults(s: Any) -> bool:
    """SchemaHas(s, default != nil), through every sub-schema."""
    if not isinstance(s, dict):
        return False
    if s.get("default") is not None:
        return True
    subs: list[Any] = [s.get("not"), s.get("additionalProperties"), s.get("additionalItems")]
    items = s.get("items")
    subs += items if isinstance(items, list) else [items]
    for key in ("allOf", "anyOf", "oneOf"):
        subs += s.get(key) or []
    for key in ("properties", "patternProperties", "definitions", "dependencies"):
        subs += list((s.get(key) or {}).values())
    return any(_has_defaults(x) for x in subs)


def _protected(group: str) -> bool:
    return group in ("k8s.io", "kubernetes.io") or group.endswith((".k8s.io", ".kubernetes.io"))


_APPROVAL = "api-approved.kubernetes.io"


def _approval_state(annotations: Obj) -> tuple[str, str]:
    value = str(annotations.get(_APPROVAL, ""))
    if not value:
        return "missing", (f'protected groups must have approval annotation "{_APPROVAL}", see '
                           "https://github.com/kubernetes/enhancements/pull/1111")
    if value.startswith("unapproved"):
        return "bypassed", f"not approved: {go_quote(value)}"
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/\s]+", value):
        return "approved", f"approved in {value}"
    return "invalid", (f'protected groups must have approval annotation "{_APPROVAL}" with '
                       'either a URL or a reason starting with "unapproved", see '
                       "https://github.com/kubernetes/enhancements/pull/1111")


def default_crd(obj: Obj) -> None:
    """SetDefaults_CustomResourceDefinition plus the registry's PrepareForCreate/Update."""
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    names = spec.setdefault("names", {})
    if isinstance(names, dict):
        if not names.get("singular") and isinstance(names.get("kind"), str):
            names["singular"] = names["kind"].lower()
        if not names.get("listKind") and names.get("kind"):
            names["listKind"] = f"{names['kind']}List"
    if spec.get("conversion") is None:
        spec["conversion"] = {"strategy": "None"}


def validate_crd(obj: Obj, old: Obj | None, stored_versions: list[str]) -> list[Obj]:
    """Every cause kube-apiserver gives for this (defaulted) CRD, in its order."""
    errs: list[_E] = []
    meta: Obj = obj.get("metadata") or {}
    spec: Obj = obj["spec"] if isinstance(obj.get("spec"), dict) else {}
    names: Obj = spec["names"] if isinstance(spec.get("names"), dict) else {}
    group = str(spec.get("group") or "")
    name = str(meta.get("name", ""))
    if old is None:  # an update keeps the name (ValidateObjectMetaUpdate)
        name_msgs = is_dns1123_subdomain(name) if name else []
        if name != f"{names.get('plural', '')}.{group}":
            name_msgs.append('must be spec.names.plural+"."+spec.group')
        errs += [invalid("metadata.name", name, m) for m in name_msgs]
    errs += _spec_errors(spec, names, group)
    if old is not None:
        errs += _update_errors(spec, old)
    errs += _stored_versions(stored_versions, spec.get("versions") or [])
    errs += _approval(obj, old, group)
    if spec.get("preserveUnknownFields") is True and not (
            old is not None and (old.get("spec") or {}).get("preserveUnknownFields") is True):
        errs.append(invalid("spec.preserveUnknownFields", True, "cannot set to true, set "
                            "x-kubernetes-preserve-unknown-fields to true in "
                            "spec.versions[*].schema instead"))
    return [e.cause() for e in errs]


def _spec_errors(spec: Obj, names: Obj, group: str) -> list[_E]:
    errs: list[_E] = []
    if not group:
        errs.append(required("spec.group"))
    elif (msgs := is_dns1123_subdomain(group)):
        errs.append(invalid("spec.group", group, ",".join(msgs)))
    elif len(group.split(".")) < 2:
        errs.append(invalid("spec.group", group, "should be a domain with at least one dot"))
    scope = spec.get("scope", "")
    if not scope:
        errs.append(required("spec.scope"))
    elif scope not in ("Cluster", "Namespaced"):
        errs.append(not_supported("spec.scope", scope, ["Cluster", "Namespaced"]))
    versions: list[Obj] = [v for v in spec.get("versions") or [] if isinstance(v, dict)]
    internal = _internal(versions) if versions else None
    if internal is None or internal.validation is None or _schema_of(versions[0]) is None:
        for i, v in enumerate(versions):
            if _schema_of(v) is None:
                errs.append(required(f"spec.versions[{i}].schema.openAPIV3Schema"))
    if spec.get("preserveUnknownFields") is True and any(
            _has_defaults(_schema_of(v)) for v in versions):
        errs.append(invalid("spec.preserveUnknownFields", True,
                            "must be false in order to use defaults in the schema"))
    storage = 0
    seen: set[str] = set()
    unique = True
    any_status = bool(internal) and (
        _status_enabled(internal.subresources) if internal and internal.hoisted_subresources
        else any(_status_enabled(v.get("subresources")) for v in versions))
    for i, v in enumerate(versions):
        at = f"spec.versions[{i}]"
        storage += 1 if v.get("storage") else 0
        vname = str(v.get("name", ""))
        unique = unique and vname not in seen
        seen.add(vname)
        if (msgs := is_dns1035_label(vname)):
            errs.append(invalid(f"{at}.name", vname, ",".join(msgs)))
        assert internal is not None
        warning = v.get("deprecationWarning")
        if warning is not None:
            for msg in _deprecation_warning(bool(v.get("deprecated")), str(warning)):
                errs.append(invalid(f"{at}.deprecationWarning", warning, msg))
        sub = internal.subresources if internal.hoisted_subresources else v.get("subresources")
        if not internal.hoisted_schema:
            errs += validate_schema(v.get("schema"), _status_enabled(sub), f"{at}.schema")
        if not internal.hoisted_subresources:
            errs += _subresources(v.get("subresources"), f"{at}.subresources")
        if not internal.hoisted_columns:
            for j, col in enumerate(v.get("additionalPrinterColumns") or []):
                errs += _printer_column(col, f"{at}.additionalPrinterColumns[{j}]")
        if not internal.hoisted_selectable and v.get("selectableFields"):
            if internal.hoisted_schema or _schema_of(v) is None:
                errs.append(invalid(f"{at}.selectableFields", "", "may only be set when "
                                    "`version.schema.openAPIV3Schema` is not included"))
            else:
                errs += _selectable_fields(v["selectableFields"], _schema_of(v),
                                           f"{at}.selectableFields")
    vdump = GoJSON("[" + ",".join(_version_struct(v, internal) for v in versions) + "]") \
        if internal else GoJSON("[]")
    if not unique:
        errs.append(invalid("spec.versions", vdump, "must contain unique version names"))
    if storage != 1:
        errs.append(invalid("spec.versions", vdump,
                            "must have exactly one version marked as storage version"))
    if versions:
        first = str(versions[0].get("name", ""))
        if first and (msgs := is_dns1035_label(first)):
            errs.append(invalid("spec.version", first, ",".join(msgs)))
    for key in ("plural", "singular", "kind", "listKind"):
        if not names.get(key):
            errs.append(required(f"spec.names.{key}"))
    errs += _names(names, "spec.names")
    if internal is not None:
        if internal.hoisted_schema:
            errs += validate_schema(internal.validation, any_status, "spec.validation")
        if internal.hoisted_subresources:
            errs += _subresources(internal.subresources, "spec.subresources")
        if internal.hoisted_columns:
            for j, col in enumerate(internal.columns or []):
                errs += _printer_column(col, f"spec.additionalPrinterColumns[{j}]")
        if internal.hoisted_selectable and internal.selectable:
            if not internal.hoisted_schema:
                errs.append(invalid("spec.selectableFields", "",
                                    "may only be set when validations.schema is included"))
            else:
                errs += _selectable_fields(internal.selectable, _schema_of(versions[0]),
                                           "spec.selectableFields")
    conv = spec.get("conversion")
    if isinstance(conv, dict) and conv.get("strategy") not in (None, "None") and \
            spec.get("preserveUnknownFields") is True:
        errs.append(invalid("spec.conversion.strategy", conv.get("strategy"),
                            "must be None if spec.preserveUnknownFields is true"))
    errs += _conversion(conv, "spec.conversion")
    return errs


def _deprecation_warning(deprecated: bool, warning: str) -> list[str]:
    if not deprecated:
        return ["can only be set for deprecated versions"]
    out = []
    if len(warning.encode()) > 256:
        out.append("must be <= 256 characters long")
    if not warning:
        out.append("must not be an empty string")
    for i, ch in enumerate(warning):
        if not ch.isprintable():
            out.append("must only contain printable UTF-8 characters; non-printable character "
                       f"found at index {i}")
            break
    return out


def _update_errors(spec: Obj, old: Obj) -> list[_E]:
    errs: list[_E] = []
    old_spec = old.get("spec") or {}
    old_names = old_spec.get("names") or {}
    names = spec.get("names") or {}
    established = any(c.get("type") == "Established" and c.get("status") == "True"
                      for c in (old.get("status") or {}).get("conditions") or [])
    checks = []
    if established:
        checks += [("spec.scope", spec.get("scope"), old_spec.get("scope")),
                   ("spec.names.kind", names.get("kind"), old_names.get("kind"))]
    checks += [("spec.group", spec.get("group"), old_spec.get("group")),
               ("spec.names.plural", names.get("plural"), old_names.get("plural"))]
    for path, new, was in checks:
        if new != was:
            errs.append(invalid(path, new if new is not None else "", "field is immutable"))
    return errs


def _stored_versions(stored: list[str], versions: list[Obj]) -> list[_E]:
    if not stored:
        return [invalid("status.storedVersions", None, "must have at least one stored version")]
    errs: list[_E] = []
    left = {v: i for i, v in enumerate(stored)}
    for version in versions:
        vname = version.get("name")
        if version.get("storage") and vname not in left:
            errs.append(invalid("status.storedVersions", stored,
                                f"must have the storage version {vname}"))
        left.pop(str(vname), None)
    for v, i in sorted(left.items(), key=lambda kv: kv[1]):
        errs.append(invalid(f"status.storedVersions[{i}]", v, (
            f"missing from spec.versions; {v} was previously a storage version, and must remain "
            f"in spec.versions until a storage migration ensures no data remains persisted in "
            f"{v} and removes {v} from status.storedVersions")))
    return errs


def _approval(obj: Obj, old: Obj | None, group: str) -> list[_E]:
    if not _protected(group):
        return []
    state, reason = _approval_state((obj.get("metadata") or {}).get("annotations") or {})
    if old is not None:
        was, _ = _approval_state((old.get("metadata") or {}).get("annotations") or {})
        if was == state:
            return []
    at = f"metadata.annotations[{_APPROVAL}]"
    if state == "missing":
        return [required(at, reason)]
    if state == "invalid":
        return [invalid(at, ((obj.get("metadata") or {}).get("annotations") or {}).get(_APPROVAL),
                        reason)]
    return []


def stored_versions_after(spec: Obj, old: Obj | None) -> list[str]:
    """status.storedVersions as the registry keeps it: the old list plus the storage version."""
    stored = list(((old or {}).get("status") or {}).get("storedVersions") or [])
    for v in spec.get("versions") or []:
        if isinstance(v, dict) and v.get("storage"):
            if v.get("name") not in stored:
                stored.append(str(v.get("name")))
            break
    return stored
