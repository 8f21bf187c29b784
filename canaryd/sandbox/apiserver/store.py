"""The object store: one global resourceVersion, bounded watch history, watchers.

Objects are plain JSON dicts kept in their storage version and never mutated once
stored (every write stores a fresh copy), so events in the history can share them.
The store knows nothing about HTTP; `writes.py` holds the create/update/delete rules
and calls `put`/`remove` here, which assign the resourceVersion and emit the event.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass, field

from canaryd.sandbox.apiserver.errors import ApiError, Obj

Key = tuple[str, str]  # (namespace or "", name)


def etcd_key(key: Key) -> str:
    return f"{key[0]}/{key[1]}" if key[0] else key[1]


@dataclass(frozen=True)
class Event:
    rv: int
    type: str  # ADDED, MODIFIED or DELETED
    resource: str  # ResourceDef.key
    obj: Obj
    old: Obj | None = None


@dataclass(eq=False)
class Watcher:
    resource: str
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)

    def close(self) -> None:
        self.queue.put_nowait(None)


class Store:
    def __init__(self, *, history_limit: int = 5000) -> None:
        self.rv = 0
        # Watches may resume from any resourceVersion >= this one.
        self.oldest_rv = 0
        self._objects: dict[str, dict[Key, Obj]] = collections.defaultdict(dict)
        self._history: collections.deque[Event] = collections.deque()
        self._history_limit = history_limit
        self._watchers: set[Watcher] = set()
        self._listeners: list[Callable[[Event], None]] = []

    # reads -------------------------------------------------------------------------------
    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        return self._objects[resource].get((namespace, name))

    def objects(self, resource: str, namespace: str | None = None) -> list[Obj]:
        """In etcd's order: by the key `<namespace>/<name>` (so `ns-x/a` before `ns/a`)."""
        items = self._objects[resource]
        keys = sorted((k for k in items if namespace is None or k[0] == namespace), key=etcd_key)
        return [items[k] for k in keys]

    def snapshot(self, resource: str, rv: int, namespace: str | None = None) -> list[Obj] | None:
        """The objects as they were at resourceVersion `rv`, rebuilt by undoing the history
        after it; None once compaction has dropped what that needs."""
        if rv < self.oldest_rv:
            return None
        state = dict(self._objects[resource])
        for event in reversed(self._history):
            if event.rv <= rv:
                break
            if event.resource != resource:
                continue
            meta = event.obj["metadata"]
            k = (meta.get("namespace", ""), meta["name"])
            if event.type == "ADDED":
                state.pop(k, None)
            elif event.old is not None:
                state[k] = event.old
        keys = sorted((k for k in state if namespace is None or k[0] == namespace), key=etcd_key)
        return [state[k] for k in keys]

    def namespaces_in_use(self, resource: str) -> set[str]:
        return {k[0] for k in self._objects[resource]}

    # writes ------------------------------------------------------------------------------
    def put(self, resource: str, obj: Obj, *, created: bool, old: Obj | None = None) -> Obj:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        meta = obj["metadata"]
        self._objects[resource][(meta.get("namespace", ""), meta["name"])] = obj
        self._emit(Event(self.rv, "ADDED" if created else "MODIFIED", resource, obj, old))
        return obj

    def remove(self, resource: str, namespace: str, name: str) -> Obj:
        old = self._objects[resource].pop((namespace, name))
        self.rv += 1
        last = {**old, "metadata": {**old["metadata"], "resourceVersion": str(self.rv)}}
        self._emit(Event(self.rv, "DELETED", resource, last, old))
        return last

    def drop_resource(self, resource: str) -> None:
        """Delete every object of a resource (its CRD went away) and end its watches."""
        for ns, name in sorted(self._objects[resource]):
            self.remove(resource, ns, name)
        for w in [w for w in self._watchers if w.resource == resource]:
            w.close()

    def _emit(self, event: Event) -> None:
        self._history.append(event)
        while len(self._history) > self._history_limit:
            self.oldest_rv = self._history.popleft().rv
        for w in self._watchers:
            if w.resource == event.resource:
                w.queue.put_nowait(event)
        for listener in list(self._listeners):
            listener(event)

    # watch -------------------------------------------------------------------------------
    def subscribe(self, resource: str, since: int) -> tuple[list[Event], Watcher]:
        """Events after `since` plus a live feed; 410 Expired if history no longer has them."""
        if since < self.oldest_rv:
            raise ApiError(
                410, f"too old resource version: {since} ({self.oldest_rv})", reason="Expired"
            )
        backlog = [e for e in self._history if e.rv > since and e.resource == resource]
        watcher = Watcher(resource)
        self._watchers.add(watcher)
        return backlog, watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def drop_watches(self) -> int:
        count = len(self._watchers)
        for w in self._watchers:
            w.close()
        return count

    def compact(self) -> None:
        self._history.clear()
        self.oldest_rv = self.rv

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        self._listeners.append(listener)
