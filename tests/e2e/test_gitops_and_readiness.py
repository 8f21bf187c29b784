"""GitOps path (kubectl apply) and the readiness gate before any traffic moves."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from tests.e2e.conftest import Env
from tests.e2e.support import EXAMPLE, TERMINAL


async def test_kubectl_apply_of_the_example_starts_a_rollout(env: Env) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    proc = await asyncio.create_subprocess_exec(
        kubectl, "--kubeconfig", str(env.sandbox.kubeconfig), "apply", "-f", str(EXAMPLE),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()
    assert "rollout.canaryd.io/podinfo-v2 created" in out.decode()
    status = await env.kube.wait_phase("podinfo-v2", TERMINAL, timeout=120)
    assert status["phase"] == "Succeeded", status["reason"]
    proc = await asyncio.create_subprocess_exec(
        kubectl, "--kubeconfig", str(env.sandbox.kubeconfig), "wait", "-n", "demo",
        "--for=condition=Completed", "rollout/podinfo-v2", "--timeout=10s",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()
    assert "condition met" in out.decode()


async def test_unavailable_canary_fails_without_touching_routing(env: Env) -> None:
    from tests.e2e.support import rollout_manifest

    await env.kube.annotate_deployment("podinfo-canary",
                                       **{"sandbox.canaryd.io/unavailable": "true"})
    before = await env.kube.vs_weights()
    body = rollout_manifest()
    body["spec"]["workloads"]["readyTimeout"] = "3s"
    await env.kube.create_rollout(body)
    status = await env.kube.wait_phase("podinfo-v2", TERMINAL, timeout=30)
    assert status["phase"] == "Failed"
    assert "not available after 3s" in status["reason"]
    assert "routing not touched" in status["reason"]
    assert await env.kube.vs_weights() == before == {"stable": 100, "canary": 0}
    # The canary it scaled up for this rollout is back at zero: the steady state.
    canary = await env.kube.apps.read_namespaced_deployment("podinfo-canary", "demo")
    assert canary.spec.replicas == 0


async def test_missing_canary_deployment_fails_naming_it(env: Env) -> None:
    from tests.e2e.support import rollout_manifest

    body = rollout_manifest()
    body["spec"]["workloads"].update(canary="podinfo-absent", readyTimeout="2s")
    await env.kube.create_rollout(body)
    status = await env.kube.wait_phase("podinfo-v2", TERMINAL, timeout=30)
    assert status["phase"] == "Failed"
    assert "podinfo-absent not found" in status["reason"]
    assert "routing not touched" in status["reason"]
    assert await env.kube.vs_weights() == {"stable": 100, "canary": 0}
