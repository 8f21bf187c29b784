"""Fixtures for the router tests: the sandbox API server (real HTTP, real kubernetes_asyncio)
with the traffic CRDs installed, a namespace to work in, and a kube client for objects."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from canaryd.sandbox.apiserver import ApiServer
from canaryd.sandbox.runner import crd_paths, install_crds
from canaryd.sandbox.testing import kube_client
from tests.routers.support import NS


@pytest.fixture
async def apiserver() -> AsyncIterator[ApiServer]:
    async with ApiServer(deployment_ready_delay=0.1) as server:
        yield server


@pytest.fixture
async def bare_api(apiserver: ApiServer, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    """A client of an API server that serves no traffic CRDs yet."""
    async with kube_client(apiserver, tmp_path) as api:
        yield api


@pytest.fixture
async def api(bare_api: client.ApiClient) -> client.ApiClient:
    """A client of an API server serving every traffic CRD canaryd ships, with namespace demo."""
    await install_crds(bare_api, [p for p in crd_paths() if "rollout" not in p.name])
    await client.CoreV1Api(bare_api).create_namespace({"metadata": {"name": NS}})
    return bare_api


@pytest.fixture
def prometheus() -> str:
    """The prometheus binary the end-to-end tests need: skipped without it, except in CI."""
    path = shutil.which("prometheus")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is required in CI but is not on PATH")
        pytest.skip("prometheus is not installed")
    return path
