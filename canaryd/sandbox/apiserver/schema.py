"""Structural-schema handling for custom resources: pruning, defaulting, validation.

Follows apiextensions-apiserver: unknown fields are dropped unless
`x-kubernetes-preserve-unknown-fields` is set, `default`s fill missing properties,
and validation reports every failure as a `details.causes[]` entry with the
apiserver's wording. `apiVersion`, `kind` and `metadata` at the root (and in
`x-kubernetes-embedded-resource` objects) are never pruned.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from canaryd.sandbox.apiserver import celrules, goregexp
from canaryd.sandbox.apiserver.errors import Obj, cause
from canaryd.sandbox.apiserver.goformat import go_value

_ROOT_KEEP = ("apiVersion", "kind", "metadata")


def prune(value: Any, schema: Obj | None, *, root: bool = False) -> Any:
    """Drop fields the schema does not declare (in place where possible)."""
    if schema is None:
        return value
    if isinstance(value, dict):
        props: Obj = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        keep_unknown = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        embedded = root or bool(schema.get("x-kubernetes-embedded-resource"))
        for key in list(value):
            if embedded and key in _ROOT_KEEP:  # metadata is never pruned by a CRD schema
                continue
            if key in props:
                value[key] = prune(value[key], props[key])
            elif isinstance(addl, dict):
                value[key] = prune(value[key], addl)
            elif addl is True or keep_unknown:
                continue
            else:
                del value[key]
        return value
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [prune(v, items) for v in value]
    return value


def apply_defaults(value: Any, schema: Obj | None) -> Any:
    if schema is None:
        return value
    if isinstance(value, dict):
        props: Obj = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in value and isinstance(sub, dict) and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(value[key], sub)
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict):
            for key in value:
                if key not in props:
                    value[key] = apply_defaults(value[key], addl)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [apply_defaults(v, items) for v in value]
    return value


def _show(value: Any) -> str:
    """Go's %#v-ish rendering the apiserver uses in `Invalid value: ...`."""
    if isinstance(value, dict | list):
        return '"' + type(value).__name__ + '"'
    return json.dumps(value)


_TYPE_NAMES = {
    "string": (str,), "boolean": (bool,), "object": (dict,), "array": (list,),
}


def _type_ok(value: Any, typ: str) -> bool:
    if typ == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if typ == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPE_NAMES.get(typ, (object,)))


def validate(value: Any, schema: Obj | None, path: str = "", base: str | None = None
             ) -> list[Obj]:
    """Every schema violation under `path`, as Status causes.

    `path` is the value's name inside the validated document (what messages call `<path> in
    body`); `base`, when given, is where that document sits (a CRD's `...default`), so a
    cause's field is `base.path`, as apiextensions reports defaults."""
    if schema is None:
        return []
    errs: list[Obj] = []
    if base is None:
        fld = name = path or "<root>"
    else:
        fld, name = (f"{base}.{path}" if path else base), path
    if value is None:
        if schema.get("nullable"):
            return []
        if "type" in schema:
            return [cause("FieldValueTypeInvalid", fld,
                          f'{fld}: Invalid value: "null": {name} in body must be of type '
                          f'{schema["type"]}: "null"')]
        return []
    typ = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or _type_ok(value, "integer")):
            errs.append(cause("FieldValueTypeInvalid", fld,
                              f"{fld}: Invalid value: {_show(value)}: {name} in body must be "
                              "of type integer-or-string"))
            return errs
    elif typ and not _type_ok(value, str(typ)):
        got = "object" if isinstance(value, dict) else type(value).__name__
        got = {"str": "string", "int": "integer", "float": "number", "bool": "boolean",
               "list": "array"}.get(got, got)
        return [cause("FieldValueTypeInvalid", fld,
                      f'{fld}: Invalid value: "{got}": {name} in body must be of type {typ}: '
                      f'"{got}"')]
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(json.dumps(v) for v in schema["enum"])
        errs.append(cause("FieldValueNotSupported", fld,
                          f"{fld}: Unsupported value: {_show(value)}: supported values: {allowed}"))
    if isinstance(value, str):
        errs.extend(_string_errors(value, schema, fld, name))
    if _type_ok(value, "number") and not isinstance(value, str):
        errs.extend(_number_errors(value, schema, fld, name))
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > int(schema["maxItems"]):
            errs.append(cause("FieldValueTooMany", fld,
                              f"{fld}: Too many: {len(value)}: must have at most "
                              f"{schema['maxItems']} items"))
        if "minItems" in schema and len(value) < int(schema["minItems"]):
            errs.append(cause("FieldValueInvalid", fld,
                              f"{fld}: Invalid value: {len(value)}: {name} in body should have at "
                              f"least {schema['minItems']} items"))
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                errs.extend(validate(item, items, f"{path}[{i}]", base))
    if isinstance(value, dict):
        errs.extend(_object_errors(value, schema, path, base))
    return errs


