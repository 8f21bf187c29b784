"""Kubernetes API failures, classified once: NotFound, Conflict, Invalid, Forbidden, Unavailable.

`kube_call` (and `translated`, for calls that must not be retried) raise these in place of
kubernetes_asyncio's ApiException and the network errors beneath it, with what the API
server's Status said: its reason, message, the object's kind and name, and the field causes
of a refusal. Routers, the Rollout store, the leader election, the controller and the HTTP
API catch the kind they mean instead of comparing status codes. Each is still an
ApiException (same `status`, `reason`, `body`, `headers`), so nothing that catches one
misses it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

T = TypeVar("T")
NETWORK_ERRORS = (OSError, TimeoutError, aiohttp.ClientError)


@dataclass(frozen=True)
class Cause:
    """One field the API server refused, as its Status details give it."""

    field: str
    message: str
    reason: str = ""


class KubeError(ApiException):
    """A Kubernetes API call that failed, after any retries. `what` names the call."""

    def __init__(
        self, what: str, *, status: int, reason: str, message: str = "",
        name: str | None = None, kind: str | None = None, causes: tuple[Cause, ...] = (),
        body: Any = None, headers: Any = None,
    ) -> None:
        super().__init__(status=status, reason=reason)
        self.body, self.headers = body, headers
        self.what, self.message = what, message
        self.name, self.kind, self.causes = name, kind, causes

    def __str__(self) -> str:
        code = f" {self.status}" if self.status else ""
        detail = f": {self.message}" if self.message else ""
        return f"{self.what}:{code} {self.reason}{detail}"


class NotFound(KubeError):
    """404. Without `name` in the Status, the resource type itself is not served (a CRD
    that is not installed), not just the object."""

    @property
    def resource_missing(self) -> bool:
        return not self.name


class Conflict(KubeError):
    """409: the object changed since it was read (a fenced write lost), or already exists."""

    @property
    def already_exists(self) -> bool:
        return self.reason == "AlreadyExists"


class Invalid(KubeError):
    """400 / 422 and other refusals of the request itself; `causes` names the fields."""


class Forbidden(KubeError):
    """401 / 403: canaryd's credentials may not do this."""


class Unavailable(KubeError):
    """429, 5xx, a timeout or a network error (status 0): worth trying again later."""


def _status_body(text: Any) -> dict[str, Any]:
    try:
        body = json.loads(text or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _kind(status: int) -> type[KubeError]:
    if status == 404:
        return NotFound
    if status == 409:
        return Conflict
    if status in (401, 403):
        return Forbidden
    if status == 429 or status >= 500 or status == 0:
        return Unavailable
    return Invalid if 400 <= status < 500 else Unavailable


def classify(exc: BaseException, what: str) -> KubeError:
    """The KubeError for an ApiException or a network error raised by call `what`."""
    if isinstance(exc, KubeError):
        return exc
    if not isinstance(exc, ApiException):
        return Unavailable(what, status=0, reason=type(exc).__name__, message=str(exc)[:300])
    status = int(exc.status or 0)
    body = _status_body(exc.body)
    found = body.get("details")
    details: dict[str, Any] = found if isinstance(found, dict) else {}
    listed = details.get("causes")
    raw_causes: list[Any] = listed if isinstance(listed, list) else []
    causes = tuple(
        Cause(field=str(c.get("field", "")), message=str(c.get("message", ""))[:300],
              reason=str(c.get("reason", "")))
        for c in raw_causes if isinstance(c, dict)
    )
    return _kind(status)(
        what, status=status, reason=str(body.get("reason") or exc.reason or ""),
        message=str(body.get("message") or "")[:500],
        name=str(details["name"]) if details.get("name") else None,
        kind=str(details["kind"]) if details.get("kind") else None,
        causes=causes, body=exc.body, headers=exc.headers,
    )


def from_status(status: Mapping[str, Any], what: str) -> KubeError:
    """A Status object, as a watch's ERROR event carries it (410 Expired: re-list)."""
    exc = ApiException(status=int(status.get("code") or 500),
                       reason=str(status.get("reason") or "watch error"))
    exc.body = json.dumps(dict(status)).encode()
    return classify(exc, what)


async def translated(what: str, call: Awaitable[T]) -> T:
    """Await one API call (no retries), raising its failure as a KubeError."""
    try:
        return await call
    except (ApiException, *NETWORK_ERRORS) as exc:
        raise classify(exc, what) from exc
