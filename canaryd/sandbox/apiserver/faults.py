"""Fault injection and the request audit log.

`Faults` holds the knobs tests turn (fail the next N matching requests, add
latency, drop watches) and is consulted by the server before a resource request is
handled. `RequestRecord` is one audited API request, kept so tests can check which
verbs on which resources canaryd really needs (RBAC least privilege).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from canaryd.sandbox.apiserver.errors import ApiError, Obj

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")


@dataclass(frozen=True)
class RequestRecord:
    verb: str
    api_group: str
    resource: str
    subresource: str
    namespace: str
    name: str
    status: int
    method: str = ""
    path: str = ""

    def to_json(self) -> Obj:
        return asdict(self)


@dataclass
class _Failure:
    remaining: int
    status: int
    verb: str | None
    resource: str | None
    retry_after: int | None
    subresource: str | None = None  # None: any; "": the object itself
    name: str | None = None


@dataclass
class _Latency:
    seconds: float
    verb: str | None
    resource: str | None


def _matches(want_verb: str | None, want_res: str | None, verb: str, resource: str) -> bool:
    return (want_verb is None or want_verb == verb) and (
        want_res is None or want_res == resource
    )


@dataclass
class Faults:
    _failures: list[_Failure] = field(default_factory=list)
    _latencies: list[_Latency] = field(default_factory=list)
    # Wired by the server to Store.drop_watches.
    _dropper: Callable[[], int] = field(default=lambda: 0)

    def fail_next(self, count: int, status: int, *, verb: str | None = None,
                  resource: str | None = None, retry_after: int | None = None,
                  subresource: str | None = None, name: str | None = None) -> None:
        """Fail the next `count` matching requests (None matches anything; subresource ""
        only requests on the object itself, not on its status or scale)."""
        if verb is not None and verb not in VERBS:
            raise ValueError(f"unknown verb {verb!r}; expected one of {VERBS}")
        self._failures.append(_Failure(count, status, verb, resource, retry_after,
                                       subresource, name))

    def stop_failing(self, *, verb: str | None = None, resource: str | None = None,
                     subresource: str | None = None, name: str | None = None) -> int:
        """Forget the failures injected for exactly this verb, resource, subresource and
        name; how many there were."""
        key = (verb, resource, subresource, name)
        kept = [f for f in self._failures if (f.verb, f.resource, f.subresource, f.name) != key]
        dropped = len(self._failures) - len(kept)
        self._failures[:] = kept
        return dropped

    def set_latency(self, seconds: float, *, verb: str | None = None,
                    resource: str | None = None) -> None:
        self._latencies = [
            lat for lat in self._latencies if (lat.verb, lat.resource) != (verb, resource)
        ]
        if seconds > 0:
            self._latencies.append(_Latency(seconds, verb, resource))

    def drop_watches(self) -> int:
        return self._dropper()

    def clear(self) -> None:
        self._failures.clear()
        self._latencies.clear()

    def latency_for(self, verb: str, resource: str) -> float:
        return sum(
            lat.seconds for lat in self._latencies
            if _matches(lat.verb, lat.resource, verb, resource)
        )

    def failure_for(self, verb: str, resource: str, subresource: str = "",
                    name: str = "") -> ApiError | None:
        """Consume one matching injected failure, if any."""
        for f in self._failures:
            if (f.remaining > 0 and _matches(f.verb, f.resource, verb, resource)
                    and f.subresource in (None, subresource) and f.name in (None, name)):
                f.remaining -= 1
                if f.remaining == 0:
                    self._failures.remove(f)
                headers = {"Retry-After": str(f.retry_after)} if f.retry_after is not None else {}
                details: Obj = {}
                if f.retry_after is not None:
                    details["retryAfterSeconds"] = f.retry_after
                return ApiError(f.status, f"injected fault: {f.status} on {verb} {resource}",
                                details=details, headers=headers)
        return None
