"""One active rollout per target and per router object; supersede rolls the running one back
first."""

from __future__ import annotations

import asyncio
import shutil

import pytest
import yaml

from tests.e2e.conftest import Env
from tests.e2e.support import TERMINAL, rollout_manifest


async def test_second_rollout_fails_and_supersede_takes_over(env: Env) -> None:
    long_plan = {"steps": [{"weight": 10, "pause": "1h"}]}
    await env.kube.create_rollout(rollout_manifest("first", plan=long_plan))
    await env.kube.wait_phase("first", {"Progressing"}, timeout=30)

    await env.kube.create_rollout(rollout_manifest("second"))
    status = await env.kube.wait_phase("second", TERMINAL, timeout=20)
    assert status["phase"] == "Failed"
    assert "demo/first" in status["reason"]
    assert (await env.kube.status("first"))["phase"] == "Progressing"

    await env.kube.create_rollout(rollout_manifest("third", supersede=True))
    first = await env.kube.wait_phase("first", TERMINAL, timeout=20)
    assert first["phase"] == "RolledBack" and "demo/third" in first["reason"]
    third = await env.kube.wait_phase("third", TERMINAL, timeout=90)
    assert third["phase"] == "Succeeded", third["reason"]
    assert await env.kube.vs_weights() == {"stable": 100, "canary": 0}


async def test_kubectl_rollout_on_a_held_route_under_another_target_fails_untouched(
    env: Env,
) -> None:
    """The router-aliasing finding, the kubectl way: another `spec.target` on the route a
    running rollout holds, with no analysis at all, never gets to touch the route."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    await env.kube.create_rollout(
        rollout_manifest("first", plan={"steps": [{"weight": 10, "pause": "1h"}]}))
    await env.kube.wait_phase("first", {"Progressing"}, timeout=30)
    alias = rollout_manifest("alias", target="something-else", plan={"steps": [
        {"weight": 50, "analysis": False}, {"weight": 100, "analysis": False}]})
    proc = await asyncio.create_subprocess_exec(
        kubectl, "--kubeconfig", str(env.sandbox.kubeconfig), "apply", "-f", "-",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(yaml.safe_dump(alias).encode()), 30)
    assert proc.returncode == 0, err.decode()
    status = await env.kube.wait_phase("alias", TERMINAL, timeout=20)
    assert status["phase"] == "Failed"
    assert "demo/first" in status["reason"]
    assert "VirtualService podinfo route primary" in status["reason"]
    assert (await env.kube.status("first"))["phase"] == "Progressing"
    assert await env.kube.vs_weights() == {"stable": 90, "canary": 10}
