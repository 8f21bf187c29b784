"""Arbitration on what rollouts actually write (router object and part, Services,
Deployments), not only on the target name a client chooses."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canaryd.core.model import Phase
from canaryd.core.targets import Arbitration, Claim, Entry, arbitrate, claims


def istio(vs: str = "podinfo", route: str | None = "primary", *, stable: str = "s",
          canary: str = "c") -> dict[str, Any]:
    router: dict[str, Any] = {"virtualService": vs}
    if route is not None:
        router["route"] = route
    return {"router": {"istio": router}, "workloads": {"stable": stable, "canary": canary}}


def gateway(rule: int | None = None, rule_name: str | None = None,
            group: str | None = None, **workloads: str) -> dict[str, Any]:
    router: dict[str, Any] = {"httpRoute": "web"}
    if rule is not None:
        router["rule"] = rule
    if rule_name is not None:
        router["ruleName"] = rule_name
    if group is not None:
        router["apiGroup"] = group
    return {"router": {"gatewayApi": router}, "workloads": workloads}


def entry(name: str, spec: dict[str, Any], *, target: str | None = None,
          phase: Phase | None = Phase.PENDING, created: str = "2026-01-01T00:00:00Z",
          namespace: str = "demo", supersede: bool = False) -> Entry:
    return Entry(namespace=namespace, name=name, target=target or f"t-{name}",
                 created=created, phase=phase, supersede=supersede, claims=claims(spec))


def blocked(*entries: Entry) -> dict[str, str | None]:
    return {k: a.blocking for k, a in arbitrate(entries).items()}


def test_claims_name_the_router_part_and_both_deployments() -> None:
    assert claims(istio()) == {Claim("VirtualService", "podinfo", "route:primary"),
                               Claim("Deployment", "s"), Claim("Deployment", "c")}
    assert Claim("HTTPRoute.gateway.networking.k8s.io", "web", "rule:0") in claims(gateway())
    assert Claim("HTTPRoute.policy.linkerd.io", "web", "rule:0") in claims(
        gateway(group="policy.linkerd.io"))
    bg = {"router": {"service": {"activeService": "shop", "previewService": "shop-preview"}}}
    assert claims(bg) == {Claim("Service", "shop"), Claim("Service", "shop-preview")}
    # Garbage is read as far as it is readable, never raised on.
    assert claims({"router": {"istio": {"virtualService": 7}}, "workloads": []}) == frozenset()


def test_another_target_on_the_same_route_is_blocked_by_the_acting_rollout() -> None:
    owner = entry("zz-owner", istio(stable="a", canary="b"), phase=Phase.PROGRESSING,
                  created="2026-01-01T00:00:05Z")
    # Same second and a name that sorts first: the acting rollout is still the older one.
    alias = entry("aa-alias", istio(stable="x", canary="y"), created="2026-01-01T00:00:05Z")
    result = arbitrate([owner, alias])
    assert result["demo/aa-alias"].blocking == "demo/zz-owner"
    assert result["demo/aa-alias"].shared == "VirtualService podinfo route primary"
    assert result["demo/zz-owner"].blocking is None


def test_which_parts_of_one_object_overlap() -> None:
    acting = Phase.PROGRESSING
    # Different named routes of one VirtualService are independent...
    assert blocked(entry("a", istio(route="one", stable="1", canary="2"), phase=acting),
                   entry("b", istio(route="two", stable="3", canary="4")))["demo/b"] is None
    # ...but "the first route" (no name) may be any of them.
    assert blocked(entry("a", istio(route="one", stable="1", canary="2"), phase=acting),
                   entry("b", istio(route=None, stable="3", canary="4")))["demo/b"] == "demo/a"
    # A rule by index and a rule by name may be the same rule; the default is rule 0.
    assert blocked(entry("a", gateway(rule=1, stable="1", canary="2"), phase=acting),
                   entry("b", gateway(rule_name="api", stable="3", canary="4"))
                   )["demo/b"] == "demo/a"
    assert blocked(entry("a", gateway(stable="1", canary="2"), phase=acting),
                   entry("b", gateway(rule=0, stable="3", canary="4")))["demo/b"] == "demo/a"
    assert blocked(entry("a", gateway(stable="1", canary="2"), phase=acting),
                   entry("b", gateway(rule=1, stable="3", canary="4")))["demo/b"] is None
    # Same name, other API group: another object.
    assert blocked(entry("a", gateway(stable="1", canary="2"), phase=acting),
                   entry("b", gateway(group="policy.linkerd.io", stable="3", canary="4"))
                   )["demo/b"] is None


def test_a_shared_deployment_blocks_and_other_namespaces_or_finished_rollouts_do_not() -> None:
    acting = Phase.PROGRESSING
    result = arbitrate([entry("a", istio("vs-a", stable="s", canary="c"), phase=acting),
                        entry("b", istio("vs-b", stable="c", canary="d"))])
    assert result["demo/b"].blocking == "demo/a" and result["demo/b"].shared == "Deployment c"
    assert blocked(entry("a", istio(), phase=acting),
                   entry("b", istio(), namespace="other"))["other/b"] is None
    assert blocked(entry("a", istio(), phase=Phase.SUCCEEDED),
                   entry("b", istio()))["demo/b"] is None
    # A status canaryd cannot read may still hold traffic: it keeps its claims.
    assert blocked(entry("a", istio(), phase=None), entry("b", istio()))["demo/b"] == "demo/a"
    # The target stays a claim of its own.
    assert blocked(entry("a", istio("vs-a", stable="1", canary="2"), target="t", phase=acting),
                   entry("b", istio("vs-b", stable="3", canary="4"), target="t")
                   )["demo/b"] == "demo/a"


def test_supersede_takes_over_whatever_is_shared() -> None:
    old = entry("old", istio(stable="a", canary="b"), phase=Phase.PROGRESSING)
    new = entry("new", istio(stable="x", canary="y"), created="2026-01-01T00:00:09Z",
                supersede=True)
    result = arbitrate([old, new])
    assert result["demo/old"].superseded_by == "demo/new"
    assert result["demo/new"].waiting_for == "demo/old"
    assert result["demo/new"].blocking is None


# ------------------------------------------------------------------ against every pair


def every_pair(entries: list[Entry]) -> dict[str, Arbitration]:
    """The rule as first written, comparing every pair of claims: the reference."""
    active = sorted((e for e in entries if e.active), key=lambda e: e.order)
    shared: dict[str, dict[str, Claim]] = {e.key: {} for e in active}
    for a in active:
        for b in active:
            for ca in a.all_claims:
                if a.key != b.key and a.namespace == b.namespace and any(
                        ca.overlaps(cb) for cb in b.all_claims):
                    known = shared[a.key].get(b.key)
                    if known is None or (ca.rank, ca) < (known.rank, known):
                        shared[a.key][b.key] = ca
    out = {}
    for e in active:
        others = sorted((o for o in active if o.key in shared[e.key]), key=lambda o: o.order)
        older = [o for o in others if o.order < e.order]
        newer = next((o for o in others if o.order > e.order and o.phase is Phase.PENDING
                      and o.supersede), None)
        arb = Arbitration()
        if newer is not None:
            arb = Arbitration(superseded_by=newer.key, shared=str(shared[e.key][newer.key]))
        if e.phase is Phase.PENDING and older:
            why = str(shared[e.key][older[0].key])
            if e.supersede:
                arb = Arbitration(waiting_for=older[0].key, shared=why)
            elif newer is None:
                arb = Arbitration(blocking=older[0].key, shared=why)
        out[e.key] = arb
    return out


# Per object, the ways a rollout can claim it (claims() makes at most one claim per object).
OBJECTS = [
    [Claim("VirtualService", "vs"), Claim("VirtualService", "vs", "route:a"),
     Claim("VirtualService", "vs", "route:b")],
    [Claim("HTTPRoute.g", "web", "rule:0"), Claim("HTTPRoute.g", "web", "rule:1"),
     Claim("HTTPRoute.g", "web", "ruleName:x"), Claim("HTTPRoute.g", "web")],
    [Claim("Deployment", "d1")], [Claim("Deployment", "d2")], [Claim("Service", "s")],
]


@st.composite
def crowds(draw: st.DrawFn) -> list[Entry]:
    names = draw(st.lists(st.sampled_from([f"r{i}" for i in range(12)]), unique=True,
                          max_size=12))
    return [Entry(namespace=draw(st.sampled_from(["a", "b"])), name=name,
                  target=draw(st.sampled_from(["t1", "t2", "t3", f"own-{name}"])),
                  created=draw(st.sampled_from([f"2026-01-01T00:00:0{i}Z" for i in range(3)])),
                  phase=draw(st.sampled_from([None, *Phase])), supersede=draw(st.booleans()),
                  claims=frozenset(draw(st.sampled_from(ways))
                                   for ways in OBJECTS if draw(st.booleans())))
            for name in names]


@settings(max_examples=200, deadline=None, database=None)
@given(crowds())
def test_arbitration_decides_as_comparing_every_pair_would(entries: list[Entry]) -> None:
    assert arbitrate(entries) == every_pair(entries)


def crowd(size: int) -> list[Entry]:
    """`size` rollouts on one route, half of them unreadable (they keep their claims)."""
    return [entry(f"r{i:04d}", istio(stable=f"s{i}", canary=f"c{i}"),
                  created=f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
                  phase=None if i % 2 else Phase.PENDING, supersede=i % 7 == 0)
            for i in range(size)]


def test_a_crowd_on_one_route_is_decided_as_every_pair_would() -> None:
    entries = crowd(120)
    assert arbitrate(entries) == every_pair(entries)


def test_a_thousand_rollouts_on_one_route_cost_look_ups_not_pairs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unreadable statuses stay active, and any client may create Rollouts: 1,000 on one
    VirtualService took 47 s of the event loop per controller round (every pair)."""
    entries = crowd(1000)
    calls = 0
    overlaps = Claim.overlaps

    def counted(self: Claim, other: Claim) -> bool:
        nonlocal calls
        calls += 1
        return overlaps(self, other)

    monkeypatch.setattr(Claim, "overlaps", counted)
    result = arbitrate(entries)
    assert calls < 50 * len(entries), calls  # every pair: over 500,000
    assert len(result) == 1000
    assert result["demo/r0000"].waiting_for == "demo/r0001"  # past Pending sorts first
