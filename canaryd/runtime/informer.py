"""The informer every replica runs: list the Rollouts, watch from the list's resourceVersion,
re-list after any error (410 Expired included); keep the cache; tell who listens.

`on_change(kind, obj, old)` is the controller's hook (what becomes due, what is forgotten);
`listeners` get every event after it (the API's change hub).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import structlog

from canaryd import aio
from canaryd.adapters.kube import RolloutStore
from canaryd.core import reading
from canaryd.runtime.cache import RolloutCache

log = structlog.get_logger("canaryd.informer")
Listener = Callable[[str, dict[str, Any]], None]
OnChange = Callable[[str, dict[str, Any], dict[str, Any] | None], None]


class Listable(Protocol):
    async def list(self) -> tuple[list[dict[str, Any]], str]: ...
    def watch(self, resource_version: str) -> AsyncIterator[tuple[str, dict[str, Any]]]: ...


async def list_and_watch(store: Listable, known: Mapping[str, dict[str, Any]],
                         apply: Callable[[str, dict[str, Any]], None], synced: asyncio.Event,
                         stop: asyncio.Event, what: str) -> None:
    """List, apply every object as ADDED and every `known` one the list lacks as DELETED,
    set `synced`, then watch from the list's resourceVersion; re-list after any error (410
    Expired included), backing off 0.2 s doubling to 5 s. Until `stop`."""
    backoff = 0.2
    while not stop.is_set():
        try:
            items, rv = await store.list()
            seen = set()
            for obj in items:
                seen.add(reading.key(obj))
                apply("ADDED", obj)
            for gone in set(known) - seen:
                apply("DELETED", known[gone])
            synced.set()
            backoff = 0.2
            while not stop.is_set():
                async for kind, obj in store.watch(rv):
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    if kind != "BOOKMARK":
                        apply(kind, obj)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure: back off, then re-list
            status = getattr(exc, "status", None)
            log.info(f"{what} watch restarting", error=type(exc).__name__, status=status)
            await aio.sleep_or_stop(stop, backoff)
            backoff = min(backoff * 2, 5.0)


class Informer:
    def __init__(self, store: RolloutStore, cache: RolloutCache, on_change: OnChange) -> None:
        self.store = store
        self.cache = cache
        self.on_change = on_change
        self.synced = asyncio.Event()
        self.listeners: list[Listener] = []

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        key = reading.key(obj)
        old = self.cache.get(key)
        if kind == "DELETED":
            self.cache.drop(key)
        else:
            self.cache.put(obj)
        self.on_change(kind, obj, old)
        for listener in self.listeners:
            listener(kind, obj)

    async def run(self, stop: asyncio.Event) -> None:
        await list_and_watch(self.store, self.cache, self.apply, self.synced, stop, "rollout")
