"""`canaryd submit --dry-run` as a process, against canaryd's API on the sandbox API server
and on a real kube-apiserver: everything a submit checks, and Kubernetes' own checks
(dryRun=All: the CRD schema, admission), with nothing created."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from kubernetes_asyncio import client, config

from canaryd.sandbox.apiserver import ApiServer
from canaryd.sandbox.realkube import RealKube
from canaryd.sandbox.runner import install_crds
from canaryd.sandbox.testing import eventually
from tests.api.conftest import Served, serve_api
from tests.api.support import ROLLOUT_CRD, TOKENS, auth, manifest

KUBE_BACKENDS = ("emulator", "real")


@pytest.fixture
async def kubeconfig(kube_backend: RealKube | None, tmp_path: Path) -> AsyncIterator[Path]:
    if kube_backend is not None:
        yield kube_backend.kubeconfig
        return
    async with ApiServer(deployment_ready_delay=0.1) as server:
        server.write_kubeconfig(tmp_path / "kubeconfig")
        yield tmp_path / "kubeconfig"


@pytest.fixture
async def kube(kubeconfig: Path) -> AsyncIterator[client.ApiClient]:
    api = await config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield api
    finally:
        await api.close()


@pytest.fixture
async def namespace(kube: client.ApiClient) -> AsyncIterator[str]:
    assert await install_crds(kube, [ROLLOUT_CRD], timeout=60)
    name = f"dry-run-{secrets.token_hex(4)}"
    core = client.CoreV1Api(kube)
    await core.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        await core.delete_namespace(name)


@pytest.fixture
async def api_served(kubeconfig: Path, tokens_file: Path, prometheus: str,
                     namespace: str) -> AsyncIterator[Served]:
    async with serve_api(kubeconfig, tokens_file, prometheus) as served:
        yield served


async def submit(served: Served, path: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "canaryd", "submit", "-f", str(path), *args, "--url", served.url,
        env={**os.environ, "CANARYD_TOKEN": TOKENS["submit"]},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_dry_run_validates_through_kubernetes_and_creates_nothing(
    api_served: Served, kube: client.ApiClient, namespace: str, tmp_path: Path,
    kube_backend: RealKube | None,
) -> None:
    custom = client.CustomObjectsApi(kube)
    path = tmp_path / "rollout.yaml"
    old = manifest(namespace=namespace, plan={"steps": [{"weight": 10}], "interval": "10s"})
    path.write_text(yaml.safe_dump(old))
    code, out, err = await submit(api_served, path, "--dry-run")
    assert code == 0, err
    assert f"rollout {namespace}/podinfo-v2 is valid (dry run, nothing created)" in out
    assert "canaryd: warning: spec.plan.interval is deprecated: set spec.analysis.interval" in err
    listed = await custom.list_namespaced_custom_object("canaryd.io", "v1alpha1", namespace,
                                                        "rollouts")
    assert listed["items"] == [], "a dry run creates nothing"

    path.write_text(yaml.safe_dump(manifest(namespace="nowhere")))
    code, _, err = await submit(api_served, path, "--dry-run")
    assert code == 2 and "/metadata/namespace: namespace 'nowhere' does not exist" in err
    code, _, err = await submit(api_served, path, "--dry-run", "--wait")
    assert code == 2 and "--wait has nothing to follow with --dry-run" in err

    if kube_backend is not None:
        await _admission_policy_refuses_latest(api_served, kube, namespace, path)


async def _admission_policy_refuses_latest(
    served: Served, kube: client.ApiClient, namespace: str, path: Path,
) -> None:
    """A ValidatingAdmissionPolicy only the real API server runs: the dry run hears it."""
    adm = client.AdmissionregistrationV1Api(kube)
    name = f"pin-versions-{namespace}"
    await adm.create_validating_admission_policy({
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["canaryd.io"], "apiVersions": ["v1alpha1"],
                "operations": ["CREATE"], "resources": ["rollouts"]}]},
            "validations": [{"expression": "!object.spec.version.endsWith(':latest')",
                             "message": "spec.version must pin a release, not :latest",
                             "reason": "Invalid"}],
        },
    })
    await adm.create_validating_admission_policy_binding({
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {
                     "kubernetes.io/metadata.name": namespace}}}},
    })
    try:
        latest = manifest(namespace=namespace)
        latest["spec"]["version"] = "ghcr.io/stefanprodan/podinfo:latest"
        path.write_text(yaml.safe_dump(latest))
        async with aiohttp.ClientSession(base_url=served.url) as http:

            async def refused() -> bool:  # the policy takes a moment to be enforced
                async with http.post("/api/v1/rollouts?dryRun=All", json=latest,
                                     headers=auth("submit")) as resp:
                    return resp.status == 422

            await eventually(refused, timeout=30, what="the admission policy enforced")
        code, _, err = await submit(served, path, "--dry-run")
        assert code == 2, err
        assert "spec.version must pin a release, not :latest" in err
    finally:
        await adm.delete_validating_admission_policy_binding(name)
        await adm.delete_validating_admission_policy(name)
