"""Arbitration on what rollouts actually write (router object and part, Services,
Deployments), not only on the target name a client chooses."""

from __future__ import annotations

from typing import Any

from canaryd.core.model import Phase
from canaryd.core.targets import Claim, Entry, arbitrate, claims


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
