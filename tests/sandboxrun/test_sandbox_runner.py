"""Sandbox brings up API server, CRDs, example app, mesh and Prometheus, and tears all down."""

from __future__ import annotations

import aiohttp
import pytest
from kubernetes_asyncio import client, config

from canaryd.sandbox import example_app
from canaryd.sandbox.prometheus import PrometheusError, PrometheusNotFoundError
from canaryd.sandbox.runner import Sandbox

from .support import process_alive

pytestmark = pytest.mark.prometheus


async def test_sandbox_serves_the_example_app_and_its_traffic(prometheus_binary: str) -> None:
    async with Sandbox(prometheus_binary=prometheus_binary) as sandbox:
        workdir, kubeconfig = sandbox.workdir, sandbox.kubeconfig
        assert workdir is not None and kubeconfig == workdir / "kubeconfig"
        prometheus = sandbox.prometheus
        assert prometheus is not None and prometheus.pid is not None
        prometheus_pid = prometheus.pid
        assert sandbox.kube_api_url.startswith("http://127.0.0.1:")
        assert sandbox.mesh_metrics_url.startswith("http://127.0.0.1:")

        api = await config.new_client_from_config(config_file=str(kubeconfig))
        async with api:
            custom = client.CustomObjectsApi(api)
            vs = await custom.get_namespaced_custom_object(
                "networking.istio.io", "v1", "demo", "virtualservices", "podinfo"
            )
            weights = [r["weight"] for r in vs["spec"]["http"][0]["route"]]
            assert weights == [100, 0]
            # Every CRD version is served, e.g. the older Istio one clients still use.
            await custom.list_namespaced_custom_object(
                "networking.istio.io", "v1alpha3", "demo", "virtualservices"
            )
            # Applying the example again is a no-op, not a conflict.
            assert await example_app.apply_example_app(api) == []

        await sandbox.wait_for_traffic(timeout=30)
        query = (
            'sum by (destination_workload) (istio_requests_total{reporter="destination",'
            ' destination_service_name="podinfo"}) > 0'
        )
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{sandbox.prometheus_url}/api/v1/query", params={"query": query}) as resp,
        ):
            result = (await resp.json())["data"]["result"]
        assert {r["metric"]["destination_workload"] for r in result} == {"podinfo-stable"}

    assert not process_alive(prometheus_pid)
    assert not workdir.exists()
    assert sandbox.api_server is None and sandbox.mesh is None and sandbox.prometheus is None


async def test_a_missing_prometheus_fails_before_anything_starts() -> None:
    sandbox = Sandbox(prometheus_binary="no-such-prometheus")
    with pytest.raises(PrometheusNotFoundError, match="apt-get install"):
        await sandbox.start()
    assert sandbox.workdir is None and sandbox.api_server is None


async def test_a_failed_start_stops_what_was_started(prometheus_binary: str) -> None:
    # Prometheus refuses the unknown flag: the last part fails after all others started.
    sandbox = Sandbox(prometheus_binary=prometheus_binary, prometheus_extra_args=["--no-such-flag"])
    with pytest.raises(PrometheusError, match="no-such-flag"):
        await sandbox.start()
    assert sandbox.workdir is not None and not sandbox.workdir.exists()
    assert sandbox.api_server is None and sandbox.mesh is None and sandbox.prometheus is None
