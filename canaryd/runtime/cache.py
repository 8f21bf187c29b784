"""The watch-fed Rollout cache every replica keeps, with each object's status read once.

A mapping of "namespace/name" to the object as last listed or watched. `read` gives the
object's status through `canaryd.core.reading` (never raises), computed once per
resourceVersion: the controller, the API's list filter and the phase gauge all share it.
`entry` is the object's part in target arbitration, likewise once per resourceVersion: every
reconcile round arbitrates over every cached rollout, finished ones included, and building
the entries (claims from the spec) was the round's largest cost with 2,000 finished rollouts
(bench/scale.py: 62 us per object per round).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from canaryd.core import reading, targets
from canaryd.core.reading import StatusRead


class RolloutCache(Mapping[str, dict[str, Any]]):
    def __init__(self) -> None:
        self._objects: dict[str, dict[str, Any]] = {}
        self._reads: dict[str, tuple[object, StatusRead]] = {}
        self._entries: dict[str, tuple[object, targets.Entry]] = {}

    def __getitem__(self, key: str) -> dict[str, Any]:
        return self._objects[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._objects)

    def __len__(self) -> int:
        return len(self._objects)

    def put(self, obj: dict[str, Any]) -> str:
        key = reading.key(obj)
        meta = obj.get("metadata")
        if isinstance(meta, dict) and "managedFields" in meta:
            # Nothing reads them (the API leaves them out of every answer), and they are a
            # sixth of a finished rollout's cached object (bench/scale.py).
            obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
        self._objects[key] = obj
        return key

    def drop(self, key: str) -> None:
        self._objects.pop(key, None)
        self._reads.pop(key, None)
        self._entries.pop(key, None)

    def read(self, obj: Mapping[str, Any]) -> StatusRead:
        """The status of `obj` (a cached object or a fresher copy of one)."""
        key = reading.key(obj)
        version = (obj.get("metadata") or {}).get("resourceVersion")
        memo = self._reads.get(key)
        if memo is not None and version is not None and memo[0] == version:
            return memo[1]
        read = reading.read_status(obj)
        if key in self._objects and version is not None:
            self._reads[key] = (version, read)
        return read

    def read_key(self, key: str) -> StatusRead | None:
        obj = self._objects.get(key)
        return self.read(obj) if obj is not None else None

    def entry(self, obj: Mapping[str, Any]) -> targets.Entry:
        """`reading.entry` of `obj`, remembered for a cached object's resourceVersion."""
        key = reading.key(obj)
        version = (obj.get("metadata") or {}).get("resourceVersion")
        memo = self._entries.get(key)
        if memo is not None and version is not None and memo[0] == version:
            return memo[1]
        made = reading.entry(obj, self.read(obj))
        if key in self._objects and version is not None:
            self._entries[key] = (version, made)
        return made
