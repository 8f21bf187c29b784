"""`kubectl apply -k` of every kustomization against the sandbox API server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config

from canaryd.sandbox.apiserver import ApiServer
from tests.deploy.support import ROOT, TEST_CRDS, kubectl, require_kubectl

pytestmark = pytest.mark.kubectl


@pytest.fixture
async def kubeconfig(tmp_path: Path) -> AsyncIterator[Path]:
    require_kubectl()
    async with ApiServer(deployment_ready_delay=0.1) as server:
        path = tmp_path / "kubeconfig"
        server.write_kubeconfig(path)
        yield path


async def test_apply_k_deploy_creates_everything_and_reapplies_cleanly(kubeconfig: Path) -> None:
    _, out, _ = await kubectl(kubeconfig, "apply", "-k", "deploy/")
    created = sorted(line.split()[0] for line in out.splitlines())
    assert created == sorted([
        "namespace/canaryd",
        *(f"customresourcedefinition.apiextensions.k8s.io/{name}" for name in (
            "destinationrules.networking.istio.io", "httproutes.gateway.networking.k8s.io",
            "httproutes.policy.linkerd.io", "rollouts.canaryd.io", "rolloutpolicies.canaryd.io",
            "trafficsplits.split.smi-spec.io", "virtualservices.networking.istio.io")),
        "serviceaccount/canaryd",
        "role.rbac.authorization.k8s.io/canaryd-leader-election",
        "clusterrole.rbac.authorization.k8s.io/canaryd",
        "rolebinding.rbac.authorization.k8s.io/canaryd-leader-election",
        "clusterrolebinding.rbac.authorization.k8s.io/canaryd",
        "configmap/canaryd-config",
        "service/canaryd",
        "deployment.apps/canaryd",
        "poddisruptionbudget.policy/canaryd",
        "networkpolicy.networking.k8s.io/canaryd",
    ]), out
    assert all(line.endswith(" created") for line in out.splitlines())

    _, again, _ = await kubectl(kubeconfig, "apply", "-k", "deploy/")
    assert "created" not in again

    await kubectl(kubeconfig, "-n", "canaryd", "rollout", "status", "deployment/canaryd",
                  "--timeout=20s")
    api = await config.new_client_from_config(config_file=str(kubeconfig))
    try:
        cm = await client.CoreV1Api(api).read_namespaced_config_map("canaryd-config", "canaryd")
        text = (ROOT / "config" / "canaryd.yaml").read_text(encoding="utf-8")
        assert cm.data == {"canaryd.yaml": text}
        deploy = await client.AppsV1Api(api).read_namespaced_deployment("canaryd", "canaryd")
        assert deploy.status.available_replicas == 2
    finally:
        await api.close()


async def test_apply_k_namespaced_variant(kubeconfig: Path) -> None:
    await kubectl(kubeconfig, "create", "namespace", "demo")
    _, out, _ = await kubectl(kubeconfig, "apply", "-k", "deploy/overlays/namespaced")
    assert "role.rbac.authorization.k8s.io/canaryd created" in out
    assert "clusterrole.rbac.authorization.k8s.io/canaryd-rollout-cache created" in out
    assert "clusterrole.rbac.authorization.k8s.io/canaryd " not in out
    _, roles, _ = await kubectl(kubeconfig, "get", "roles", "-A", "-o", "name")
    assert sorted(roles.split()) == ["role.rbac.authorization.k8s.io/canaryd",
                                     "role.rbac.authorization.k8s.io/canaryd-leader-election"]


async def test_apply_k_istio_with_peer_authentication(kubeconfig: Path) -> None:
    await kubectl(kubeconfig, "apply", "-k", "deploy/")
    # The sandbox has no Istio: a reduced PeerAuthentication CRD stands in for Istio's.
    await kubectl(kubeconfig, "apply", "-f", str(TEST_CRDS / "peerauthentication.yaml"))
    await kubectl(kubeconfig, "wait", "--for=condition=Established",
                  "crd/peerauthentications.security.istio.io", "--timeout=10s")
    _, out, _ = await kubectl(kubeconfig, "apply", "-k", "deploy/istio")
    assert out.strip() == "peerauthentication.security.istio.io/canaryd created"
    _, mode, _ = await kubectl(kubeconfig, "-n", "canaryd", "get", "peerauthentication",
                               "canaryd", "-o", "jsonpath={.spec.mtls.mode}")
    assert mode == "STRICT"
