"""Kubernetes Status errors: every failure the emulator returns is one `ApiError`.

The tree is flat on purpose: handlers raise `ApiError` with the HTTP code, the
`reason` and a message worded like kube-apiserver's, and the server turns it into
a `Status` body (`kind: Status`, `status: Failure`, `reason`, `message`, `details`,
`code`). Clients key on `reason` and `code`, kubernetes_asyncio's watch reads both
`reason` and `message`, so both are always present.
"""

from __future__ import annotations

from typing import Any

# JSON documents are untyped trees by nature; this alias marks where that is the case.
Obj = dict[str, Any]

REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """A request the API server refuses; rendered as a Status object."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: Obj | None = None,
        headers: dict[str, str] | None = None,
        list_meta: Obj | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # reason="" leaves it out, as kube-apiserver does for some internal errors.
        self.reason = REASONS.get(code, "Unknown") if reason is None else reason
        self.details = details
        self.headers = headers or {}
        self.list_meta = list_meta or {}

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": dict(self.list_meta),
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        }
        if self.reason:
            body["reason"] = self.reason
        if self.details is not None:
            body["details"] = self.details
        return body


def qualified(plural: str, group: str) -> str:
    """`deployments.apps`, or bare `services` for the core group: how messages name a resource."""
    return f"{plural}.{group}" if group else plural


def details(name: str, group: str, kind: str, **extra: Any) -> Obj:
    """StatusDetails as Go marshals it: empty name and group are left out (omitempty)."""
    out: Obj = {}
    if name:
        out["name"] = name
    if group:
        out["group"] = group
    if kind:
        out["kind"] = kind
    out.update(extra)
    return out


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        f'{qualified(plural, group)} "{name}" not found',
        details=details(name, group, plural),
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        f'{qualified(plural, group)} "{name}" already exists',
        reason="AlreadyExists",
        details=details(name, group, plural),
    )


def conflict(plural: str, group: str, name: str, why: str | None = None) -> ApiError:
    tail = why or (
        "the object has been modified; please apply your changes to the latest version "
        "and try again"
    )
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {tail}',
        reason="Conflict",
        details=details(name, group, plural),
    )


def unknown_resource() -> ApiError:
    return ApiError(
        404,
        "the server could not find the requested resource",
        details={},
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def invalid(kind: str, group: str, name: str, causes: list[Obj]) -> ApiError:
    """422 Invalid with `causes`; message is `Kind.group "name" is invalid: <causes>`
    (errors.NewInvalid: the message lists each distinct cause once)."""
    qual = f"{kind}.{group}" if group else kind
    texts: list[str] = []
    for c in causes:
        text = f'{c["field"]}: {c["message"]}' if c.get("field") else str(c["message"])
        if text not in texts:
            texts.append(text)
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return ApiError(
        422,
        f'{qual} "{name}" is invalid: {joined}',
        details=details(name, group, kind, causes=causes),
    )


def cause(reason: str, field: str, message: str) -> Obj:
    """One `details.causes[]` entry. Call sites write `field: message` for readability;
    the cause itself carries the message without the field, as apimachinery does."""
    prefix = f"{field}: "
    if message.startswith(prefix):
        message = message[len(prefix):]
    return {"reason": reason, "message": message, "field": field}
