"""GET /api/v1/events: the rollout list as server-sent events (the dashboard's list page).

Every change the watch-fed cache reports (the informer's listeners) is numbered by `Feed`,
which keeps the last `KEEP` of them: a stream's event ids are `<epoch>-<n>`, the epoch being
this server process's. A connection first sends the list the caller may see (`reset`, one
`added` per rollout, `synced` with the position it was read at), then one event per change
(`added`, `modified`, `deleted`); a reconnect with `Last-Event-ID` of this epoch, still within
the kept changes, gets only the rows changed since (then `synced`). Anything else (another
replica, a restart, too old) is re-listed, starting with `reset` (whose empty `id:` clears
the client's last id).

Rows are the fields a list shows, not whole objects (a status write per analysis run would
otherwise resend every rollout's history): a change that leaves them as they were sends
nothing. Filters (`namespace`, `target`, `phase`) and the token's namespaces decide what is
in view: a rollout that leaves it is `deleted`, one that enters it `added`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import Gauge

from canaryd import aio
from canaryd.api import problems
from canaryd.api.auth import Identity, Role
from canaryd.api.context import IDENTITY, STATE, in_scope, requires
from canaryd.api.deps import RolloutView
from canaryd.core.model import Phase
from canaryd.core.names import check_label

PATH = "/api/v1/events"
KEEP = 10_000  # changes kept for resuming (a few minutes of a busy cluster)
RETRY_MS = 2000
META_KEYS = ("namespace", "name", "creationTimestamp", "resourceVersion", "uid")
SPEC_KEYS = ("target", "version")
STATUS_KEYS = ("phase", "weights", "stepIndex", "stepCount", "stepProgress", "reason",
               "phaseStartedAt")
_ID = re.compile(r"^([0-9a-f]{8})-([0-9]{1,15})$")


class Feed:
    """Numbers every change of the cache and keeps the last `keep` (position, key)."""

    def __init__(self, keep: int = KEEP) -> None:
        self.epoch = secrets.token_hex(4)
        self.position = 0
        self._log: deque[tuple[int, str]] = deque(maxlen=keep)
        self._waiters: set[asyncio.Event] = set()
        self.closing = asyncio.Event()

    def notify(self, _kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        self.position += 1
        self._log.append((self.position, f"{meta.get('namespace')}/{meta.get('name')}"))
        for waiter in self._waiters:
            waiter.set()

    def since(self, after: int) -> list[tuple[int, str]] | None:
        """Each key changed after `after` once, at its last change, in order; None when the
        kept changes no longer reach back that far (or `after` is not one of ours)."""
        oldest = self._log[0][0] if self._log else self.position + 1
        if after > self.position or after < oldest - 1:
            return None
        latest: dict[str, int] = {}
        for position, key in reversed(self._log):
            if position <= after:
                break
            latest.setdefault(key, position)
        return sorted(((p, k) for k, p in latest.items()))

    def format_id(self, position: int) -> str:
        return f"{self.epoch}-{position}"

    @contextlib.contextmanager
    def waiting(self) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._waiters.add(event)
        try:
            yield event
        finally:
            self._waiters.discard(event)

    @property
    def followers(self) -> int:
        return len(self._waiters)

    def close(self) -> None:
        self.closing.set()
        for waiter in self._waiters:
            waiter.set()


FEED: web.AppKey[Feed] = web.AppKey("canaryd_list_feed", Feed)


@dataclass(frozen=True)
class View:
    """What one stream shows: the token's namespaces and the query's filters."""

    identity: Identity
    namespace: str | None
    target: str | None
    phase: str | None

    def row(self, cache: RolloutView, key: str) -> dict[str, Any] | None:
        """The row of `key` in this view, or None when it is not (or no longer) in it."""
        obj = cache.get(key)
        if obj is None:
            return None
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
        assert isinstance(spec, dict) and isinstance(status, dict)
        ns = str(meta.get("namespace"))
        label = cache.read(obj).label
        if (not self.identity.may_act_in(ns) or self.namespace not in (None, ns)
                or self.target not in (None, spec.get("target"))
                or self.phase not in (None, label)):
            return None
        return {"rollout": key, "phase": label,
                "metadata": {k: meta[k] for k in META_KEYS if k in meta},
                "spec": {k: spec[k] for k in SPEC_KEYS if k in spec},
                "status": {k: status[k] for k in STATUS_KEYS if k in status}}


def _shown(row: dict[str, Any]) -> Any:
    """A row without its resourceVersion: what decides whether a change is sent."""
    return {**row, "metadata": {k: v for k, v in row["metadata"].items()
                                if k != "resourceVersion"}}


def _event(kind: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    head = "" if event_id is None else f"id: {event_id}\n"
    return (f"{head}event: {kind}\ndata: "
            + json.dumps(data, separators=(",", ":")) + "\n\n").encode()


def _deleted(key: str, why: str) -> dict[str, Any]:
    ns, _, name = key.partition("/")
    return {"rollout": key, "namespace": ns, "name": name, "why": why}


def _label(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if not value:
        return None
    try:
        return check_label(value)
    except ValueError as exc:
        raise problems.bad_parameter(name, str(exc)) from None


def _view(request: web.Request) -> View:
    namespace = _label(request, "namespace")
    if namespace is not None:
        in_scope(request, namespace)
    phase = request.query.get("phase") or None
    phases = [p.value for p in Phase] + ["Unknown"]
    if phase is not None and phase not in phases:
        raise problems.bad_parameter("phase", "one of " + ", ".join(phases))
    return View(request[IDENTITY], namespace, _label(request, "target"), phase)


def _resume_from(request: web.Request, feed: Feed) -> tuple[int | None, str]:
    """The position to resume after, or None with why a re-list is needed."""
    text = (request.headers.get("Last-Event-ID") or request.query.get("lastEventId") or "")
    if not text.strip():
        return None, "initial"
    match = _ID.match(text.strip())
    if match is None:
        raise problems.bad_parameter("Last-Event-ID",
                                     "an id from this stream, like 3fa9c2d1-1234")
    if match.group(1) != feed.epoch:
        return None, "another server process issued that id"
    return int(match.group(2)), ""


@requires(Role.READ)
async def events(request: web.Request) -> web.StreamResponse:
    state, feed = request.app[STATE], request.app[FEED]
    view = _view(request)
    after, why = _resume_from(request, feed)
    if not state.deps.synced.is_set():
        raise problems.unavailable("the rollout cache is not synced yet")
    with state.guard.stream(view.identity.name), feed.waiting() as changed:
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no"})
        await response.prepare(request)
        try:
            await response.write(f"retry: {RETRY_MS}\n\n".encode())
            await _follow(response, request, view, feed, changed, after, why)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
    return response


async def _follow(response: web.StreamResponse, request: web.Request, view: View, feed: Feed,
                  changed: asyncio.Event, after: int | None, why: str) -> None:
    state = request.app[STATE]
    cache = state.deps.cache
    held: dict[str, dict[str, Any]] = {}
    position = 0
    changes = feed.since(after) if after is not None else None
    if after is not None and changes is None:
        why = "the changes since that id are no longer kept"
    sent = -1  # the position of the last id sent
    while not (feed.closing.is_set() or state.hub.closing.is_set()):
        changed.clear()
        out: list[bytes] = []
        if changes is None:  # (re-)list: everything in view, read at one position
            position, held = feed.position, {}
            out.append(_event("reset", {"reason": why}, ""))
            for key in sorted(cache):
                if (row := view.row(cache, key)) is not None:
                    held[key] = row
                    out.append(_event("added", row))
            out.append(_event("synced", {"count": len(held), "resumed": False},
                              feed.format_id(position)))
            sent = position
        else:
            for at, key in changes:
                row = view.row(cache, key)
                before = held.pop(key, None)
                if row is not None:
                    held[key] = row
                    if before is None or _shown(before) != _shown(row):
                        kind = "modified" if before is not None or after is not None else "added"
                        out.append(_event(kind, row, feed.format_id(at)))
                        sent = at
                elif before is not None or after is not None:
                    gone = "deleted" if key not in cache else "left the view"
                    out.append(_event("deleted", _deleted(key, gone), feed.format_id(at)))
                    sent = at
                position = at
            if after is not None:  # the replay of a resumed stream is over
                held = {k: r for k in sorted(cache) if (r := view.row(cache, k)) is not None}
                position = feed.position
                out.append(_event("synced", {"count": len(held), "resumed": True},
                                  feed.format_id(position)))
                sent = position
        after = None
        for chunk in out:
            await response.write(chunk)
        changes = feed.since(position)
        if changes:
            continue
        if changes is None:
            why = "this stream fell behind the changes kept"
            continue
        if not await aio.wait_set(changed, state.heartbeat):
            if sent != position:  # changes none of which was in view: say where we are
                await response.write(_event("bookmark", {}, feed.format_id(position)))
                sent = position
            else:
                await response.write(b": keep-alive\n\n")
        changes = feed.since(position)
        if changes is None:
            why = "this stream fell behind the changes kept"


async def _listen(app: web.Application) -> AsyncIterator[None]:
    feed, listeners = app[FEED], app[STATE].deps.listeners
    listeners.append(feed.notify)
    yield
    feed.close()
    if feed.notify in listeners:
        listeners.remove(feed.notify)


async def _closing(app: web.Application) -> None:
    app[FEED].close()


def add_routes(app: web.Application) -> None:
    app[FEED] = feed = Feed()
    Gauge("canaryd_api_list_streams", "Open rollout-list event streams",
          registry=app[STATE].deps.registry).set_function(lambda: float(feed.followers))
    app.cleanup_ctx.append(_listen)
    app.on_shutdown.append(_closing)
    app.router.add_get(PATH, events)
