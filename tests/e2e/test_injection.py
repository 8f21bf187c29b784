"""A PromQL injection attempt in a name is refused at the boundary (CRD schema)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd.sandbox.apiserver import ApiServer
from canaryd.sandbox.runner import install_crds
from canaryd.sandbox.testing import kube_client
from tests.e2e.support import GROUP, PLURAL, VERSION, rollout_manifest

# On the real control plane: tests/real/test_control_plane.py.

INJECTION = 'x"} or vector(1) #'


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[tuple[client.ApiClient, Path]]:
    async with ApiServer() as server, kube_client(server, tmp_path) as api:
        await install_crds(api)
        await client.CoreV1Api(api).create_namespace({"metadata": {"name": "demo"}})
        yield api, tmp_path / "kubeconfig"


async def test_injection_in_target_is_refused_by_the_api(
    kube: tuple[client.ApiClient, Path],
) -> None:
    api, _ = kube
    body = rollout_manifest(target=INJECTION)
    with pytest.raises(ApiException) as info:
        await client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, "demo", PLURAL, body
        )
    assert info.value.status == 422
    assert "spec.target" in json.loads(info.value.body)["message"]
    listed = await client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, "demo", PLURAL
    )
    assert listed["items"] == []


async def test_injection_in_workload_is_refused_by_kubectl_apply(
    kube: tuple[client.ApiClient, Path], tmp_path: Path
) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    _, kubeconfig = kube
    body = rollout_manifest()
    body["spec"]["workloads"]["canary"] = INJECTION
    manifest = tmp_path / "bad.json"
    manifest.write_text(json.dumps(body))
    # The API server runs on this event loop: kubectl must not block it.
    proc = await asyncio.create_subprocess_exec(
        kubectl, "--kubeconfig", str(kubeconfig), "apply", "-f", str(manifest),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode != 0
    assert "spec.workloads.canary" in stderr.decode()
