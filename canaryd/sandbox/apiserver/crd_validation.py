"""CustomResourceDefinition validation, ported from apiextensions-apiserver (v1.36).

`validate_crd` refuses what kube-apiserver refuses, with the same causes (reason, field,
message) in the same order, so a CRD that the sandbox accepts installs on a real cluster:
`pkg/apis/apiextensions/validation/validation.go` (the CRD and its OpenAPI schema),
`pkg/apiserver/schema/{convert,validation,complete}.go` (structural schemas) and
`pkg/apiserver/schema/defaulting/validation.go` (defaults). Every `field.Invalid/Required/
Forbidden/NotSupported` there becomes a `FieldErr` (crd_fields), worded by
`field.Error.ErrorBody()`.

Like the real server this works on the internal form of a v1 CRD: `spec.version` is
`versions[0].name`, and per-version schemas, subresources, printer columns and selectable
fields that are identical in every version are hoisted to `spec.validation`,
`spec.subresources`, ... (which is why a single-version CRD's schema errors name
`spec.validation.openAPIV3Schema`). Not ported: CEL rule compilation and cost estimation
(`x-kubernetes-validations` are checked for shape only), conversion webhook client configs
beyond presence, and ObjectMeta validation of defaults inside embedded resources' metadata.

The parts: crd_fields (field errors, names, a schema's Go form), crd_structural (structural
schemas, defaults), crd_openapi (the schema walk), crd_versions (the internal form, printer
columns, subresources, selectable fields) and this module (the CRD, its names, conversion,
updates and approval).
"""

from __future__ import annotations

import re
from typing import Any

from canaryd.sandbox.apiserver.crd_fields import (
    FieldErr,
    forbidden,
    invalid,
    is_dns1035_label,
    is_dns1123_subdomain,
    not_supported,
    required,
)
from canaryd.sandbox.apiserver.crd_openapi import (
    validate_schema,
)
from canaryd.sandbox.apiserver.crd_versions import (
    has_status,
    internal_form,
    printer_column,
    schema_of,
    selectable_fields,
    subresources,
    version_struct,
)
from canaryd.sandbox.apiserver.errors import Obj
from canaryd.sandbox.apiserver.goformat import GoJSON, go_quote

__all__ = ["default_crd", "stored_versions_after", "validate_crd"]


def _conversion(conv: Any, path: str) -> list[FieldErr]:
    if not isinstance(conv, dict):
        return []
    errs: list[FieldErr] = []
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


def _names(names: Obj, path: str) -> list[FieldErr]:
    errs: list[FieldErr] = []
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
    errs: list[FieldErr] = []
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


def _spec_errors(spec: Obj, names: Obj, group: str) -> list[FieldErr]:
    errs: list[FieldErr] = []
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
    internal = internal_form(versions) if versions else None
    if internal is None or internal.validation is None or schema_of(versions[0]) is None:
        for i, v in enumerate(versions):
            if schema_of(v) is None:
                errs.append(required(f"spec.versions[{i}].schema.openAPIV3Schema"))
    if spec.get("preserveUnknownFields") is True and any(
            _has_defaults(schema_of(v)) for v in versions):
        errs.append(invalid("spec.preserveUnknownFields", True,
                            "must be false in order to use defaults in the schema"))
    storage = 0
    seen: set[str] = set()
    unique = True
    any_status = bool(internal) and (
        has_status(internal.subresources) if internal and internal.hoisted_subresources
        else any(has_status(v.get("subresources")) for v in versions))
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
            errs += validate_schema(v.get("schema"), has_status(sub), f"{at}.schema")
        if not internal.hoisted_subresources:
            errs += subresources(v.get("subresources"), f"{at}.subresources")
        if not internal.hoisted_columns:
            for j, col in enumerate(v.get("additionalPrinterColumns") or []):
                errs += printer_column(col, f"{at}.additionalPrinterColumns[{j}]")
        if not internal.hoisted_selectable and v.get("selectableFields"):
            if internal.hoisted_schema or schema_of(v) is None:
                errs.append(invalid(f"{at}.selectableFields", "", "may only be set when "
                                    "`version.schema.openAPIV3Schema` is not included"))
            else:
                errs += selectable_fields(v["selectableFields"], schema_of(v),
                                           f"{at}.selectableFields")
    vdump = GoJSON("[" + ",".join(version_struct(v, internal) for v in versions) + "]") \
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
            errs += subresources(internal.subresources, "spec.subresources")
        if internal.hoisted_columns:
            for j, col in enumerate(internal.columns or []):
                errs += printer_column(col, f"spec.additionalPrinterColumns[{j}]")
        if internal.hoisted_selectable and internal.selectable:
            if not internal.hoisted_schema:
                errs.append(invalid("spec.selectableFields", "",
                                    "may only be set when validations.schema is included"))
            else:
                errs += selectable_fields(internal.selectable, schema_of(versions[0]),
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


def _update_errors(spec: Obj, old: Obj) -> list[FieldErr]:
    errs: list[FieldErr] = []
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


def _stored_versions(stored: list[str], versions: list[Obj]) -> list[FieldErr]:
    if not stored:
        return [invalid("status.storedVersions", None, "must have at least one stored version")]
    errs: list[FieldErr] = []
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


def _approval(obj: Obj, old: Obj | None, group: str) -> list[FieldErr]:
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
