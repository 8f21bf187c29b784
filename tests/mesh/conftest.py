"""Fixtures for the mesh's integration tests: sandbox API server, API client, Prometheus.

The pure tests need none of these. Integration tests skip (with a reason) when the
`prometheus` binary is unavailable.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import yaml
from kubernetes_asyncio import client

from canaryd.sandbox import testing
from canaryd.sandbox.apiserver import ApiServer

CRD_DIR = Path(__file__).resolve().parents[2] / "canaryd" / "data" / "crds"
T = TypeVar("T")


@pytest.fixture
async def apiserver(tmp_path: Path) -> AsyncIterator[ApiServer]:
    async with ApiServer(deployment_ready_delay=0.5) as server:
        yield server


@pytest.fixture
def kubeconfig(apiserver: ApiServer, tmp_path: Path) -> str:
    path = tmp_path / "kubeconfig"
    apiserver.write_kubeconfig(str(path))
    return str(path)


@pytest.fixture
async def api(apiserver: ApiServer, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    async with testing.kube_client(apiserver, tmp_path) as api_client:
        yield api_client


def crd_manifest(filename: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CRD_DIR / filename).read_text())
    return loaded


async def install_crds(api: client.ApiClient, *filenames: str) -> None:
    """Create CRDs from canaryd/data/crds and wait until their resources are served."""
    ext = client.ApiextensionsV1Api(api)
    for filename in filenames:
        await ext.create_custom_resource_definition(body=crd_manifest(filename))
    custom = client.CustomObjectsApi(api)
    for filename in filenames:
        spec = crd_manifest(filename)["spec"]
        version = next(v["name"] for v in spec["versions"] if v.get("storage"))

        async def served(spec: dict[str, Any] = spec, version: str = version) -> bool:
            await custom.list_cluster_custom_object(spec["group"], version, spec["names"]["plural"])
            return True

        await eventually(served, timeout=5)



async def eventually(
    probe: Callable[[], Awaitable[T]], *, timeout: float, interval: float = 0.1
) -> T:
    """The shared helper, tolerating API and HTTP errors while the mesh settles."""
    return await testing.eventually(
        probe, timeout=timeout, every=interval,
        tolerate=(AssertionError, client.ApiException, aiohttp.ClientError),
    )

@pytest.fixture
def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus binary is not installed")
    return binary


class PromQL:
    """A tiny Prometheus HTTP API client for assertions."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url
        self._session = session

    async def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        async with self._session.get(f"{self.base_url}/api/v1/query", params=params) as resp:
            body = await resp.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def has_data_until(self, at: float) -> bool:
        """Has Prometheus scraped the mesh at or after wall-clock time `at`?"""
        result = await self.query('timestamp(up{job="mesh"} == 1)')
        return bool(result) and float(result[0]["value"][1]) >= at

    async def vector(self, expr: str, label: str, at: float | None = None) -> dict[str, float]:
        return {
            s["metric"].get(label, ""): float(s["value"][1]) for s in await self.query(expr, at)
        }


@pytest.fixture
async def prometheus_for(
    prometheus_binary: str,
) -> AsyncIterator[Callable[[str], Awaitable[PromQL]]]:
    """Start a real Prometheus scraping a target host:port every second."""
    from canaryd.sandbox.prometheus import PrometheusServer

    servers: list[PrometheusServer] = []
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))

    async def start(target: str) -> PromQL:
        server = PrometheusServer([target], scrape_interval="1s", binary=prometheus_binary)
        servers.append(server)
        await server.start()
        return PromQL(server.url, session)

    try:
        yield start
    finally:
        for server in servers:
            await server.stop()
        await session.close()
