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

from collections.abc import Iterable, Mapping
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


def _conflicts(active: list[Entry]) -> dict[str, dict[str, Claim]]:
    """For each entry, the other entries it shares a claim with (and one shared claim)."""
    by_object: dict[tuple[str, str, str], list[tuple[Entry, Claim]]] = {}
    for e in active:
        for c in sorted(e.all_claims):
            by_object.setdefault((e.namespace, c.kind, c.name), []).append((e, c))
    out: dict[str, dict[str, Claim]] = {e.key: {} for e in active}
    for holders in by_object.values():
        for i, (a, ca) in enumerate(holders):
            for b, cb in holders[i + 1:]:
                if a.key != b.key and ca.overlaps(cb):
                    for x, y, c in ((a, b, ca), (b, a, cb)):
                        known = out[x.key].get(y.key)
                        if known is None or (c.rank, c) < (known.rank, known):
                            out[x.key][y.key] = c
    return out


def arbitrate(entries: Iterable[Entry]) -> dict[str, Arbitration]:
    """Per non-terminal entry: whether an older rollout blocks it, it waits for one it
    supersedes, or a newer one supersedes it (see `Entry.order`)."""
    active = sorted((e for e in entries if e.active), key=lambda e: e.order)
    by_key = {e.key: e for e in active}
    conflicts = _conflicts(active)
    out: dict[str, Arbitration] = {}
    for e in active:
        others = sorted((by_key[k] for k in conflicts[e.key]), key=lambda o: o.order)
        older = [o for o in others if o.order < e.order]
        newer_superseder = next(
            (o for o in others
             if o.order > e.order and o.phase is Phase.PENDING and o.supersede), None)
        arb = Arbitration()
        if newer_superseder is not None:
            arb = Arbitration(superseded_by=newer_superseder.key,
                              shared=str(conflicts[e.key][newer_superseder.key]))
        if e.phase is Phase.PENDING and older:
            shared = str(conflicts[e.key][older[0].key])
            if e.supersede:
                arb = Arbitration(waiting_for=older[0].key, shared=shared)
            elif newer_superseder is None:
                arb = Arbitration(blocking=older[0].key, shared=shared)
        out[e.key] = arb
    return out
