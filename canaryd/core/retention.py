"""Which finished Rollouts to delete: per target, all but the newest `keep` finished ones.

Pure. A rollout is only ever a candidate once it is finished as far as canaryd can tell: a
terminal phase read from a status canaryd could have written, with no hook call still out
(a postRollout or rollback hook keeps it live). An active rollout, and one whose status
canaryd cannot read (it may still hold traffic), is never deleted and never counted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Finished:
    """A rollout that could be deleted, and the preconditions its deletion carries."""

    namespace: str
    name: str
    target: str
    created: str  # metadata.creationTimestamp (RFC 3339, UTC: orders as text)
    uid: str
    resource_version: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def expired(finished: Iterable[Finished], keep: int) -> list[Finished]:
    """The finished rollouts beyond the newest `keep` of each target (namespace and
    spec.target), oldest first; `keep` 0 keeps everything."""
    if keep <= 0:
        return []
    by_target: dict[tuple[str, str], list[Finished]] = defaultdict(list)
    for f in finished:
        by_target[(f.namespace, f.target)].append(f)
    out: list[Finished] = []
    for group in by_target.values():
        group.sort(key=lambda f: (f.created, f.name), reverse=True)
        out.extend(group[keep:])
    out.sort(key=lambda f: (f.created, f.namespace, f.name))
    return out
