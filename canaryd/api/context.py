"""What the handlers share: typed app/request keys, the change hub, and the role guard."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from canaryd.api.auth import Identity, Role, TokenSource
from canaryd.api.deps import ApiDeps
from canaryd.api.problems import Problem
from canaryd.api.transport import Guard, HttpLimits

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Hub:
    """Wakes the event-stream followers of a rollout when the watch-fed cache changes it.

    `notify` is the controller listener: synchronous and cheap (it only sets events); each
    follower then reads the cache itself and works out what is new.
    """

    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Event]] = {}
        # the last object the watch brought of each followed rollout: whole, where the
        # cache may keep a finished one's summary only
        self._latest: dict[str, dict[str, Any]] = {}
        self.closing = asyncio.Event()

    def notify(self, _kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        subs = self._subscribers.get(key)
        if not subs:
            return
        self._latest[key] = obj
        for event in subs:
            event.set()

    def latest(self, key: str) -> dict[str, Any] | None:
        """The whole object the watch last brought of a followed rollout, if any."""
        return self._latest.get(key)

    @contextlib.contextmanager
    def subscribe(self, key: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._subscribers.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            subs = self._subscribers.get(key)
            if subs is not None:
                subs.discard(event)
                if not subs:
                    del self._subscribers[key]
                    self._latest.pop(key, None)

    @property
    def followers(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    def close(self) -> None:
        self.closing.set()
        for subs in self._subscribers.values():
            for event in subs:
                event.set()


@dataclass
class ApiState:
    deps: ApiDeps
    tokens: TokenSource
    hub: Hub = field(default_factory=Hub)
    heartbeat: float = 15.0
    guard: Guard = field(default_factory=lambda: Guard(HttpLimits()))


STATE: web.AppKey[ApiState] = web.AppKey("canaryd_api", ApiState)
IDENTITY: web.RequestKey[Identity] = web.RequestKey("canaryd_identity", Identity)
BEARER = "bearer "


def authenticate(request: web.Request) -> Identity:
    tokens = request.app[STATE].tokens.table
    header = request.headers.get("Authorization", "")
    challenge = {"WWW-Authenticate": 'Bearer realm="canaryd"'}
    if len(tokens) == 0:
        raise Problem(401, "Unauthorized", "no API tokens are configured on this server",
                      headers=challenge)
    if not header.lower().startswith(BEARER):
        raise Problem(401, "Unauthorized", "send Authorization: Bearer <token>",
                      headers=challenge)
    identity = tokens.authenticate(header[len(BEARER):].strip())
    if identity is None:
        raise Problem(401, "Unauthorized", "unknown token",
                      headers={"WWW-Authenticate": 'Bearer realm="canaryd", '
                                                   'error="invalid_token"'})
    request[IDENTITY] = identity
    return identity


def require(request: web.Request, role: Role, why: str = "") -> Identity:
    identity = request.get(IDENTITY) or authenticate(request)
    if identity.role < role:
        raise Problem(403, "Forbidden",
                      f"{why or 'this call'} needs role {role.label}; token "
                      f"{identity.name!r} has role {identity.role.label}")
    return identity


def in_scope(request: web.Request, namespace: str) -> None:
    """403 unless the caller's token may act in `namespace`."""
    identity = request.get(IDENTITY) or authenticate(request)
    if not identity.may_act_in(namespace):
        raise Problem(403, "Forbidden",
                      f"token {identity.name!r} may act in namespaces "
                      f"{', '.join(sorted(identity.namespaces or ()))}, not {namespace!r}")


def requires(role: Role) -> Callable[[Handler], Handler]:
    """Decorate a handler: 401 without a valid token, 403 below `role`."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            require(request, role)
            return await handler(request)

        return guarded

    return decorate