def _string_errors(value: str, schema: Obj, fld: str, name: str) -> list[Obj]:
    errs: list[Obj] = []
    if "maxLength" in schema and len(value) > int(schema["maxLength"]):
        errs.append(cause("FieldValueTooLong", fld,
                          f"{fld}: Too long: may not be more than {schema['maxLength']} bytes"))
    if "minLength" in schema and len(value) < int(schema["minLength"]):
        errs.append(cause("FieldValueInvalid", fld,
                          f"{fld}: Invalid value: {_show(value)}: {name} in body should be at "
                          f"least {schema['minLength']} chars long"))
    pattern = schema.get("pattern")
    if pattern and not _matches(str(pattern), value):
        errs.append(cause("FieldValueInvalid", fld,
                          f"{fld}: Invalid value: {_show(value)}: {name} in body should match "
                          f"'{pattern}'"))
    return errs


def _matches(pattern: str, value: str) -> bool:
    try:
        return goregexp.search(pattern, value)
    except goregexp.GoRegexpError:
        return True  # a CRD with this pattern is refused; nothing stored can carry one


def _number_errors(value: float, schema: Obj, fld: str, name: str) -> list[Obj]:
    errs: list[Obj] = []
    if "minimum" in schema:
        lo = schema["minimum"]
        excl = bool(schema.get("exclusiveMinimum"))
        if value < lo or (excl and value == lo):
            word = "greater than" if excl else "greater than or equal to"
            errs.append(cause("FieldValueInvalid", fld,
                              f"{fld}: Invalid value: {_show(value)}: {name} in body should be "
                              f"{word} {lo}"))
    if "maximum" in schema:
        hi = schema["maximum"]
        excl = bool(schema.get("exclusiveMaximum"))
        if value > hi or (excl and value == hi):
            word = "less than" if excl else "less than or equal to"
            errs.append(cause("FieldValueInvalid", fld,
                              f"{fld}: Invalid value: {_show(value)}: {name} in body should be "
                              f"{word} {hi}"))
    return errs


def _object_errors(value: Obj, schema: Obj, path: str, base: str | None) -> list[Obj]:
    errs: list[Obj] = []
    props: Obj = schema.get("properties") or {}
    for req in schema.get("required") or []:
        if req not in value:
            fld = f"{path}.{req}" if path else req
            fld = fld if base is None else f"{base}.{fld}"
            errs.append(cause("FieldValueRequired", fld, f"{fld}: Required value"))
    addl = schema.get("additionalProperties")
    for key, sub in value.items():
        child = f"{path}.{key}" if path else key
        if not path and base is None and key in _ROOT_KEEP:
            continue
        if key in props:
            errs.extend(validate(sub, props[key], child, base))
        elif isinstance(addl, dict):
            errs.extend(validate(sub, addl, child, base))
    if "maxProperties" in schema and len(value) > int(schema["maxProperties"]):
        fld = (path or "<root>") if base is None else (f"{base}.{path}" if path else base)
        errs.append(cause("FieldValueTooMany", fld,
                          f"{fld}: Too many: {len(value)}: must have at most "
                          f"{schema['maxProperties']} items"))
    return errs


def has_rules(schema: Any) -> bool:
    if isinstance(schema, dict):
        if schema.get("x-kubernetes-validations"):
            return True
        return any(has_rules(v) for v in schema.values())
    if isinstance(schema, list):
        return any(has_rules(v) for v in schema)
    return False


# A schema error of these kinds leaves the CEL rules unevaluated (hasBlockingErr).
_BLOCKING = {"FieldValueNotSupported", "FieldValueRequired", "FieldValueTooLong",
             "FieldValueTooMany", "FieldValueTypeInvalid"}


def rule_errors(value: Any, schema: Obj | None, path: str, old: Any = None,
                has_old: bool = False) -> list[Obj]:
    """The x-kubernetes-validations errors under `path`: each node's rules, then its
    children's (properties by `.name`, map entries by `[key]`, list items by `[i]`)."""
    if not isinstance(schema, dict) or value is None:
        return []
    errs = [cause(e.reason, e.field, f"{e.field}: {e.body}") for e in celrules.evaluate(
        schema.get("x-kubernetes-validations") or [], value, str(schema.get("type", "")),
        path or "<nil>", old=old, has_old=has_old, show=go_value)]
    if isinstance(value, dict):
        props: Obj = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        for key in sorted(value):
            if not path and key in _ROOT_KEEP:
                continue
            sub = props.get(key, addl if key not in props else None)
            if not isinstance(sub, dict):
                continue
            child = (f"{path}.{key}" if path else key) if key in props else f"{path}[{key}]"
            had = has_old and isinstance(old, dict) and key in old
            errs += rule_errors(value[key], sub, child, old[key] if had else None, had)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errs += rule_errors(item, schema["items"], f"{path}[{i}]")
    return errs


def process(obj: Obj, schema: Obj | None, old: Obj | None = None) -> list[Obj]:
    """Prune, default, then validate a whole custom resource (schema, then CEL rules);
    returns the causes."""
    if schema is None:
        return []
    prune(obj, schema, root=True)
    apply_defaults(obj, schema)
    errs = validate(obj, schema)
    if has_rules(schema):
        if any(e["reason"] in _BLOCKING for e in errs):
            errs.append(cause("FieldValueInvalid", "<nil>",
                              f"<nil>: Invalid value: null: {celrules.BLOCKED}"))
        else:
            errs += rule_errors(obj, schema, "", old, old is not None)
    return errs
