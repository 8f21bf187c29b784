"""Fixtures for the API server conformance suite, run against both servers.

A module with `KUBE_BACKENDS = ("emulator", "real")` runs each test twice: against a fresh
sandbox emulator (canaryd.sandbox.apiserver) and against the worker's real control plane
(tests/realkube.py). The `kube` fixture hides which: every test works in a namespace of its
own (the real control plane is shared by every test of the worker), talks to the server over
HTTPS with the admin token on the real one, and finds the shared Widget CRD installed once.
Tests of emulator-only features (fault knobs, the request log, the process) take `server`.
"""

from __future__ import annotations

import os
import shutil
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from apiserver_helpers import WIDGET_CRD, Kube, Kubectl, ensure_crd
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd.sandbox.apiserver import ApiServer
from canaryd.sandbox.realkube import RealKube


async def _ensure_namespace(api: client.ApiClient, name: str) -> None:
    try:
        await client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    except ApiException as exc:
        if exc.status != 409:
            raise


def _kubeconfig(source: dict[str, Any], namespace: str, path: Path) -> Path:
    cfg = dict(source)
    cfg["contexts"] = [{**c, "context": {**c["context"], "namespace": namespace}}
                       for c in source["contexts"]]
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
async def server() -> AsyncIterator[ApiServer]:
    """A fresh emulator (for tests of the emulator's own knobs)."""
    async with ApiServer(deployment_ready_delay=0.2, bookmark_interval=0.3) as srv:
        yield srv


@pytest.fixture
async def kube(kube_backend: RealKube | None, server: ApiServer,
               tmp_path: Path) -> AsyncIterator[Kube]:
    """The server under test (the test's emulator, or the worker's real control plane) and
    a namespace of this test's own in it. Tests take this, not `server`, to run on both;
    emulator-only ones may take both (an idle emulator costs next to nothing)."""
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    if kube_backend is None:
        srv = server
        srv.write_kubeconfig(tmp_path / "source-kubeconfig")
        source = yaml.safe_load((tmp_path / "source-kubeconfig").read_text())
        k = Kube("emulator", srv.url, namespace,
                 _kubeconfig(source, namespace, tmp_path / "kubeconfig"), {}, None,
                 emulator=srv)
    else:
        source = yaml.safe_load(kube_backend.kubeconfig.read_text())
        k = Kube("real", kube_backend.url, namespace,
                 _kubeconfig(source, namespace, tmp_path / "kubeconfig"),
                 {"Authorization": f"Bearer {kube_backend.admin_token}"},
                 ssl.create_default_context(cafile=str(kube_backend.ca_file)), real=kube_backend)
    api = await config.new_client_from_config(config_file=str(k.kubeconfig))
    try:
        await _ensure_namespace(api, namespace)
        yield k
        if k.is_real:
            # Shared control plane: leave nothing behind (the namespace controller empties
            # it in the background), and no cluster-scoped object named after the test.
            await _cleanup_real(api, namespace)
    finally:
        await api.close()


async def _cleanup_real(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    for ns in (await core.list_namespace()).items:
        if ns.metadata.name == namespace or ns.metadata.name.startswith(f"{namespace}-"):
            try:
                await core.delete_namespace(ns.metadata.name)
            except ApiException as exc:
                if exc.status != 404:
                    raise


@pytest.fixture
async def bare_http(kube_backend: RealKube | None,
                    server: ApiServer) -> AsyncIterator[aiohttp.ClientSession]:
    """Raw HTTP to the server under test, without a namespace of the test's own (for
    requests that store nothing, such as dry runs)."""
    if kube_backend is None:
        async with aiohttp.ClientSession(base_url=server.url) as s:
            yield s
        return
    ctx = ssl.create_default_context(cafile=str(kube_backend.ca_file))
    async with aiohttp.ClientSession(
            base_url=kube_backend.url, connector=aiohttp.TCPConnector(ssl=ctx),
            headers={"Authorization": f"Bearer {kube_backend.admin_token}"}) as s:
        yield s


@pytest.fixture
def ns(kube: Kube) -> str:
    return kube.namespace


@pytest.fixture
def kubeconfig(kube: Kube) -> Path:
    return kube.kubeconfig


@pytest.fixture
async def api(kube: Kube) -> AsyncIterator[client.ApiClient]:
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(kube.kubeconfig), client_configuration=cfg)
    async with client.ApiClient(configuration=cfg) as c:
        yield c


@pytest.fixture
async def http(kube: Kube) -> AsyncIterator[aiohttp.ClientSession]:
    """Raw HTTP to the server, authenticated, trusting its CA."""
    connector = aiohttp.TCPConnector(ssl=kube.ssl_context) if kube.ssl_context else None
    async with aiohttp.ClientSession(base_url=kube.url, headers=kube.headers,
                                     connector=connector) as s:
        yield s


@pytest.fixture
async def crd(api: client.ApiClient) -> dict[str, Any]:
    """The Widget CRD: created per emulator; on the real server once, shared by all tests
    (every CRD write makes kube-apiserver rebuild its OpenAPI document)."""
    return await ensure_crd(api, WIDGET_CRD)


@pytest.fixture
def kubectl(kube: Kube, tmp_path: Path) -> Kubectl:
    if shutil.which("kubectl") is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl is required in CI")
        pytest.skip("kubectl not installed")
    return Kubectl(kube.kubeconfig, tmp_path / "kube-cache")
