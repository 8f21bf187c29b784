"""The mesh end to end: sandbox API server -> Mesh -> real Prometheus -> PromQL.

Conditions are awaited by polling with deadlines. Rates are read with instant queries
pinned (`time=`) to a moment whose whole window lies after a change took effect, once
Prometheus has scraped past that moment: no value mixes the states before and after.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

import aiohttp
import pytest
from kubernetes_asyncio import client

from canaryd.sandbox.mesh import Mesh

from .conftest import PromQL, eventually, install_crds
from .objects import NS, deployment, destination_rule, service, virtual_service

pytestmark = pytest.mark.timeout(60)

WINDOW = 5  # seconds of the rate() windows below
PICKUP = 1.0  # the mesh applies an API change within one second
MERGE_PATCH = "application/merge-patch+json"
RATES = (
    "sum by (destination_workload)(rate(istio_requests_total"
    f'{{reporter="destination",destination_workload_namespace="{NS}"}}[{WINDOW}s]))'
)
SUCCESS_RATE = (
    'sum(rate(istio_requests_total{{reporter="destination",destination_workload_namespace="{ns}",'
    'destination_workload="{w}",response_code!~"5.*"}}[{i}s])) / '
    'sum(rate(istio_requests_total{{reporter="destination",destination_workload_namespace="{ns}",'
    'destination_workload="{w}"}}[{i}s])) * 100'
)


def weighted_http(primary: int, canary: int) -> list[dict[str, Any]]:
    return [
        {
            "route": [
                {"destination": {"host": "web", "subset": "primary"}, "weight": primary},
                {"destination": {"host": "web", "subset": "canary"}, "weight": canary},
            ]
        }
    ]


async def create_app(api: client.ApiClient, rps: float) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    await core.create_namespace(body={"metadata": {"name": NS}})
    await core.create_namespaced_service(NS, body=service("web", {"app": "web"}, rps=rps))
    for name, version in (("web-primary", "v1"), ("web-canary", "v2")):
        body = deployment(name, {"app": "web", "version": version})
        del body["status"]  # the API server's controller makes it available
        await apps.create_namespaced_deployment(NS, body=body)


async def create_routing(api: client.ApiClient, primary: int, canary: int) -> None:
    custom = client.CustomObjectsApi(api)
    subsets = {"primary": {"version": "v1"}, "canary": {"version": "v2"}}
    await custom.create_namespaced_custom_object(
        "networking.istio.io", "v1", NS, "destinationrules", destination_rule("web", "web", subsets)
    )
    vs = virtual_service("web", ["web"], weighted_http(primary, canary))
    await custom.create_namespaced_custom_object(
        "networking.istio.io", "v1", NS, "virtualservices", vs
    )


@pytest.fixture
async def running_mesh(kubeconfig: str) -> AsyncIterator[Mesh]:
    mesh = Mesh(kubeconfig=kubeconfig, tick=0.25, seed=42)
    await mesh.start(host="127.0.0.1", port=0)
    try:
        await mesh.wait_synced(timeout=10)
        yield mesh
    finally:
        await mesh.stop()


async def settled_vector(
    prom: PromQL, expr: str, label: str, changed_at: float
) -> dict[str, float]:
    """The vector over a window that starts after a change made at `changed_at` took effect."""
    at = changed_at + PICKUP + WINDOW
    await eventually(lambda: prom.has_data_until(at), timeout=WINDOW + 10)
    return await prom.vector(expr, label, at=at)


async def test_weight_and_error_changes_show_in_prometheus(
    api: client.ApiClient,
    running_mesh: Mesh,
    prometheus_for: Callable[[str], Awaitable[PromQL]],
) -> None:
    await install_crds(api, "istio-virtualservice.yaml", "istio-destinationrule.yaml")
    await create_app(api, rps=1000)  # free for a fluid model, and it keeps noise low
    await create_routing(api, primary=100, canary=0)
    prom = await prometheus_for(urlparse(running_mesh.metrics_url).netloc)

    async def only_primary_served() -> bool:
        rates = await prom.vector(RATES, "destination_workload")
        return rates.get("web-primary", 0) > 0 and rates.get("web-canary", 0) == 0

    await eventually(only_primary_served, timeout=15)
    assert running_mesh.snapshot_routes()[f"{NS}/web"]["via"] == "virtualservice"

    custom = client.CustomObjectsApi(api)
    changed_at = time.time()
    await custom.patch_namespaced_custom_object(
        "networking.istio.io", "v1", NS, "virtualservices", "web",
        {"spec": {"http": weighted_http(70, 30)}}, _content_type=MERGE_PATCH,
    )  # fmt: skip
    rates = await settled_vector(prom, RATES, "destination_workload", changed_at)
    total = rates["web-primary"] + rates["web-canary"]
    assert total == pytest.approx(1000, rel=0.1)
    assert rates["web-canary"] / total == pytest.approx(0.30, abs=0.04)

    changed_at = time.time()
    await client.AppsV1Api(api).patch_namespaced_deployment(
        "web-canary", NS, {"metadata": {"annotations": {"sandbox.canaryd.io/error-ratio": "0.05"}}}
    )
    canary_sr = SUCCESS_RATE.format(ns=NS, w="web-canary", i=WINDOW)
    primary_sr = SUCCESS_RATE.format(ns=NS, w="web-primary", i=WINDOW)
    canary = await settled_vector(prom, canary_sr, "", changed_at)
    primary = await prom.vector(primary_sr, "", at=changed_at + PICKUP + WINDOW)
    assert canary[""] == pytest.approx(95, abs=3)
    assert primary[""] == 100


async def test_crds_installed_after_start_are_picked_up(
    api: client.ApiClient, running_mesh: Mesh
) -> None:
    await create_app(api, rps=10)

    async def routed_via(kind: str) -> bool:
        via: str | None = running_mesh.snapshot_routes().get(f"{NS}/web", {}).get("via")
        return via == kind

    await eventually(lambda: routed_via("selector"), timeout=5)
    await install_crds(api, "istio-virtualservice.yaml", "istio-destinationrule.yaml")
    await create_routing(api, primary=0, canary=100)

    async def all_to_canary() -> bool:
        flows = running_mesh.snapshot_routes()[f"{NS}/web"]["flows"]
        taking = [(f["workload"], f["share"]) for f in flows if f["share"] > 0]
        return taking == [(f"{NS}/web-canary", 1.0)]

    await eventually(all_to_canary, timeout=5)


async def test_standalone_module_prints_url_and_exits_on_sigterm(kubeconfig: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "canaryd.sandbox.mesh", "--kubeconfig", kubeconfig, "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=20)
        metrics_url = json.loads(line)["metrics_url"]
        async with aiohttp.ClientSession() as session:
            async with session.get(metrics_url) as resp:
                assert resp.status == 200
                assert "# TYPE istio_requests_total counter" in await resp.text()
            async with session.get(metrics_url.replace("/metrics", "/healthz")) as resp:
                assert await resp.json() == {"ok": True, "synced": True}
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_watches_recover_from_compaction_dropped_streams_and_failed_lists(
    apiserver: Any, api: client.ApiClient, running_mesh: Mesh
) -> None:
    await create_app(api, rps=10)
    apps = client.AppsV1Api(api)

    async def canary_error_ratio_is(ratio: float) -> bool:
        flows = running_mesh.snapshot_routes().get(f"{NS}/web", {}).get("flows", [])
        return any(f["workload"] == f"{NS}/web-canary" and f["error_ratio"] == ratio for f in flows)

    await eventually(lambda: canary_error_ratio_is(0.0), timeout=5)
    # Every watch is cut and history is compacted (410 on resume); the next lists fail.
    apiserver.compact()
    apiserver.faults.fail_next(2, 500, verb="list")
    apiserver.faults.drop_watches()
    patch = {"metadata": {"annotations": {"sandbox.canaryd.io/error-ratio": "0.2"}}}
    await apps.patch_namespaced_deployment("web-canary", NS, patch)
    await eventually(lambda: canary_error_ratio_is(0.2), timeout=5)
