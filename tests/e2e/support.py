"""Helpers for end-to-end tests: a sandbox with real Prometheus, canaryd against it, and
waits on conditions with deadlines (never a bare sleep)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from kubernetes_asyncio import client

from canaryd.sandbox.testing import eventually

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "canaryd.yaml"
EXAMPLE = ROOT / "config" / "examples" / "canary.yaml"
GROUP, VERSION, PLURAL = "canaryd.io", "v1alpha1", "rollouts"
NS = "demo"
TERMINAL = {"Succeeded", "RolledBack", "Failed", "Aborted"}


def rollout_manifest(name: str = "podinfo-v2", **spec_changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body = copy.deepcopy(body)
    body["metadata"]["name"] = name
    body["spec"]["plan"] = {"steps": [{"weight": 20}, {"weight": 50}]}
    body["spec"]["analysis"] = {"profile": "sandbox", "interval": "3s"}
    for key, value in spec_changes.items():
        body["spec"][key] = value
    return body


class Kube:
    """The few kubernetes_asyncio calls the tests make."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)

    async def create_rollout(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.custom.create_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, body
        )
        return result

    async def rollout(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.custom.get_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, name
        )
        return result

    async def status(self, name: str) -> dict[str, Any]:
        return (await self.rollout(name)).get("status") or {}

    async def wait_phase(self, name: str, phases: set[str], timeout: float = 90) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            status = await self.status(name)
            return status if status.get("phase") in phases else None

        return await eventually(probe, timeout=timeout, what=f"{name} in {sorted(phases)}")

    async def annotate_deployment(self, name: str, **annotations: str) -> None:
        await self.apps.patch_namespaced_deployment(
            name, NS, {"metadata": {"annotations": annotations}}
        )

    async def annotate_service(self, name: str, **annotations: str) -> None:
        await self.core.patch_namespaced_service(
            name, NS, {"metadata": {"annotations": annotations}}
        )

    async def act(self, name: str, action: str) -> None:
        await self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, name,
            {"metadata": {"annotations": {"canaryd.io/action": action}}},
            _content_type="application/merge-patch+json",
        )

    async def vs_weights(self) -> dict[str, int]:
        vs = await self.custom.get_namespaced_custom_object(
            "networking.istio.io", "v1", NS, "virtualservices", "podinfo"
        )
        route = next(r for r in vs["spec"]["http"] if r.get("name") == "primary")
        return {e["destination"]["subset"]: e.get("weight", 0) for e in route["route"]}


async def prom_query(url: str, query: str) -> list[dict[str, Any]]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"{url}/api/v1/query", params={"query": query}) as resp,
    ):
        body = await resp.json()
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def canary_share(prometheus_url: str, window: str = "3s") -> float | None:
    """Share of the example app's requests the mesh delivered to the canary, per Prometheus."""
    rows = await prom_query(
        prometheus_url,
        'sum by (destination_workload) (rate(istio_requests_total{reporter="destination",'
        f'destination_service_name="podinfo",destination_workload_namespace="{NS}"}}[{window}]))',
    )
    rates = {r["metric"].get("destination_workload"): float(r["value"][1]) for r in rows}
    total = sum(rates.values())
    return rates.get("podinfo-canary", 0.0) / total if total else None


def step_transitions(status: dict[str, Any]) -> list[tuple[str, str]]:
    return [(h["trigger"], h["reason"]) for h in status.get("history", [])]
