"""Watch streams: chunked HTTP 200 with one JSON event per line.

An event is translated per watcher: with selectors an object that starts matching
is sent as ADDED and one that stops matching as DELETED. A resourceVersion older
than the store's history answers 200 and then a single ERROR event carrying a 410
Expired Status, after which the stream ends, as kube-apiserver does. BOOKMARKs are
sent only when the watcher's queue is empty, so their resourceVersion never skips
an undelivered event.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from canaryd.sandbox.apiserver import tables
from canaryd.sandbox.apiserver.errors import ApiError, Obj
from canaryd.sandbox.apiserver.resources import ResourceDef
from canaryd.sandbox.apiserver.store import Event, Store

# kube-apiserver closes watches after --min-request-timeout (1800s) with jitter.
MAX_WATCH_SECONDS = 1800.0


@dataclass
class WatchRequest:
    rdef: ResourceDef
    version: str
    namespace: str | None
    matches: Callable[[Obj], bool]
    since: str | None
    initial_events: bool  # ADDED for what matches now (sendInitialEvents, or rv unset/0)
    timeout: float | None
    bookmarks: bool
    table: bool
    include_object: str


class _Encoder:
    """Turns stored objects into the wire form this watcher asked for."""

    def __init__(self, req: WatchRequest, store: Store) -> None:
        self.req = req
        self.store = store
        self.columns_sent = False

    def render(self, obj: Obj) -> Obj:
        r = self.req
        out = {"apiVersion": r.rdef.api_version(r.version), "kind": r.rdef.kind}
        out.update({k: v for k, v in obj.items() if k not in ("apiVersion", "kind")})
        if not r.table:
            return out
        tbl = tables.table(r.rdef, r.version, [out], resource_version=str(self.store.rv),
                           include_object=r.include_object, with_columns=not self.columns_sent)
        self.columns_sent = True
        return tbl

    def line(self, etype: str, obj: Obj) -> bytes:
        return (json.dumps({"type": etype, "object": self.render(obj)}) + "\n").encode()


def _translate(req: WatchRequest, event: Event) -> str | None:
    def ok(obj: Obj | None) -> bool:
        if obj is None:
            return False
        if req.namespace is not None and obj["metadata"].get("namespace") != req.namespace:
            return False
        return req.matches(obj)

    if event.type == "ADDED":
        return "ADDED" if ok(event.obj) else None
    if event.type == "DELETED":
        return "DELETED" if ok(event.obj) else None
    was, now = ok(event.old), ok(event.obj)
    if was and now:
        return "MODIFIED"
    if now:
        return "ADDED"
    if was:
        return "DELETED"
    return None


async def serve(request: web.Request, req: WatchRequest, *, store: Store,
                bookmark_interval: float) -> web.StreamResponse:
    enc = _Encoder(req, store)
    initial: list[bytes] = []
    if req.since in (None, "", "0") or req.initial_events:
        since = store.rv
    else:
        try:
            since = int(str(req.since))
        except ValueError as exc:
            raise ApiError(400, f'invalid resource version "{req.since}"') from exc
    if req.initial_events:
        for obj in store.objects(req.rdef.key, req.namespace):
            if req.matches(obj):
                initial.append(enc.line("ADDED", obj))
        if req.bookmarks:
            # The end of the initial state, as the watch cache marks it.
            mark = {"type": "BOOKMARK", "object": {
                "kind": req.rdef.kind, "apiVersion": req.rdef.api_version(req.version),
                "metadata": {"resourceVersion": str(since),
                             "annotations": {"k8s.io/initial-events-end": "true"}}}}
            initial.append((json.dumps(mark) + "\n").encode())
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    try:
        backlog, watcher = store.subscribe(req.rdef.key, since)
    except ApiError as exc:
        await resp.prepare(request)
        line = json.dumps({"type": "ERROR", "object": exc.status()}) + "\n"
        await resp.write(line.encode())
        await resp.write_eof()
        return resp
    try:
        await resp.prepare(request)
        for chunk in initial:
            await resp.write(chunk)
        for event in backlog:
            etype = _translate(req, event)
            if etype:
                await resp.write(enc.line(etype, event.obj))
        await _pump(resp, req, enc, watcher.queue, store, bookmark_interval)
        await resp.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        # Client went away, or the server is shutting down; either way the stream is done.
        pass
    finally:
        store.unsubscribe(watcher)
    return resp


async def _pump(resp: web.StreamResponse, req: WatchRequest, enc: _Encoder,
                queue: asyncio.Queue[Event | None], store: Store,
                bookmark_interval: float) -> None:
    deadline = time.monotonic() + min(req.timeout or MAX_WATCH_SECONDS, MAX_WATCH_SECONDS)
    next_bookmark = time.monotonic() + bookmark_interval
    while True:
        now = time.monotonic()
        if now >= deadline:
            return
        wait = deadline - now
        if req.bookmarks:
            wait = min(wait, max(next_bookmark - now, 0.0))
        try:
            # Take what is queued without waiting: wait_for(get(), 0) never runs get() and
            # times out, so a bookmark falling due with events queued would spin forever.
            event = queue.get_nowait() if not queue.empty() else (
                await asyncio.wait_for(queue.get(), timeout=wait))
        except TimeoutError:
            if req.bookmarks and time.monotonic() >= next_bookmark and queue.empty():
                mark = {"type": "BOOKMARK", "object": {
                    "kind": req.rdef.kind, "apiVersion": req.rdef.api_version(req.version),
                    "metadata": {"resourceVersion": str(store.rv)}}}
                await resp.write((json.dumps(mark) + "\n").encode())
                next_bookmark = time.monotonic() + bookmark_interval
            continue
        if event is None:
            return
        etype = _translate(req, event)
        if etype:
            await resp.write(enc.line(etype, event.obj))
