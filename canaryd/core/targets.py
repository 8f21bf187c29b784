"""One active rollout per target: who blocks whom, and who supersedes whom. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from canaryd.core.model import Phase


@dataclass(frozen=True)
class Entry:
    namespace: str
    name: str
    target: str
    created: str  # RFC 3339 creationTimestamp; sorts chronologically
    phase: Phase
    supersede: bool

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def order(self) -> tuple[str, str]:
        return (self.created, self.name)


@dataclass(frozen=True)
class Arbitration:
    blocking: str | None = None  # fail: another rollout owns the target
    waiting_for: str | None = None  # supersede requested: wait until it has rolled back
    superseded_by: str | None = None  # roll back: a newer rollout asked to supersede this one


def arbitrate(entries: Iterable[Entry]) -> dict[str, Arbitration]:
    groups: dict[tuple[str, str], list[Entry]] = {}
    for e in entries:
        if not e.phase.terminal:
            groups.setdefault((e.namespace, e.target), []).append(e)
    out: dict[str, Arbitration] = {}
    for members in groups.values():
        members.sort(key=lambda e: e.order)
        superseders = [e for e in members if e.phase is Phase.PENDING and e.supersede]
        for i, e in enumerate(members):
            older = members[:i]
            newer_superseder = next((s for s in superseders if s.order > e.order), None)
            arb = Arbitration(
                superseded_by=newer_superseder.key if newer_superseder else None,
            )
            if e.phase is Phase.PENDING and older:
                if e.supersede:
                    arb = Arbitration(waiting_for=older[0].key)
                elif newer_superseder is None:
                    arb = Arbitration(blocking=older[0].key)
            out[e.key] = arb
    return out
