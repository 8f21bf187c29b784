"""Errors as RFC 9457 `application/problem+json`, and pydantic errors as JSON pointers.

Handlers raise `Problem`; the error middleware in `canaryd.api.app` renders it. Every field
error names the offending member with a JSON pointer (RFC 6901) into the request document,
so a pipeline log says exactly which line of the manifest to fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import ValidationError

CONTENT_TYPE = "application/problem+json"
MAX_LISTED = 50  # field errors listed in one response; `errorsOmitted` counts the rest
_PREFIX = re.compile(r"^(Value error|Assertion failed), ")
_PLAN_PATH = re.compile(r"^(spec(?:\.[A-Za-z0-9_-]+)+): (.*)$", re.DOTALL)


@dataclass(frozen=True)
class FieldError:
    """One bad member of the request: a body `pointer`, or a query/header `parameter`."""

    detail: str
    pointer: str | None = None
    parameter: str | None = None

    def wire(self) -> dict[str, str]:
        out = {"detail": self.detail}
        if self.pointer is not None:
            out["pointer"] = self.pointer
        if self.parameter is not None:
            out["parameter"] = self.parameter
        return out


@dataclass
class Problem(Exception):
    status: int
    title: str
    detail: str = ""
    errors: Sequence[FieldError] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail}"

    def body(self, instance: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail or self.title,
            "instance": instance,
        }
        if self.errors:
            # A fixed number, whatever the request holds: 20,000 unknown keys must not make
            # a response larger than the request.
            out["errors"] = [e.wire() for e in self.errors[:MAX_LISTED]]
            if len(self.errors) > MAX_LISTED:
                out["errorsOmitted"] = len(self.errors) - MAX_LISTED
        out.update(self.extra)
        return out

    def response(self, instance: str) -> web.Response:
        return web.Response(
            status=self.status,
            body=json.dumps(self.body(instance)).encode(),
            content_type=CONTENT_TYPE,
            headers=dict(self.headers),
        )


def escape(token: str | int) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def pointer(parts: Iterable[str | int]) -> str:
    """A JSON pointer; the empty string points at the whole document."""
    return "".join("/" + escape(p) for p in parts)


def message(msg: str) -> str:
    return _PREFIX.sub("", msg)


def from_validation(exc: ValidationError, *, prefix: Sequence[str | int] = ()) -> list[FieldError]:
    """Every error pydantic found, located by pointer (loc uses the wire names: camelCase)."""
    out = []
    for err in exc.errors(include_url=False):
        # pydantic marks a bad mapping key with a "[key]" step: point at the member itself.
        loc = [p for p in err["loc"] if p != "[key]"]
        out.append(FieldError(detail=message(err["msg"]), pointer=pointer([*prefix, *loc])))
    return out


def from_plan_error(text: str) -> FieldError:
    """`canaryd.core.plan.PlanError` messages start with a dotted path: make it a pointer."""
    match = _PLAN_PATH.match(text)
    if match is None:
        return FieldError(detail=text, pointer="/spec")
    return FieldError(detail=match.group(2), pointer=pointer(match.group(1).split(".")))


def from_dotted(path: str) -> str:
    """A Kubernetes field path (`spec.plan.steps[0].weight`) as a JSON pointer."""
    parts: list[str | int] = []
    for piece in path.split("."):
        name, *indexes = re.split(r"\[(\d+)\]", piece)
        if name:
            parts.append(name)
        parts.extend(int(i) for i in indexes if i)
    return pointer(parts)


def invalid(errors: Sequence[FieldError], detail: str = "") -> Problem:
    count = len(errors)
    return Problem(
        422, "Invalid rollout",
        detail or f"{count} invalid field{'s' if count != 1 else ''}; nothing was created",
        errors=errors,
    )


def bad_parameter(name: str, detail: str) -> Problem:
    return Problem(400, "Bad request", f"{name}: {detail}",
                   errors=[FieldError(detail=detail, parameter=name)])


def not_found(namespace: str, name: str) -> Problem:
    return Problem(404, "Not found", f"no rollout {namespace}/{name}")


def unavailable(detail: str, retry_after: int = 2) -> Problem:
    return Problem(503, "Service unavailable", detail,
                   headers={"Retry-After": str(retry_after)})
