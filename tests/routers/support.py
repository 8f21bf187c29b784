"""Helpers for the router tests: custom objects as another client sees them, an in-process
canaryd against a sandbox, and deadline-bounded waits (never a bare sleep)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from kubernetes_asyncio import client

from canaryd.daemon import DaemonOptions
from canaryd.embedded import embedded
from canaryd.sandbox.realkube import RealKube
from canaryd.sandbox.runner import Sandbox
from canaryd.sandbox.testing import eventually

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "canaryd.yaml"
EXAMPLES = ROOT / "config" / "examples"
NS = "demo"
TERMINAL = {"Succeeded", "RolledBack", "Failed", "Aborted"}
ROLLOUTS = ("canaryd.io", "v1alpha1", "rollouts")


class Objects:
    """Create, read and change custom objects in namespace demo, as another client would."""

    def __init__(self, api: client.ApiClient, group: str, version: str, plural: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.group, self.version, self.plural = group, version, plural

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = await self.custom.create_namespaced_custom_object(
            self.group, self.version, NS, self.plural, body
        )
        return created

    async def get(self, name: str, *, version: str | None = None) -> dict[str, Any]:
        obj: dict[str, Any] = await self.custom.get_namespaced_custom_object(
            self.group, version or self.version, NS, self.plural, name
        )
        return obj

    async def json_patch(self, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = await self.custom.patch_namespaced_custom_object(
            self.group, self.version, NS, self.plural, name, ops,
            _content_type="application/json-patch+json",
        )
        return obj

    async def set_status(self, name: str, status: dict[str, Any]) -> dict[str, Any]:
        obj: dict[str, Any] = await self.custom.patch_namespaced_custom_object_status(
            self.group, self.version, NS, self.plural, name, {"status": status},
            _content_type="application/merge-patch+json",
        )
        return obj


def example_rollout(filename: str, **spec_changes: Any) -> dict[str, Any]:
    """A Rollout from config/examples, with two short steps unless told otherwise."""
    body: dict[str, Any] = yaml.safe_load((EXAMPLES / filename).read_text())
    body["spec"]["plan"] = {"steps": [{"weight": 20}, {"weight": 50}]}
    body["spec"].update(spec_changes)
    return body


class Harness:
    """A sandbox with canaryd running in-process against it, and the calls tests make."""

    def __init__(self, sandbox: Sandbox, api: client.ApiClient) -> None:
        self.sandbox = sandbox
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)

    async def create_rollout(self, body: dict[str, Any]) -> None:
        await self.custom.create_namespaced_custom_object(*ROLLOUTS[:2], NS, ROLLOUTS[2], body)

    async def status(self, name: str) -> dict[str, Any]:
        obj = await self.custom.get_namespaced_custom_object(
            *ROLLOUTS[:2], NS, ROLLOUTS[2], name
        )
        status: dict[str, Any] = obj.get("status") or {}
        return status

    async def wait_phase(self, name: str, phases: set[str], timeout: float) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            status = await self.status(name)
            return status if status.get("phase") in phases else None

        return await eventually(probe, timeout=timeout, what=f"{name} in {sorted(phases)}")

    async def annotate_deployment(self, name: str, annotations: dict[str, str]) -> None:
        await self.apps.patch_namespaced_deployment(
            name, NS, {"metadata": {"annotations": annotations}}
        )

    async def annotate_service(self, name: str, annotations: dict[str, str]) -> None:
        await self.core.patch_namespaced_service(
            name, NS, {"metadata": {"annotations": annotations}}
        )

    async def query(self, expr: str) -> dict[str, float]:
        """An instant query, as {value of label `deployment` (or ""): value}."""
        timeout = aiohttp.ClientTimeout(total=5)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(
                f"{self.sandbox.prometheus_url}/api/v1/query", params={"query": expr}
            ) as resp,
        ):
            body = await resp.json()
        assert body["status"] == "success", body
        return {
            r["metric"].get("deployment", ""): float(r["value"][1])
            for r in body["data"]["result"]
        }

    async def inbound_rates(self, apex: str, window: str = "3s") -> dict[str, float]:
        """Requests per second each Deployment serves for callers of the Service `apex`,
        from the Linkerd inbound metrics (`authority` is the Service clients called)."""
        authority = f"{apex}.{NS}.svc.cluster.local:9898"
        return await self.query(
            f'sum by (deployment) (rate(response_total{{direction="inbound", '
            f'namespace="{NS}", authority="{authority}"}}[{window}]))'
        )

    async def canary_rate(self) -> float:
        """Requests per second the canary serves, whoever called it."""
        rates = await self.query(
            'sum(rate(response_total{deployment="podinfo-canary",direction="inbound"}[3s]))'
        )
        return rates.get("", 0.0)


@asynccontextmanager
async def running_canaryd(kube: RealKube | None = None) -> AsyncIterator[Harness]:
    """A sandbox (API server, mesh, real Prometheus) and canaryd, in-process; `kube`: on
    that real control plane instead of the embedded emulator."""
    async with Sandbox(kube=kube) as sandbox, embedded(DaemonOptions(
        config=CONFIG, kubeconfig=str(sandbox.kubeconfig), host="127.0.0.1", port=0,
        prometheus_url=sandbox.prometheus_url, identity="routers-e2e",
    ), timeout=20) as daemon:
        assert daemon.api is not None
        yield Harness(sandbox, daemon.api)
