"""Fixtures: a real sandbox API server with the Rollout CRD, and a real Daemon serving the API
on a loopback port. Its controller runs only the informer (the watch-fed cache every replica
keeps): tests play the leader's part by writing status themselves, so nothing reconciles
behind their back."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import structlog
from aiohttp import web
from kubernetes_asyncio import client

from canaryd.api.context import STATE, ApiState
from canaryd.daemon import Daemon, DaemonOptions
from canaryd.sandbox.apiserver import ApiServer
from canaryd.sandbox.testing import kube_client, serving
from tests.api.support import CONFIG, ROLLOUT_CRD, tokens_yaml


@pytest.fixture(autouse=True)
def logs_to_stderr() -> Iterator[None]:
    """The daemon logs to stderr, as in production; stdout is the CLI's, checked by tests."""
    old = structlog.get_config()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    try:
        yield
    finally:
        structlog.configure(**old)


@pytest.fixture
async def apiserver() -> AsyncIterator[ApiServer]:
    async with ApiServer(deployment_ready_delay=0.1, bookmark_interval=1.0) as server:
        yield server


@pytest.fixture
async def kube(apiserver: ApiServer, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    async with kube_client(apiserver, tmp_path, crds=[ROLLOUT_CRD], namespaces=["demo"]) as api:
        yield api


@pytest.fixture
async def prometheus() -> AsyncIterator[str]:
    """Answers the one query readiness asks (vector(1)), like a healthy Prometheus."""

    async def query(_request: web.Request) -> web.Response:
        return web.json_response({"status": "success", "data": {
            "resultType": "vector", "result": [{"metric": {}, "value": [0, "1"]}]}})

    app = web.Application()
    app.router.add_route("*", "/api/v1/query", query)
    async with serving(app) as (host, port):
        yield f"http://{host}:{port}"


@dataclass
class Served:
    daemon: Daemon
    url: str
    port: int
    app: web.Application

    @property
    def state(self) -> ApiState:
        return self.app[STATE]


@contextlib.asynccontextmanager
async def serve_api(kubeconfig: Path, tokens_file: Path | None, prometheus_url: str,
                    ) -> AsyncIterator[Served]:
    daemon = Daemon(DaemonOptions(
        config=CONFIG, kubeconfig=str(kubeconfig), host="127.0.0.1", port=0,
        prometheus_url=prometheus_url, identity="api-test",
        tokens_file=str(tokens_file) if tokens_file else None, leader_election=False,
    ))
    runner = await daemon.start()
    assert daemon.controller is not None and daemon.url is not None
    informer = asyncio.create_task(daemon.controller.informer(daemon.stop))
    try:
        await asyncio.wait_for(daemon.controller.synced.wait(), timeout=10)
        yield Served(daemon, daemon.url, int(daemon.url.rsplit(":", 1)[1]), runner.app)
    finally:
        daemon.stop.set()
        informer.cancel()
        await asyncio.gather(informer, return_exceptions=True)
        await asyncio.wait_for(runner.cleanup(), timeout=10)
        if daemon.api is not None:
            await daemon.api.close()


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.yaml"
    path.write_text(tokens_yaml())
    return path


@pytest.fixture
async def served(kube: client.ApiClient, tmp_path: Path, tokens_file: Path,
                 prometheus: str) -> AsyncIterator[Served]:
    async with serve_api(tmp_path / "kubeconfig", tokens_file, prometheus) as s:
        yield s


@pytest.fixture
async def http(served: Served) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        base_url=served.url, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        yield session
