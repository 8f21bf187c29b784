"""The example application's HTTPRoute and TrafficSplit: each on its own apex Service, all
traffic on stable to begin with, and the example Rollouts name objects that exist."""

from __future__ import annotations

from typing import Any

import yaml
from kubernetes_asyncio import client

from canaryd.adapters.routers import make_router
from canaryd.core.manifest import RolloutManifest
from canaryd.core.model import Weights
from canaryd.sandbox import example_app
from canaryd.sandbox.mesh import topology
from tests.routers.support import EXAMPLES

RPS = "sandbox.canaryd.io/rps"


def objects() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in example_app.load_manifests()}


def test_each_router_has_its_own_apex_service_with_traffic() -> None:
    objs = objects()
    apex = {name for (kind, name), d in objs.items()
            if kind == "Service" and d["spec"]["selector"] == {"app": "podinfo"}}
    assert apex == {"podinfo", "podinfo-gw", "podinfo-smi"}
    assert all(RPS in objs[("Service", name)]["metadata"]["annotations"] for name in apex)
    route = objs[("HTTPRoute", "podinfo-gw")]
    [parent] = route["spec"]["parentRefs"]
    assert (parent["group"], parent["kind"], parent["name"]) == ("core", "Service", "podinfo-gw")
    assert objs[("TrafficSplit", "podinfo-smi")]["spec"]["service"] == "podinfo-smi"


def test_the_new_routes_start_with_all_traffic_on_stable() -> None:
    objs = objects()
    [rule] = objs[("HTTPRoute", "podinfo-gw")]["spec"]["rules"]
    assert [(r["name"], r["weight"]) for r in rule["backendRefs"]] == [
        ("podinfo-stable", 100), ("podinfo-canary", 0)
    ]
    backends = objs[("TrafficSplit", "podinfo-smi")]["spec"]["backends"]
    assert [(b["service"], b["weight"]) for b in backends] == [
        ("podinfo-stable", 100), ("podinfo-canary", 0)
    ]


def test_the_mesh_routes_each_apex_service_by_its_own_object() -> None:
    objs = objects()
    deployments = []
    for (kind, _), d in objs.items():
        if kind == "Deployment":
            deployments.append({**d, "status": {"availableReplicas": d["spec"]["replicas"]}})
    snap = topology.Snapshot(
        services=tuple(d for (kind, _), d in objs.items() if kind == "Service"),
        deployments=tuple(deployments),
        virtual_services=(objs[("VirtualService", "podinfo")],),
        destination_rules=(objs[("DestinationRule", "podinfo")],),
        http_routes=(objs[("HTTPRoute", "podinfo-gw")],),
        traffic_splits=(objs[("TrafficSplit", "podinfo-smi")],),
    )
    routes = topology.compute_routes(snap)
    via = {name: routes[("demo", name)].via for name in ("podinfo", "podinfo-gw", "podinfo-smi")}
    assert via == {"podinfo": "virtualservice", "podinfo-gw": "httproute",
                   "podinfo-smi": "trafficsplit"}
    for name in via:
        flows = routes[("demo", name)].flows
        assert {f.workload.name for f in flows if f.workload and f.share > 0} == {"podinfo-stable"}


async def test_the_example_rollouts_read_the_example_routes(api: client.ApiClient) -> None:
    await example_app.apply_example_app(api)
    for filename in ("gateway-api.yaml", "smi.yaml"):
        manifest = RolloutManifest.model_validate(
            yaml.safe_load((EXAMPLES / filename).read_text())
        )
        namespace = manifest.metadata.namespace
        assert namespace is not None
        router = make_router(api, namespace, manifest.spec)
        assert await router.read() == Weights(stable=100, canary=0), filename
