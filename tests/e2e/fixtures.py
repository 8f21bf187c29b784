"""Fixtures: one sandbox (API server, mesh, real Prometheus) and one canaryd per test (used by
tests/e2e and tests/real through their conftest)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes_asyncio import config

from canaryd.daemon import Daemon, DaemonOptions
from canaryd.sandbox.realkube import RealKube
from canaryd.sandbox.runner import Sandbox
from tests.e2e.support import CONFIG, Kube, eventually

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


async def start_daemon(
    sb: Sandbox, config: Path = CONFIG, tokens_file: Path | None = None,
) -> tuple[Daemon, asyncio.Task[None]]:
    daemon = Daemon(DaemonOptions(
        config=config, kubeconfig=str(sb.kubeconfig), host="127.0.0.1", port=0,
        prometheus_url=sb.prometheus_url, identity="e2e",
        tokens_file=str(tokens_file) if tokens_file is not None else None,
    ))
    task = asyncio.create_task(daemon.run(embedded=True))

    async def synced() -> bool:
        if task.done():
            task.result()
        return daemon.controller is not None and daemon.controller.synced.is_set()

    await eventually(synced, timeout=20, what="canaryd synced")
    return daemon, task


async def stop_daemon(daemon: Daemon, task: asyncio.Task[None]) -> None:
    daemon.stop.set()
    await asyncio.wait_for(task, timeout=30)


@pytest.fixture
async def env(sandbox: Sandbox) -> AsyncIterator[Env]:
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    daemon, task = await start_daemon(sandbox)
    try:
        yield Env(sandbox=sandbox, kube=Kube(api), daemon=daemon)
    finally:
        await stop_daemon(daemon, task)
        await api.close()
