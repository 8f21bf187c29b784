"""Field errors as apimachinery's field.Error renders them, the name checks of
util/validation, and the internal (Go) form of a schema as json.Marshal prints it: what the
CRD validation modules (crd_structural, crd_openapi, crd_versions, crd_validation) share.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from canaryd.sandbox.apiserver.errors import Obj
from canaryd.sandbox.apiserver.goformat import GoJSON, go_json, go_quote, go_value

# -- field errors, as apimachinery's field.Error renders them ------------------------------


@dataclass(frozen=True)
class FieldErr:
    reason: str
    field: str
    body: str

    def error(self) -> str:
        return f"{self.field}: {self.body}"

    def cause(self) -> Obj:
        return {"reason": self.reason, "message": self.body, "field": self.field}


def go_struct(fields: list[tuple[str, Any]]) -> GoJSON:
    """A Go struct's json.Marshal (no tags: field names, declaration order)."""
    return GoJSON("{" + ",".join(f'"{k}":{go_json(v)}' for k, v in fields) + "}")


def required(path: str, detail: str = "") -> FieldErr:
    return FieldErr("FieldValueRequired", path,
                    "Required value" + (f": {detail}" if detail else ""))


def forbidden(path: str, detail: str) -> FieldErr:
    return FieldErr("FieldValueForbidden", path, "Forbidden" + (f": {detail}" if detail else ""))


def invalid(path: str, value: Any, detail: str) -> FieldErr:
    return FieldErr("FieldValueInvalid", path,
              f"Invalid value: {go_value(value)}" + (f": {detail}" if detail else ""))


def not_supported(path: str, value: Any, valid: list[str]) -> FieldErr:
    detail = ("supported values: " + ", ".join(go_quote(v) for v in valid)) if valid else ""
    return FieldErr("FieldValueNotSupported", path,
              f"Unsupported value: {go_value(value)}" + (f": {detail}" if detail else ""))


def duplicate(path: str, value: Any) -> FieldErr:
    return FieldErr("FieldValueDuplicate", path, f"Duplicate value: {go_value(value)}")


def too_many(path: str, actual: int, most: int) -> FieldErr:
    return FieldErr("FieldValueTooMany", path,
              f"Too many: {actual}: must have at most {most} item{'' if most == 1 else 's'}")


def key_path(path: str, k: str) -> str:
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

OPENAPI_TYPES = ["array", "boolean", "integer", "number", "object", "string"]
META_FIELDS = ("metadata", "kind", "apiVersion")


def _opt(s: Obj, key: str) -> Any:
    """A pointer/slice/map field: None when absent (JSON null too)."""
    return s.get(key)


def _or_bool(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, bool):
        return go_struct([("Allows", v), ("Schema", None)])
    return go_struct([("Allows", True), ("Schema", schema_struct(v))])


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
        items_v = go_struct([("Schema", None), ("JSONSchemas", [schema_struct(x) for x in items])])
    else:
        items_v = go_struct([("Schema", schema_struct(items)), ("JSONSchemas", None)])
    deps = s.get("dependencies")
    deps_v = None if deps is None else {
        k: go_struct([("Schema", schema_struct(d) if isinstance(d, dict) else None),
                       ("Property", d if isinstance(d, list) else None)])
        for k, d in deps.items()}
    docs = s.get("externalDocs")
    docs_v = None if docs is None else go_struct(
        [("Description", docs.get("description", "")), ("URL", docs.get("url", ""))])
    rules = s.get("x-kubernetes-validations")
    rules_v = None if rules is None else [rule_struct(r) for r in rules]
    return go_struct([
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


def rule_struct(r: Obj) -> GoJSON:
    return go_struct([
        ("Rule", r.get("rule", "")), ("Message", r.get("message", "")),
        ("MessageExpression", r.get("messageExpression", "")), ("Reason", r.get("reason")),
        ("FieldPath", r.get("fieldPath", "")), ("OptionalOldSelf", r.get("optionalOldSelf")),
    ])
