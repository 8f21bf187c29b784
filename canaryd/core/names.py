"""Validation of names that reach Kubernetes paths or PromQL.

Names are user input. They are checked here, at the boundary, and PromQL rendering escapes
them again anyway (see canaryd.core.promql): two independent defences.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
# The same patterns, in the form the CRD schema uses (no anchors needed there, but kept).
DNS1123_LABEL_PATTERN = DNS1123_LABEL.pattern
DNS1123_SUBDOMAIN_PATTERN = DNS1123_SUBDOMAIN.pattern


def check_label(value: str) -> str:
    if len(value) > 63 or not DNS1123_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a valid DNS-1123 label (lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters)"
        )
    return value


def check_subdomain(value: str) -> str:
    if len(value) > 253 or not DNS1123_SUBDOMAIN.match(value):
        raise ValueError(
            f"{value!r} is not a valid DNS-1123 subdomain (lower-case letters, digits, '-' "
            "and '.', at most 253 characters)"
        )
    return value


Label = Annotated[
    str,
    AfterValidator(check_label),
    WithJsonSchema({"type": "string", "maxLength": 63, "pattern": DNS1123_LABEL_PATTERN}),
]
Subdomain = Annotated[
    str,
    AfterValidator(check_subdomain),
    WithJsonSchema({"type": "string", "maxLength": 253, "pattern": DNS1123_SUBDOMAIN_PATTERN}),
]
