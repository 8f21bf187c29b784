"""Routing of a plain `GET /` as Istio, Linkerd and kube-proxy would do it."""

from __future__ import annotations

from typing import Any

import pytest

from canaryd.sandbox.mesh import topology

from .objects import (
    NS,
    deployment,
    destination_rule,
    http_route,
    service,
    traffic_split,
    virtual_service,
)


def shares(routes: topology.ServiceRoutes) -> dict[str | None, float]:
    out: dict[str | None, float] = {}
    for flow in routes.flows:
        name = flow.workload.name if flow.workload else None
        out[name] = out.get(name, 0.0) + flow.share
    return out


def route(snap: topology.Snapshot, name: str = "web") -> topology.ServiceRoutes:
    return topology.compute_routes(snap)[(NS, name)]


PRIMARY = deployment("web-primary", {"app": "web", "version": "v1"}, available=3)
CANARY = deployment("web-canary", {"app": "web", "version": "v2"}, available=1)
WEB = service("web", {"app": "web"}, rps=100)


def vs_route(weights: dict[str, int], match: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "route": [
            {"destination": {"host": "web", "subset": subset}, "weight": w}
            for subset, w in weights.items()
        ]
    }
    if match is not None:
        entry["match"] = match
    return entry


SUBSETS = destination_rule(
    "web", "web.shop.svc.cluster.local", {"v1": {"version": "v1"}, "v2": {"version": "v2"}}
)


def test_services_without_rps_annotation_are_not_routed() -> None:
    snap = topology.Snapshot(services=(service("quiet", {"app": "web"}),), deployments=(PRIMARY,))
    assert topology.compute_routes(snap) == {}


def test_plain_selector_splits_by_available_replicas() -> None:
    snap = topology.Snapshot(services=(WEB,), deployments=(PRIMARY, CANARY))
    result = route(snap)
    assert result.via == "selector"
    assert shares(result) == pytest.approx({"web-primary": 0.75, "web-canary": 0.25})
    assert result.rps == 100


def test_unavailable_deployment_gets_nothing() -> None:
    down = deployment("web-canary", {"app": "web", "version": "v2"}, available=0)
    assert shares(route(topology.Snapshot(services=(WEB,), deployments=(PRIMARY, down)))) == {
        "web-primary": 1.0
    }


def test_nothing_available_fails_from_the_calling_side() -> None:
    down = deployment("web-primary", {"app": "web"}, available=0)
    result = route(topology.Snapshot(services=(WEB,), deployments=(down,)))
    assert shares(result) == {None: 1.0}


def test_deployments_in_other_namespaces_or_with_other_labels_do_not_match() -> None:
    elsewhere = deployment("web-x", {"app": "web"}, ns="other")
    other = deployment("api", {"app": "api"})
    result = route(topology.Snapshot(services=(WEB,), deployments=(PRIMARY, elsewhere, other)))
    assert shares(result) == {"web-primary": 1.0}


def test_virtual_service_weights_with_subsets() -> None:
    vs = virtual_service("web", ["web"], [vs_route({"v1": 80, "v2": 20})])
    snap = topology.Snapshot(
        services=(WEB,),
        deployments=(PRIMARY, CANARY),
        virtual_services=(vs,),
        destination_rules=(SUBSETS,),
    )
    result = route(snap)
    assert result.via == "virtualservice"
    assert shares(result) == pytest.approx({"web-primary": 0.8, "web-canary": 0.2})


@pytest.mark.parametrize("host", ["web", "web.shop", "web.shop.svc", "web.shop.svc.cluster.local"])
def test_virtual_service_host_forms_all_name_the_service(host: str) -> None:
    vs = virtual_service("web", [host], [vs_route({"v2": 100})])
    snap = topology.Snapshot(
        services=(WEB,),
        deployments=(PRIMARY, CANARY),
        virtual_services=(vs,),
        destination_rules=(SUBSETS,),
    )
    assert shares(route(snap)) == {"web-canary": 1.0}


def test_header_match_is_skipped_for_the_next_http_route() -> None:
    header_only = vs_route({"v2": 100}, match=[{"headers": {"x-canary": {"exact": "1"}}}])
    api_only = vs_route({"v2": 100}, match=[{"uri": {"prefix": "/api"}}])
    default = vs_route({"v1": 90, "v2": 10}, match=[{"uri": {"prefix": "/"}}])
    vs = virtual_service("web", ["web"], [header_only, api_only, default])
    snap = topology.Snapshot(
        services=(WEB,),
        deployments=(PRIMARY, CANARY),
        virtual_services=(vs,),
        destination_rules=(SUBSETS,),
    )
    assert shares(route(snap)) == pytest.approx({"web-primary": 0.9, "web-canary": 0.1})


def test_single_destination_without_weight_takes_everything_and_zero_takes_nothing() -> None:
    http = [{"route": [{"destination": {"host": "web", "subset": "v1"}}]}]
    snap = topology.Snapshot(
        services=(WEB,),
        deployments=(PRIMARY, CANARY),
        virtual_services=(virtual_service("web", ["web"], http),),
        destination_rules=(SUBSETS,),
    )
    assert shares(route(snap)) == {"web-primary": 1.0}
    zero = virtual_service("web", ["web"], [vs_route({"v1": 100, "v2": 0})])
    snap = topology.Snapshot(
        services=(WEB,),
        deployments=(PRIMARY, CANARY),
        virtual_services=(zero,),
        destination_rules=(SUBSETS,),
    )
    # Weight 0 takes nothing; it stays as a zero-share flow so its series exist at 0.
    assert shares(route(snap)) == {"web-primary": 1.0, "web-canary": 0.0}


