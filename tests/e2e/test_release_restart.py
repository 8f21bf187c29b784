"""SIGKILL of the daemon at two of a release's boundaries (the emulator's Deployments take 4 s
to roll out here): while the canary rolls out the new image (Pending), and after the analysed
pod template went onto stable, while stable rolls out (Promoting). Each restarted daemon
converges: the canary's and stable's specs each written once, every transition once, all
traffic back on stable, the canary at zero."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import config

from canaryd.sandbox.runner import Sandbox
from tests.e2e.support import TERMINAL, Kube, eventually, rollout_manifest
from tests.e2e.test_canary_restart import spawn

pytestmark = pytest.mark.prometheus
IMAGE = "ghcr.io/stefanprodan/podinfo:6.8.0"


@pytest.fixture
async def slow_sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(rps=200, deployment_ready_delay=4.0) as sb:
        yield sb


async def test_sigkill_while_stable_rolls_out_then_restart_converges(
    slow_sandbox: Sandbox, tmp_path: object
) -> None:
    sandbox = slow_sandbox
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    kube = Kube(api)
    logfile = open(f"{tmp_path}/daemon.log", "wb")  # noqa: SIM115
    proc = spawn(sandbox, logfile)

    async def stable() -> Any:
        return await kube.apps.read_namespaced_deployment("podinfo-stable", "demo")

    async def canary() -> Any:
        return await kube.apps.read_namespaced_deployment("podinfo-canary", "demo")

    try:
        generation = (await stable()).metadata.generation
        canary_generation = (await canary()).metadata.generation
        await kube.create_rollout(rollout_manifest(version=IMAGE))

        async def canary_rolling_out() -> bool:
            c = await canary()
            images = [x.image for x in c.spec.template.spec.containers]
            return images == [IMAGE] and (c.status.updated_replicas or 0) < c.spec.replicas

        await eventually(canary_rolling_out, timeout=30, what="the canary rolling out the image")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        status = await kube.status("podinfo-v2")
        assert status["phase"] == "Pending" and status["release"]["stage"] == "CanaryStart"
        assert await kube.vs_weights() == {"stable": 100, "canary": 0}
        proc = spawn(sandbox, logfile)

        async def rolling_out() -> bool:
            s = await stable()
            images = [c.image for c in s.spec.template.spec.containers]
            return images == [IMAGE] and (s.status.updated_replicas or 0) < s.spec.replicas

        await eventually(rolling_out, timeout=90, what="stable rolling out the new template")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        status = await kube.status("podinfo-v2")
        assert status["phase"] == "Promoting" and status["release"]["stage"] == "StableUpdate"
        assert await kube.vs_weights() == {"stable": 50, "canary": 50}, "held while stable rolls"
        await asyncio.sleep(5)  # stable finishes its rollout with nobody watching
        proc = spawn(sandbox, logfile)
        status = await kube.wait_phase("podinfo-v2", TERMINAL, timeout=60)
        assert status["phase"] == "Succeeded", status["reason"]
        assert [h["trigger"] for h in status["history"]] == [
            "CanaryReady", "StepPassed", "AllStepsPassed", "StableUpdated", "TrafficConfirmed"]
        assert [h["weights"]["canary"] for h in status["history"]] == [20, 50, 50, 0, 0]
        after = await stable()
        assert after.metadata.generation == generation + 1, "stable's spec written once"
        # The canary: the image and replicas in one write, then the scale-down.
        assert (await canary()).metadata.generation == canary_generation + 2
        assert [c.image for c in after.spec.template.spec.containers] == [IMAGE]
        assert after.spec.template.metadata.labels["track"] == "stable"
        assert await kube.vs_weights() == {"stable": 100, "canary": 0}
        canary = await kube.apps.read_namespaced_deployment("podinfo-canary", "demo")
        assert canary.spec.replicas == 0

        async def stable_serves() -> bool:
            return (await stable()).status.available_replicas == after.spec.replicas

        await eventually(stable_serves, timeout=10, what="stable available")
    finally:
        proc.kill()
        proc.wait(timeout=10)
        logfile.close()
        await api.close()
