"""GET /api/v1/rollouts/{namespace}/{name}/events: server-sent events until the verdict.

The stream is rebuilt from the rollout's status (`canaryd.api.stream`), so any replica can
serve it and a reconnecting client (`Last-Event-ID`) misses nothing. The handler waits on
the hub, which the controller's watch wakes; a comment line every `heartbeat` seconds keeps
proxies from timing the connection out and finds clients that went away.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from canaryd import aio
from canaryd.api import problems, stream
from canaryd.api.auth import Role
from canaryd.api.context import IDENTITY, STATE, requires
from canaryd.api.problems import Problem
from canaryd.api.rollouts import lookup, path_names

RETRY_MS = 2000


def _resume_from(request: web.Request) -> stream.Position | None:
    text = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
    try:
        return stream.parse_id(text)
    except ValueError:
        raise problems.bad_parameter(
            "Last-Event-ID", "an event id from this stream, like 12, 12.3 or 12.final"
        ) from None


@requires(Role.READ)
async def events(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    ns, name = path_names(request)
    last = _resume_from(request)
    key = f"{ns}/{name}"
    with state.guard.stream(request[IDENTITY].name), state.hub.subscribe(key) as changed:
        obj = await lookup(request, ns, name)
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        })
        await response.prepare(request)
        try:
            await _follow(response, request, key, obj, last, changed)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away: nothing left to send
    return response


def _version(obj: dict[str, Any]) -> object:
    return (obj.get("metadata") or {}).get("resourceVersion")


async def _follow(
    response: web.StreamResponse, request: web.Request, key: str, obj: dict[str, Any],
    last: stream.Position | None, changed: asyncio.Event,
) -> None:
    state = request.app[STATE]
    await response.write(f"retry: {RETRY_MS}\n\n".encode())
    await response.write(stream.snapshot(obj).encode())
    seen_in_cache = False
    while not state.hub.closing.is_set():
        changed.clear()
        cached = state.deps.cache.get(key)
        if cached is not None and not state.deps.cache.whole(key):
            # A finished rollout's summary: the stream is rebuilt from the whole object.
            seen_in_cache = True
            if _version(cached) != _version(obj):
                latest = state.hub.latest(key)
                if latest is not None and _version(latest) == _version(cached):
                    obj = latest
                else:
                    try:
                        obj = await lookup(request, *key.split("/", 1))
                    except Problem as exc:  # the answer has started: end it, the client
                        # reconnects with its Last-Event-ID
                        await response.write(f": {exc.detail[:300]}\n\n".encode())
                        return
        elif cached is not None:
            obj, seen_in_cache = cached, True
        elif seen_in_cache:
            await response.write(stream.Event("deleted", {"rollout": key}).encode())
            return
        sent_verdict = False
        for event in stream.events_after(obj, last):
            await response.write(event.encode())
            sent_verdict = sent_verdict or event.kind == "verdict"
            if event.position is not None:
                last = event.position
        if state.deps.cache.read(obj).terminal:
            # Finished: what was left has been sent. The verdict ends the stream, even for
            # a Last-Event-ID past it (nothing else would ever close that one).
            final = stream.verdict(obj)
            if not sent_verdict and last != final.position:
                await response.write(final.encode())
            return
        if not await aio.wait_set(changed, state.heartbeat):
            await response.write(b": keep-alive\n\n")
