"""The watch-fed Rollout cache every replica keeps, with each object's status read once.

A mapping of "namespace/name" to the object as last listed or watched. `read` gives the
object's status through `canaryd.core.reading` (never raises), computed once per
resourceVersion: the controller, the API's list filter and the phase gauge all share it.
`entry` is the object's part in target arbitration, likewise once per resourceVersion: every
reconcile round arbitrates over every cached rollout, finished ones included, and building
the entries (claims from the spec) was the round's largest cost with 2,000 finished rollouts
(bench/scale.py: 62 us per object per round).

A finished rollout is kept as its summary (`canaryd.core.summary`; `whole(key)` is False):
136 KiB of Python objects whole (20 checks), 4.7 KiB as a summary (bench/cache_memory.py).
It is kept whole while canaryd can still act on it: a status it cannot read, a hook call
still out, or whatever `keep_whole` says (the notifier: a notice not sent yet). The watch
delivers whole objects, so one that leaves its terminal phase (a client's patch) is whole
again at once. Whoever needs the whole of a summarised rollout (the API's GET, its event
stream) reads it from Kubernetes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from canaryd.core import reading, summary, targets
from canaryd.core.hooks import pending as hooks_pending
from canaryd.core.model import Phase, RolloutStatus
from canaryd.core.reading import StatusRead

KeepWhole = Callable[[Mapping[str, Any], StatusRead], bool]
PHASE_ONLY = {p.value: StatusRead(RolloutStatus(phase=p)) for p in Phase if p.terminal}


class RolloutCache(Mapping[str, dict[str, Any]]):
    def __init__(self, keep_whole: KeepWhole | None = None) -> None:
        self._objects: dict[str, dict[str, Any]] = {}
        self._reads: dict[str, tuple[object, StatusRead]] = {}
        self._entries: dict[str, tuple[object, targets.Entry]] = {}
        self._summarised: dict[str, int] = {}  # key -> `puts` when it was summarised
        self.puts = 0  # objects put so far (the one being put is number `puts`)
        self._last: tuple[Mapping[str, Any], StatusRead] | None = None
        self.keep_whole: KeepWhole = keep_whole or (lambda _obj, _read: False)

    def __getitem__(self, key: str) -> dict[str, Any]:
        return self._objects[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._objects)

    def __len__(self) -> int:
        return len(self._objects)

    def whole(self, key: str) -> bool:
        """False when `key` is cached as a finished rollout's summary."""
        return key not in self._summarised

    def summarised_at(self, key: str) -> int | None:
        """When (`puts`) `key` was cached as a summary; None when it is whole."""
        return self._summarised.get(key)

    def summarised(self) -> int:
        return len(self._summarised)

    def put(self, obj: dict[str, Any]) -> str:
        key = reading.key(obj)
        try:
            self._put(key, obj)
        finally:
            self.puts += 1
        return key

    def _put(self, key: str, obj: dict[str, Any]) -> None:
        self._last = None
        if summary.summarisable(obj):
            read = reading.read_status(obj)
            # The informer's listeners read the object just put: its whole read, once.
            self._last = (obj, read)
            if (read.status is not None and not hooks_pending(read.status)
                    and not self.keep_whole(obj, read)):
                self._objects[key] = summary.summary(obj)
                self._summarised[key] = self.puts
                # Memos of the whole object at this resourceVersion would keep its parsed
                # status: read again from the summary.
                self._reads.pop(key, None)
                self._entries.pop(key, None)
                return
        meta = obj.get("metadata")
        if isinstance(meta, dict) and "managedFields" in meta:
            # Nothing reads them (the API leaves them out of every answer), and they are a
            # sixth of a finished rollout's cached object (bench/scale.py).
            obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
        self._objects[key] = obj
        self._summarised.pop(key, None)

    def drop(self, key: str) -> None:
        self._objects.pop(key, None)
        self._reads.pop(key, None)
        self._entries.pop(key, None)
        self._summarised.pop(key, None)

    def _remembers(self, key: str, obj: Mapping[str, Any]) -> bool:
        """Whether a read of `obj` is kept: the cached object's, or a copy of the same
        version of a whole one (a summary's memo must not hold a whole object's status)."""
        cached = self._objects.get(key)
        if cached is None:
            return False
        return cached is obj or key not in self._summarised

    def read(self, obj: Mapping[str, Any]) -> StatusRead:
        """The status of `obj` (a cached object or a fresher copy of one).

        Of a summary: its phase only (one shared read per terminal phase; parsed, a
        summary's status would be 6.5 KiB of the 13 it takes). What else a summary holds
        (notified, sequence, release) is in its dict, `reading.read_status` parses it."""
        key = reading.key(obj)
        if key in self._summarised and self._objects.get(key) is obj:
            return PHASE_ONLY[obj["status"]["phase"]]
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if self._last is not None and self._last[0] is obj:
            return self._last[1]
        remember = self._remembers(key, obj)
        memo = self._reads.get(key)
        if remember and memo is not None and version is not None and memo[0] == version:
            return memo[1]
        read = reading.read_status(obj)
        if remember and version is not None:
            self._reads[key] = (version, read)
        return read

    def read_key(self, key: str) -> StatusRead | None:
        obj = self._objects.get(key)
        return self.read(obj) if obj is not None else None

    def entry(self, obj: Mapping[str, Any]) -> targets.Entry:
        """`reading.entry` of `obj`, remembered for a cached object's resourceVersion."""
        key = reading.key(obj)
        version = (obj.get("metadata") or {}).get("resourceVersion")
        remember = self._remembers(key, obj)
        memo = self._entries.get(key)
        if remember and memo is not None and version is not None and memo[0] == version:
            return memo[1]
        made = reading.entry(obj, self.read(obj))
        if remember and version is not None:
            self._entries[key] = (version, made)
        return made
