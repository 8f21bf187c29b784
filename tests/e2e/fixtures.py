"""Fixtures: one sandbox (API server, mesh, real Prometheus) and one canaryd per test (used by
tests/e2e and tests/real through their conftest)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes_asyncio import config

from canaryd.daemon import Daemon, DaemonOptions
from canaryd.embedded import embedded
from canaryd.sandbox.realkube import RealKube
from canaryd.sandbox.runner import Sandbox
from tests.e2e.support import CONFIG, Kube

pytestmark = pytest.mark.prometheus


@dataclass
class Env:
    sandbox: Sandbox
    kube: Kube
    daemon: Daemon | None = None


@pytest.fixture
async def sandbox(kube_backend: RealKube | None) -> AsyncIterator[Sandbox]:
    async with Sandbox(rps=200, kube=kube_backend) as sb:
        yield sb


@asynccontextmanager
async def canaryd_running(
    sb: Sandbox, config: Path = CONFIG, tokens_file: Path | None = None,
) -> AsyncIterator[Daemon]:
    """canaryd in-process against the sandbox, its cache synced (canaryd.embedded)."""
    async with embedded(DaemonOptions(
        config=config, kubeconfig=str(sb.kubeconfig), host="127.0.0.1", port=0,
        prometheus_url=sb.prometheus_url, identity="e2e",
        tokens_file=str(tokens_file) if tokens_file is not None else None,
    ), timeout=20) as daemon:
        yield daemon


@pytest.fixture
async def env(sandbox: Sandbox) -> AsyncIterator[Env]:
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    try:
        async with canaryd_running(sandbox) as daemon:
            yield Env(sandbox=sandbox, kube=Kube(api), daemon=daemon)
    finally:
        await api.close()
