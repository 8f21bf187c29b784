"""A Rollout as submitted (the document `kubectl apply` takes): what its metadata may say
(names, labels, annotations, checked as Kubernetes checks them) and its spec.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from canaryd.core.model import GROUP, RolloutSpec
from canaryd.core.names import Label, Subdomain, check_subdomain


def _mask_trailing_dash(value: str) -> str:
    return value[:-1] + "a" if value.endswith("-") else value


def check_generate_name(value: str) -> str:
    """What Kubernetes accepts as a generateName prefix (a DNS-1123 subdomain once the
    trailing dash is masked), short enough for the suffix canaryd or Kubernetes appends."""
    if len(value) > GENERATE_NAME_MAX:
        raise ValueError(f"at most {GENERATE_NAME_MAX} characters (a suffix is appended)")
    check_subdomain(_mask_trailing_dash(value))
    return value


def check_qualified_name(key: str) -> str:
    """A label or annotation key: `[prefix/]name` (prefix a DNS subdomain, name <= 63)."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        check_subdomain(prefix)
    if not QUALIFIED_NAME.match(name):
        raise ValueError(f"{key!r} is not a valid key: an optional DNS subdomain prefix and "
                         "'/', then at most 63 letters, digits, '-', '_' or '.', starting and "
                         "ending with a letter or digit")
    return key


def check_label_value(value: str) -> str:
    if value and not QUALIFIED_NAME.match(value):
        raise ValueError(f"{value!r} is not a valid label value: at most 63 letters, digits, "
                         "'-', '_' or '.', starting and ending with a letter or digit")
    return value


def check_annotation_key(key: str) -> str:
    check_qualified_name(key)
    prefix = key.rpartition("/")[0]
    if prefix == GROUP or prefix.endswith("." + GROUP):
        raise ValueError(f"{key!r}: set by canaryd, not by a request (the {GROUP}/ keys are "
                         "canaryd's)")
    return key


QUALIFIED_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
GENERATE_NAME_MAX = 243
MetaKey = Annotated[str, AfterValidator(check_qualified_name)]
AnnotationKey = Annotated[str, AfterValidator(check_annotation_key)]
LabelText = Annotated[str, AfterValidator(check_label_value)]
METADATA_FIELDS = ("name", "generateName", "namespace", "labels", "annotations")


class ObjectMeta(BaseModel):
    """What a submitted Rollout may say about itself. Anything else (finalizers,
    ownerReferences, server-set fields...) is refused, not passed through."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    name: Subdomain | None = None
    generate_name: Annotated[str, AfterValidator(check_generate_name)] | None = Field(
        default=None, alias="generateName")
    namespace: Label | None = None
    annotations: Annotated[dict[AnnotationKey, str], Field(max_length=256)] = Field(
        default_factory=dict)
    labels: Annotated[dict[MetaKey, LabelText], Field(max_length=256)] = Field(
        default_factory=dict)


class RolloutManifest(BaseModel):
    """A Rollout as submitted: the same document `kubectl apply` takes."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    api_version: Literal["canaryd.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Rollout"]
    metadata: ObjectMeta
    spec: RolloutSpec
    status: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _named(self) -> RolloutManifest:
        if not self.metadata.name and not self.metadata.generate_name:
            raise ValueError("metadata.name or metadata.generateName is required")
        return self
