"""Fixtures for the multi-process tests: one sandbox (real Prometheus) and a replica set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config

from canaryd.sandbox import example_app
from canaryd.sandbox.apiserver import ApiServer
from canaryd.sandbox.runner import Sandbox, install_crds
from canaryd.sandbox.testing import kube_client
from tests.ha.cluster import Cluster, LeaseWatch, Rollouts


@dataclass
class HA:
    sandbox: Sandbox
    api: client.ApiClient
    cluster: Cluster
    rollouts: Rollouts
    lease: LeaseWatch


@pytest.fixture
async def ha(tmp_path: Path) -> AsyncIterator[HA]:
    async with Sandbox(rps=200) as sb:
        assert sb.api_server is not None
        api = await config.new_client_from_config(config_file=str(sb.kubeconfig))
        cluster = Cluster(server=sb.api_server, workdir=tmp_path,
                          prometheus_url=sb.prometheus_url)
        try:
            async with LeaseWatch(api, cluster.lease_namespace, cluster.lease_name) as lease:
                yield HA(sb, api, cluster, Rollouts(api), lease)
        finally:
            await cluster.close()
            await api.close()


@pytest.fixture
async def api(server: ApiServer, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    """A client of the test module's own `server`, with the CRDs and the example app."""
    async with kube_client(server, tmp_path) as c:
        await install_crds(c)
        await example_app.apply_example_app(c)
        yield c


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """On failure, show the tail of every replica's log (they run in other processes)."""
    if call.when == "call" and call.excinfo is not None:
        ha_env = getattr(item, "funcargs", {}).get("ha")
        if isinstance(ha_env, HA):
            item.add_report_section("call", "replica logs", ha_env.cluster.logs())
