"""The leader's retention of finished Rollouts: per target, the newest
`controller.keepFinished` finished ones are kept, older ones deleted, oldest first
(`canaryd.core.retention` picks them).

It runs in the leader's reconcile rounds, only when something may have changed: at the
start, and after the informer saw a rollout finish or a new one arrive. Each deletion
carries the uid and resourceVersion it was chosen from, so a rollout changed since (by a
client, or by a replica that leads now) is left alone; a round deletes at most
`PER_ROUND`, the rest follow in the next rounds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import structlog

from canaryd.adapters.errors import Conflict, KubeError, NotFound
from canaryd.adapters.kube import ObjectRef, RolloutStore
from canaryd.core.hooks import pending as hooks_pending
from canaryd.core.retention import Finished, expired
from canaryd.runtime.cache import RolloutCache

log = structlog.get_logger("canaryd.retention")
PER_ROUND = 20


def finished(objects: Iterable[dict[str, Any]], cache: RolloutCache) -> list[Finished]:
    """The cached rollouts that are finished as far as canaryd can tell."""
    out = []
    for obj in objects:
        read = cache.read(obj)
        if not read.terminal or read.status is None or hooks_pending(read.status):
            continue
        meta, spec = obj.get("metadata") or {}, obj.get("spec")
        target = spec.get("target") if isinstance(spec, dict) else None
        if not isinstance(target, str) or not meta.get("uid"):
            continue
        out.append(Finished(
            namespace=str(meta.get("namespace", "")), name=str(meta.get("name", "")),
            target=target, created=str(meta.get("creationTimestamp", "")),
            uid=str(meta["uid"]), resource_version=str(meta.get("resourceVersion", ""))))
    return out


class Retention:
    def __init__(self, *, store: RolloutStore, cache: RolloutCache,
                 keep: Callable[[], int], may_write: Callable[[str], bool]) -> None:
        self.store, self.cache = store, cache
        self.keep, self.may_write = keep, may_write
        self.due = True
        self.deleted = 0
        self._kept: int | None = None

    def changed(self, kind: str, obj: dict[str, Any]) -> None:
        """The informer's news: a new rollout, or one that has finished, may push an older
        one of its target out."""
        if kind == "ADDED" or (kind == "MODIFIED" and self.cache.read(obj).terminal):
            self.due = True

    async def sweep(self) -> int:
        """Delete what is past the limit (at most PER_ROUND now); how many were deleted."""
        keep = self.keep()
        if keep != self._kept:  # a reloaded setting: the limit applies at once
            self._kept, self.due = keep, True
        if not self.due:
            return 0
        # Sharded: only those of this replica's shards (the rest are their owners' to
        # delete; `due` is set again when a shard is taken).
        candidates = [f for f in expired(finished(self.cache.values(), self.cache), keep)
                      if self.may_write(f.key)]
        self.due = len(candidates) > PER_ROUND
        count = 0
        for f in candidates[:PER_ROUND]:
            if not self.may_write(f.key):
                self.due = True
                break
            try:
                await self.store.delete(ObjectRef(f.namespace, f.name), uid=f.uid,
                                        resource_version=f.resource_version)
            except NotFound:
                continue
            except Conflict:  # changed since it was read: looked at again when it is seen
                self.due = True
                continue
            except KubeError as exc:
                log.warning("retention delete failed", rollout=f.key,
                            error=f"{type(exc).__name__}: {exc}"[:300])
                self.due = True
                continue
            count += 1
            log.info("finished rollout deleted (retention)", rollout=f.key, target=f.target,
                     created=f.created, keep_finished=keep)
        self.deleted += count
        return count