def test_virtual_service_routing_to_separate_services() -> None:
    primary_svc = service("web-primary", {"app": "web", "version": "v1"})
    canary_svc = service("web-canary", {"app": "web", "version": "v2"})
    http = [
        {
            "route": [
                {"destination": {"host": "web-primary"}, "weight": 70},
                {"destination": {"host": "web-canary.shop.svc.cluster.local"}, "weight": 30},
            ]
        }
    ]
    snap = topology.Snapshot(
        services=(WEB, primary_svc, canary_svc),
        deployments=(PRIMARY, CANARY),
        virtual_services=(virtual_service("web", ["web"], http),),
    )
    result = route(snap)
    assert shares(result) == pytest.approx({"web-primary": 0.7, "web-canary": 0.3})
    dests = {
        f.workload.name: f.destination.name for f in result.flows if f.workload and f.destination
    }
    assert dests == {"web-primary": "web-primary", "web-canary": "web-canary"}


def test_unknown_subset_fails_its_share() -> None:
    vs = virtual_service("web", ["web"], [vs_route({"v1": 50, "v9": 50})])
    snap = topology.Snapshot(
        services=(WEB,),
        deployments=(PRIMARY, CANARY),
        virtual_services=(vs,),
        destination_rules=(SUBSETS,),
    )
    assert shares(route(snap)) == pytest.approx({"web-primary": 0.5, None: 0.5})


def test_http_route_backend_refs_split_by_weight() -> None:
    primary_svc = service("web-primary", {"app": "web", "version": "v1"})
    canary_svc = service("web-canary", {"app": "web", "version": "v2"})
    rules = [
        {
            "matches": [{"headers": [{"name": "x-canary", "value": "1"}]}],
            "backendRefs": [{"name": "web-canary", "port": 80}],
        },
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [
                {"name": "web-primary", "port": 80, "weight": 60},
                {"name": "web-canary", "port": 80, "weight": 40},
            ],
        },
    ]
    for group in ("gateway.networking.k8s.io", "policy.linkerd.io"):
        snap = topology.Snapshot(
            services=(WEB, primary_svc, canary_svc),
            deployments=(PRIMARY, CANARY),
            http_routes=(http_route("web", "web", rules, group=group),),
        )
        result = route(snap)
        assert result.via == "httproute"
        assert shares(result) == pytest.approx({"web-primary": 0.6, "web-canary": 0.4})


def test_http_route_weight_defaults_to_one() -> None:
    primary_svc = service("web-primary", {"app": "web", "version": "v1"})
    canary_svc = service("web-canary", {"app": "web", "version": "v2"})
    rules = [{"backendRefs": [{"name": "web-primary"}, {"name": "web-canary"}]}]
    snap = topology.Snapshot(
        services=(WEB, primary_svc, canary_svc),
        deployments=(PRIMARY, CANARY),
        http_routes=(http_route("web", "web", rules),),
    )
    assert shares(route(snap)) == pytest.approx({"web-primary": 0.5, "web-canary": 0.5})


def test_traffic_split_backends() -> None:
    primary_svc = service("web-primary", {"app": "web", "version": "v1"})
    canary_svc = service("web-canary", {"app": "web", "version": "v2"})
    snap = topology.Snapshot(
        services=(WEB, primary_svc, canary_svc),
        deployments=(PRIMARY, CANARY),
        traffic_splits=(traffic_split("web", "web", {"web-primary": 95, "web-canary": 5}),),
    )
    result = route(snap)
    assert result.via == "trafficsplit"
    assert shares(result) == pytest.approx({"web-primary": 0.95, "web-canary": 0.05})


def test_virtual_service_wins_over_http_route_and_traffic_split() -> None:
    primary_svc = service("web-primary", {"app": "web", "version": "v1"})
    canary_svc = service("web-canary", {"app": "web", "version": "v2"})
    snap = topology.Snapshot(
        services=(WEB, primary_svc, canary_svc),
        deployments=(PRIMARY, CANARY),
        virtual_services=(virtual_service("web", ["web"], [vs_route({"v1": 100})]),),
        destination_rules=(SUBSETS,),
        http_routes=(http_route("web", "web", [{"backendRefs": [{"name": "web-canary"}]}]),),
        traffic_splits=(traffic_split("web", "web", {"web-canary": 1}),),
    )
    assert route(snap).via == "virtualservice"
    assert shares(route(snap)) == {"web-primary": 1.0}


def test_workload_knobs_come_from_deployment_annotations() -> None:
    canary = deployment(
        "web-canary",
        {"app": "web", "version": "v2"},
        annotations={
            "sandbox.canaryd.io/error-ratio": "0.05",
            "sandbox.canaryd.io/latency-p50-ms": "30",
            "sandbox.canaryd.io/latency-p99-ms": "300",
        },
    )
    (flow,) = route(topology.Snapshot(services=(WEB,), deployments=(canary,))).flows
    assert flow.workload is not None
    assert (flow.workload.error_ratio, flow.workload.p50_ms, flow.workload.p99_ms) == (
        0.05,
        30,
        300,
    )
    assert flow.workload.label("app") == "web"
    assert flow.workload.label("version") == "v2"


def test_resolve_host_forms() -> None:
    assert topology.resolve_host("web", "shop") == ("shop", "web")
    assert topology.resolve_host("web.other", "shop") == ("other", "web")
    assert topology.resolve_host("web.other.svc.cluster.local", "shop") == ("other", "web")
    assert topology.resolve_host("example.com.au", "shop") is None
