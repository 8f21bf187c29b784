"""A CRD's versions in the internal form kube-apiserver validates (identical per-version
parts hoisted to `spec.validation`, `spec.subresources`, ...), and the per-version checks of
printer columns, subresources and selectable fields (`validation.go`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from canaryd.sandbox.apiserver.crd_fields import (
    FieldErr,
    duplicate,
    go_struct,
    invalid,
    required,
    schema_struct,
    too_many,
)
from canaryd.sandbox.apiserver.crd_openapi import (
    field_path_target,
)
from canaryd.sandbox.apiserver.errors import Obj
from canaryd.sandbox.apiserver.goformat import GoJSON

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


def schema_of(v: Obj) -> Obj | None:
    sch = v.get("schema")
    if not isinstance(sch, dict):
        return None
    out = sch.get("openAPIV3Schema")
    return out if isinstance(out, dict) else None


def internal_form(versions: list[Obj]) -> _Internal:
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


def version_struct(v: Obj, internal: _Internal) -> GoJSON:
    sch = None if internal.hoisted_schema else v.get("schema")
    sch_v = None if not isinstance(sch, dict) else go_struct(
        [("OpenAPIV3Schema", schema_struct(sch.get("openAPIV3Schema")))])
    sub = None if internal.hoisted_subresources else v.get("subresources")
    sub_v = None if not isinstance(sub, dict) else _subresources_struct(sub)
    cols = None if internal.hoisted_columns else v.get("additionalPrinterColumns")
    cols_v = None if not cols else [go_struct([
        ("Name", c.get("name", "")), ("Type", c.get("type", "")), ("Format", c.get("format", "")),
        ("Description", c.get("description", "")), ("Priority", c.get("priority", 0)),
        ("JSONPath", c.get("jsonPath", ""))]) for c in cols]
    sel = None if internal.hoisted_selectable else v.get("selectableFields")
    sel_v = None if not sel else [go_struct([("JSONPath", f.get("jsonPath", ""))]) for f in sel]
    return go_struct([
        ("Name", v.get("name", "")), ("Served", bool(v.get("served"))),
        ("Storage", bool(v.get("storage"))), ("Deprecated", bool(v.get("deprecated"))),
        ("DeprecationWarning", v.get("deprecationWarning")), ("Schema", sch_v),
        ("Subresources", sub_v), ("AdditionalPrinterColumns", cols_v),
        ("SelectableFields", sel_v)])


def _subresources_struct(sub: Obj) -> GoJSON:
    scale = sub.get("scale")
    scale_v = None if not isinstance(scale, dict) else go_struct([
        ("SpecReplicasPath", scale.get("specReplicasPath", "")),
        ("StatusReplicasPath", scale.get("statusReplicasPath", "")),
        ("LabelSelectorPath", scale.get("labelSelectorPath"))])
    status = sub.get("status")
    return go_struct([("Status", None if status is None else GoJSON("{}")), ("Scale", scale_v)])


def has_status(sub: Any) -> bool:
    return isinstance(sub, dict) and sub.get("status") is not None


def printer_column(col: Obj, path: str) -> list[FieldErr]:
    errs: list[FieldErr] = []
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


def _simple_json_path(s: str, path: str) -> list[FieldErr]:
    if not s:
        return [invalid(path, s, "must not be empty")]
    if s[0] != ".":
        return [invalid(path, s, "must be a simple json path starting with .")]
    return []


def subresources(sub: Any, path: str) -> list[FieldErr]:
    if not isinstance(sub, dict) or not isinstance(sub.get("scale"), dict):
        return []
    scale = sub["scale"]
    errs: list[FieldErr] = []
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


def selectable_fields(fields: list[Obj], sch: Obj | None, path: str) -> list[FieldErr]:
    errs: list[FieldErr] = []
    seen: set[str] = set()
    for i, f in enumerate(fields):
        at = f"{path}[{i}].jsonPath"
        jp = f.get("jsonPath", "")
        if not jp:
            errs.append(required(at))
            continue
        target = field_path_target(sch or {}, jp, arrays=False)
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
