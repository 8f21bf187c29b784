"""One active rollout per shared object: who blocks whom, and who supersedes whom. Pure.

What two rollouts can fight over is not the name a client chooses (`spec.target`) but the
objects canaryd writes: the router object and the route or rule in it, the Services of a
blue-green switch, and the two Deployments. Each rollout *claims* those (plus its target,
the human name); at most one non-terminal rollout may hold any claim, whatever its target.

A claim names an object (kind and name, in the rollout's namespace) and optionally the part
of it that is written (`route:primary`, `rule:0`, `ruleName:api`). Two claims on the same
object overlap when either covers the whole object, when they name the same part, or when
they address parts differently (a rule by index and a rule by name may be the same rule).
An Istio rollout that names no route manages "the first one": which one that is depends on
the object, so it claims the whole VirtualService.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from canaryd.core.model import Phase

GATEWAY_GROUP = "gateway.networking.k8s.io"


@dataclass(frozen=True, order=True)
class Claim:
    kind: str  # "target", "VirtualService", "HTTPRoute.<group>", "TrafficSplit", ...
    name: str
    part: str | None = None  # "<how>:<which>"; None: the whole object

    @property
    def rank(self) -> int:
        """Which shared claim a message names first: the router, then workloads, then
        the target."""
        return {"Deployment": 1, "target": 2}.get(self.kind, 0)

    def overlaps(self, other: Claim) -> bool:
        if (self.kind, self.name) != (other.kind, other.name):
            return False
        if self.part is None or other.part is None or self.part == other.part:
            return True
        return self.part.partition(":")[0] != other.part.partition(":")[0]

    def __str__(self) -> str:
        if self.kind == "target":
            return f"target {self.name}"
        kind = self.kind.split(".", 1)[0]
        if self.part is None:
            return f"{kind} {self.name}"
        how, _, which = self.part.partition(":")
        return f"{kind} {self.name} {how} {which}"


@dataclass(frozen=True)
class Entry:
    namespace: str
    name: str
    target: str
    created: str  # RFC 3339 creationTimestamp; sorts chronologically
    phase: Phase | None  # None: a status canaryd cannot read (it keeps its claims)
    supersede: bool
    claims: frozenset[Claim] = field(default=frozenset())

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def order(self) -> tuple[bool, str, str]:
        """Older first. A rollout past Pending (acting on its objects) comes before every
        Pending one: creationTimestamp has one-second resolution, and a name must not
        decide that a newcomer is "older" than the rollout already holding the route."""
        return (self.phase is Phase.PENDING, self.created, self.name)

    @property
    def active(self) -> bool:
        return self.phase is None or not self.phase.terminal

    @property
    def all_claims(self) -> frozenset[Claim]:
        return self.claims | {Claim("target", self.target)}


@dataclass(frozen=True)
class Arbitration:
    blocking: str | None = None  # fail: another rollout holds something this one needs
    waiting_for: str | None = None  # supersede requested: wait until it has rolled back
    superseded_by: str | None = None  # roll back: a newer rollout asked to supersede this one
    shared: str | None = None  # what blocking / waiting_for / superseded_by holds too


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _section(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = parent.get(key)
    return value if isinstance(value, Mapping) else {}


def claims(spec: Mapping[str, Any]) -> frozenset[Claim]:
    """The objects a Rollout spec (as stored: camelCase) writes. Total: a malformed spec
    claims what it names readably (it fails validation anyway)."""
    out: set[Claim] = set()
    router = _section(spec, "router")
    istio = _section(router, "istio")
    if (vs := _text(istio.get("virtualService"))) is not None:
        route = _text(istio.get("route"))
        out.add(Claim("VirtualService", vs, f"route:{route}" if route else None))
    gateway = _section(router, "gatewayApi")
    if (http_route := _text(gateway.get("httpRoute"))) is not None:
        group = _text(gateway.get("apiGroup")) or GATEWAY_GROUP
        rule, rule_name = gateway.get("rule"), _text(gateway.get("ruleName"))
        if rule_name is not None:
            part = f"ruleName:{rule_name}"
        elif isinstance(rule, int) and not isinstance(rule, bool):
            part = f"rule:{rule}"
        else:
            part = "rule:0"  # the default is the first rule
        out.add(Claim(f"HTTPRoute.{group}", http_route, part))
    smi = _section(router, "smi")
    if (split := _text(smi.get("trafficSplit"))) is not None:
        out.add(Claim("TrafficSplit", split))
    service = _section(router, "service")
    for key in ("activeService", "previewService"):
        if (name := _text(service.get(key))) is not None:
            out.add(Claim("Service", name))
    workloads = _section(spec, "workloads")
    for key in ("stable", "canary"):
        if (name := _text(workloads.get(key))) is not None:
            out.add(Claim("Deployment", name))
    return frozenset(out)


class _Holders:
    """Who claims one object (or a part of it): positions in arbitration order, ascending.
    By part only once asked (most objects have one holder)."""

    __slots__ = ("_by_part", "claims", "every")

    def __init__(self) -> None:
        self.every: list[int] = []
        self.claims: list[Claim] = []
        self._by_part: tuple[list[int], dict[str, list[int]], dict[str, list[int]]] | None = None

    def add(self, position: int, claim: Claim) -> None:
        self.every.append(position)
        self.claims.append(claim)

    def overlapping(self, claim: Claim) -> list[list[int]]:
        """Lists whose holders all overlap `claim` and that together hold every one that
        does (`Claim.overlaps`, one object)."""
        if claim.part is None:
            return [self.every]
        if self._by_part is None:
            whole: list[int] = []  # the whole object
            part: dict[str, list[int]] = {}  # exactly this part
            how: dict[str, list[int]] = {}  # a part addressed this way ("route", "rule")
            for position, c in zip(self.every, self.claims, strict=True):
                if c.part is None:
                    whole.append(position)
                else:
                    part.setdefault(c.part, []).append(position)
                    how.setdefault(c.part.partition(":")[0], []).append(position)
            self._by_part = (whole, part, how)
        whole, part, how = self._by_part
        way = claim.part.partition(":")[0]
        return [whole, part.get(claim.part, []),
                *(held for other, held in how.items() if other != way)]


Index = dict[tuple[str, str, str], _Holders]


def _index(entries: list[Entry], claims: list[frozenset[Claim]],
           take: Callable[[Entry], bool]) -> Index:
    out: Index = {}
    for position, (e, held) in enumerate(zip(entries, claims, strict=True)):
        if take(e):
            for c in held:
                where = (e.namespace, c.kind, c.name)
                holders = out.get(where)
                if holders is None:
                    holders = out[where] = _Holders()
                holders.add(position, c)
    return out


def _shared(mine: frozenset[Claim], theirs: frozenset[Claim]) -> Claim:
    """The claim of mine that a message names for what we share (router first)."""
    return min((c for c in mine if any(c.overlaps(t) for t in theirs)),
               key=lambda c: (c.rank, c))


def arbitrate(entries: Iterable[Entry]) -> dict[str, Arbitration]:
    """Per non-terminal entry: whether an older rollout blocks it, it waits for one it
    supersedes, or a newer one supersedes it (see `Entry.order`).

    O(claims x log n): for each claim, only the oldest other holder and the first newer
    superseding one are looked up (per object, holders are kept in order), never every
    pair: a thousand rollouts on one route cost a thousand look-ups, not a million."""
    active = sorted((e for e in entries if e.active), key=lambda e: e.order)
    held = [e.all_claims for e in active]
    every = _index(active, held, lambda e: True)
    superseding = _index(active, held, lambda e: e.phase is Phase.PENDING and e.supersede)
    out: dict[str, Arbitration] = {}
    for position, e in enumerate(active):
        older: int | None = None  # the oldest other rollout sharing a claim, if older
        newer: int | None = None  # the first newer one sharing a claim that supersedes
        for c in held[position]:
            where = (e.namespace, c.kind, c.name)
            holders = every.get(where)
            alone = holders is None or len(holders.every) == 1  # only this rollout
            for listed in holders.overlapping(c) if holders is not None and not alone else ():
                first = next((p for p in listed if p != position), None)
                if first is not None and first < position and (older is None or first < older):
                    older = first
            holders = superseding.get(where)
            for listed in holders.overlapping(c) if holders is not None else ():
                i = bisect.bisect_right(listed, position)
                if i < len(listed) and (newer is None or listed[i] < newer):
                    newer = listed[i]
        arb = Arbitration()
        if newer is not None:
            arb = Arbitration(superseded_by=active[newer].key,
                              shared=str(_shared(held[position], held[newer])))
        if e.phase is Phase.PENDING and older is not None:
            shared = str(_shared(held[position], held[older]))
            if e.supersede:
                arb = Arbitration(waiting_for=active[older].key, shared=shared)
            elif newer is None:
                arb = Arbitration(blocking=active[older].key, shared=shared)
        out[e.key] = arb
    return out
