"""Admitting a submitted Rollout manifest: validate, resolve, normalize, arbitrate. Pure.

Everything the controller would later fail a rollout for is checked here first, so a
pipeline hears about it at submit time with the field to fix: the models (every field error
at once), then the plan against the live settings (profile exists, overrides only tighten,
interval in bounds), then what it would write: one active rollout per router object (and
route or rule), Service and Deployment, and per target (`canaryd.core.targets`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from canaryd.api import problems
from canaryd.api.problems import FieldError
from canaryd.core import model, plan, targets
from canaryd.core.manifest import METADATA_FIELDS, RolloutManifest
from canaryd.core.settings import Settings

IDEMPOTENCY_ANNOTATION = "canaryd.io/idempotency-key"
DIGEST_ANNOTATION = "canaryd.io/request-digest"
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True)
class Admitted:
    manifest: RolloutManifest
    namespace: str
    digest: str
    analysis: plan.EffectiveAnalysis

    @property
    def spec(self) -> model.RolloutSpec:
        return self.manifest.spec


def validate(doc: dict[str, Any], settings: Settings) -> Admitted:
    """The manifest, or `Problem` 422 listing every bad field by JSON pointer."""
    try:
        manifest = RolloutManifest.model_validate(doc)
    except ValidationError as exc:
        raise problems.invalid(_field_errors(exc)) from None
    errors: list[FieldError] = []
    analysis: plan.EffectiveAnalysis | None = None
    try:
        analysis = plan.resolve_analysis(settings, manifest.spec)
    except plan.PlanError as exc:
        errors.extend(problems.from_plan_error(text) for text in exc.problems)
    if errors or analysis is None:
        raise problems.invalid(errors)
    namespace = manifest.metadata.namespace or DEFAULT_NAMESPACE
    body = normalized_spec(manifest)
    digest = hashlib.sha256(json.dumps(
        {"metadata": _user_metadata(manifest), "namespace": namespace, "spec": body},
        sort_keys=True,
    ).encode()).hexdigest()
    return Admitted(manifest=manifest, namespace=namespace, digest=digest, analysis=analysis)


def _field_errors(exc: ValidationError) -> list[FieldError]:
    out = []
    for err, field in zip(exc.errors(include_url=False), problems.from_validation(exc),
                          strict=True):
        loc = err["loc"]
        if err["type"] == "extra_forbidden" and len(loc) == 2 and loc[0] == "metadata":
            field = FieldError(
                detail="not accepted on submit: metadata may only hold "
                       + ", ".join(METADATA_FIELDS), pointer=field.pointer)
        out.append(field)
    return out


def normalized_spec(manifest: RolloutManifest) -> dict[str, Any]:
    """The spec as the user wrote it (no defaults filled in), with types coerced for the CRD."""
    return manifest.spec.model_dump(mode="json", by_alias=True, exclude_unset=True,
                                    exclude_none=True)


def _user_metadata(manifest: RolloutManifest) -> dict[str, Any]:
    meta = manifest.metadata.model_dump(mode="json", by_alias=True, exclude_unset=True,
                                        exclude_none=True)
    meta.pop("namespace", None)
    return meta


def check_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not IDEMPOTENCY_KEY.match(value):
        raise problems.bad_parameter(
            "Idempotency-Key", "1 to 255 visible ASCII characters, no spaces"
        )
    return value


def resource(admitted: Admitted, *, idempotency_key: str | None) -> dict[str, Any]:
    """The Rollout custom resource to create."""
    meta = _user_metadata(admitted.manifest)
    meta["namespace"] = admitted.namespace
    if idempotency_key is not None:
        meta["annotations"] = {
            **(meta.get("annotations") or {}),
            IDEMPOTENCY_ANNOTATION: idempotency_key,
            DIGEST_ANNOTATION: admitted.digest,
        }
        if not meta.get("name"):
            # A name derived from the key: a retry racing the first attempt collides on
            # create (AlreadyExists) instead of making a second rollout.
            suffix = hashlib.sha256(
                f"{admitted.namespace}/{idempotency_key}".encode()
            ).hexdigest()[:10]
            meta["name"] = (meta["generateName"] + suffix)[:253]
            meta.pop("generateName", None)
    return {
        "apiVersion": model.API_VERSION,
        "kind": model.KIND,
        "metadata": meta,
        "spec": normalized_spec(admitted.manifest),
    }


def find_idempotent(
    cached: Iterable[dict[str, Any]], namespace: str, key: str
) -> dict[str, Any] | None:
    for obj in cached:
        meta = obj.get("metadata") or {}
        if meta.get("namespace") == namespace and (
            (meta.get("annotations") or {}).get(IDEMPOTENCY_ANNOTATION) == key
        ):
            return obj
    return None


def same_request(obj: dict[str, Any], admitted: Admitted) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return annotations.get(DIGEST_ANNOTATION) == admitted.digest


@dataclass(frozen=True)
class Busy:
    holder: str  # namespace/name of the active rollout
    shared: str  # what both would write, e.g. "VirtualService podinfo route primary"


def blocking(existing: Iterable[targets.Entry], admitted: Admitted) -> Busy | None:
    """The active rollout that holds something the candidate would write, if any, per the
    same arbitration the controller applies (`existing`: every cached rollout's entry): the
    candidate sorts after everything that exists."""
    candidate = targets.Entry(
        namespace=admitted.namespace, name="\uffff(candidate)", target=admitted.spec.target,
        created="\uffff", phase=model.Phase.PENDING, supersede=admitted.spec.supersede,
        claims=targets.claims(normalized_spec(admitted.manifest)),
    )
    verdict = targets.arbitrate([*existing, candidate]).get(candidate.key)
    if verdict is None or verdict.blocking is None:
        return None
    return Busy(verdict.blocking, verdict.shared or f"target {admitted.spec.target}")
