"""make_router picks one module per router kind and refuses a kind it has no router for; an
SMI or Linkerd-HTTPRoute rollout that names no analysis profile gets the `linkerd` one."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client

from canaryd.adapters.routers import RouterError, gateway, istio, make_router, smi
from canaryd.config import load_settings
from canaryd.core.model import RolloutSpec
from canaryd.core.plan import PlanError, resolve_analysis
from canaryd.core.routerspec import ROUTER_KINDS, Router
from canaryd.core.settings import parse_settings
from tests.routers.support import CONFIG

ROUTERS: dict[str, dict[str, Any]] = {
    "istio": {"virtualService": "podinfo", "stable": {"host": "podinfo", "subset": "stable"},
              "canary": {"host": "podinfo", "subset": "canary"}},
    "gatewayApi": {"httpRoute": "podinfo-gw", "stable": {"name": "podinfo-stable"},
                   "canary": {"name": "podinfo-canary"}},
    "linkerd": {"httpRoute": "podinfo-gw", "apiGroup": "policy.linkerd.io",
                "stable": {"name": "podinfo-stable"}, "canary": {"name": "podinfo-canary"}},
    "smi": {"trafficSplit": "podinfo-smi", "stable": "podinfo-stable",
            "canary": "podinfo-canary"},
}


def rollout(kind: str, analysis: dict[str, Any] | None = None) -> RolloutSpec:
    router = {"gatewayApi": ROUTERS[kind]} if kind == "linkerd" else {kind: ROUTERS[kind]}
    raw: dict[str, Any] = {
        "target": "podinfo", "version": "v2", "router": router,
        "workloads": {"stable": "podinfo-stable", "canary": "podinfo-canary"},
        "plan": {"steps": [{"weight": 10}]},
    }
    if analysis is not None:
        raw["analysis"] = analysis
    return RolloutSpec.model_validate(raw)


async def test_each_router_kind_gets_its_own_module() -> None:
    async with client.ApiClient() as api:
        vs = make_router(api, "demo", rollout("istio"))
        route = make_router(api, "demo", rollout("gatewayApi"))
        linkerd = make_router(api, "demo", rollout("linkerd"))
        split = make_router(api, "demo", rollout("smi"))
    assert isinstance(vs, istio.IstioRouter)
    assert isinstance(route, gateway.GatewayApiRouter)
    assert (route.group, route.version) == ("gateway.networking.k8s.io", "v1")
    assert isinstance(linkerd, gateway.GatewayApiRouter)
    assert (linkerd.group, linkerd.version) == ("policy.linkerd.io", "v1beta3")
    assert isinstance(split, smi.SmiRouter)


async def test_a_router_kind_without_a_router_is_refused_by_name() -> None:
    # Only a model built without validation can carry no kind at all.
    spec = rollout("smi").model_copy(update={"router": Router.model_construct()})
    async with client.ApiClient() as api:
        with pytest.raises(RouterError) as err:
            make_router(api, "demo", spec)
    assert str(err.value) == (
        f"spec.router: no router for an empty router (supported: {', '.join(ROUTER_KINDS)})"
    )
    assert {"istio", "gatewayApi", "smi"} <= set(ROUTER_KINDS)


def test_an_unknown_router_kind_is_a_validation_error() -> None:
    with pytest.raises(ValueError, match="selector"):
        RolloutSpec.model_validate({
            "target": "podinfo", "version": "v2",
            "router": {"selector": {"service": "podinfo"}},
            "workloads": {"stable": "a", "canary": "b"}, "plan": {"steps": [{"weight": 10}]},
        })


@pytest.mark.parametrize(
    ("kind", "analysis", "profile"),
    [
        ("smi", None, "linkerd"),
        ("linkerd", None, "linkerd"),
        ("smi", {"interval": "30s"}, "linkerd"),  # analysis given, profile still left unset
        ("gatewayApi", None, "default"),  # any Gateway API implementation: no telling
        ("istio", None, "default"),
        ("smi", {"profile": "default"}, "default"),  # a profile named is a profile used
        ("linkerd", {"profile": "sandbox-linkerd"}, "sandbox-linkerd"),
    ],
)
def test_a_linkerd_router_implies_the_linkerd_profile_when_none_is_named(
    kind: str, analysis: dict[str, Any] | None, profile: str
) -> None:
    settings = load_settings(CONFIG)
    assert resolve_analysis(settings, rollout(kind, analysis)).profile == profile


def test_implied_profile_thresholds_are_checked_against_that_profile() -> None:
    settings = load_settings(CONFIG)
    tighter = {"thresholds": {"linkerd-success-rate": {"min": 99.5}}}
    analysis = resolve_analysis(settings, rollout("smi", tighter))
    first = analysis.checks[0]
    assert (first.metric, first.min) == ("linkerd-success-rate", 99.5)
    with pytest.raises(PlanError, match="the profile 'linkerd' has no such check"):
        resolve_analysis(settings, rollout("smi", {"thresholds": {"istio-success-rate": {}}}))


def test_without_a_linkerd_profile_the_default_applies() -> None:
    checks = [{"metric": "istio-success-rate", "min": 99}]
    settings = parse_settings({"profiles": {"default": {"checks": checks}}})
    assert resolve_analysis(settings, rollout("smi")).profile == "default"
