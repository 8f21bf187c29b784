"""A healthy canary walks every step and is promoted; operator actions are honoured."""

from __future__ import annotations

from pathlib import Path

import yaml
from prometheus_client import generate_latest

from tests.deploy.support import kubectl
from tests.e2e.conftest import Env
from tests.e2e.support import (
    GROUP,
    NS,
    PLURAL,
    TERMINAL,
    VERSION,
    canary_share,
    eventually,
    rollout_manifest,
)

# Judged by the embedded emulator and by the real control plane (tests/realkube.py).
KUBE_BACKENDS = ("emulator", "real")


async def test_healthy_canary_is_promoted_step_by_step(env: Env) -> None:
    await env.kube.create_rollout(rollout_manifest())
    status = await env.kube.wait_phase("podinfo-v2", TERMINAL, timeout=90)
    assert status["phase"] == "Succeeded", status["reason"]
    history = status["history"]
    assert [h["trigger"] for h in history] == [
        "CanaryReady", "StepPassed", "AllStepsPassed", "StableUpdated", "TrafficConfirmed",
    ]
    # Promotion holds the traffic where analysis approved it until stable runs the new
    # version, then all of it goes back to stable: the steady state the next release needs.
    assert [h["weights"]["canary"] for h in history] == [20, 50, 50, 0, 0]
    assert await env.kube.vs_weights() == {"stable": 100, "canary": 0}
    version = status["release"]["to"]["images"]["podinfo"]
    stable = await env.kube.apps.read_namespaced_deployment("podinfo-stable", "demo")
    canary = await env.kube.apps.read_namespaced_deployment("podinfo-canary", "demo")
    assert [c.image for c in stable.spec.template.spec.containers] == [version]
    assert stable.spec.template.metadata.labels["track"] == "stable"
    assert canary.spec.replicas == 0
    # Every step advanced on a passing run whose value, threshold and query were recorded.
    passed_steps = {c["stepIndex"] for c in status["checks"] if c["verdict"] == "Pass"}
    assert passed_steps == {0, 1}
    for check in status["checks"]:
        assert check["query"] and check["threshold"]
        assert check["verdict"] != "Fail"
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Completed"] == "True" and conditions["Promoted"] == "True"
    assert conditions["StableUpdated"] == conditions["CanaryScaledDown"] == "True"

    async def on_stable() -> bool:
        share = await canary_share(env.sandbox.prometheus_url)
        return share is not None and share < 0.01

    await eventually(on_stable, timeout=20, what="the mesh sending all traffic to stable")

    # Its series in /metrics (weight, checks) go with it: they used to stay forever.
    assert env.daemon is not None
    registry = env.daemon.metrics.registry

    async def series() -> list[str]:
        return [line for line in generate_latest(registry).decode().splitlines()
                if 'rollout="podinfo-v2"' in line and not line.startswith("#")]

    kept = {line.split("{")[0] for line in await series()}
    assert {"canaryd_rollout_canary_weight", "canaryd_check_value"} <= kept, kept
    await env.kube.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL,
                                                          "podinfo-v2")

    async def gone() -> bool:
        return not await series()

    await eventually(gone, timeout=20, what="the deleted rollout's series removed")


async def test_operator_abort_rolls_back_and_verifies(env: Env) -> None:
    await env.kube.create_rollout(rollout_manifest(plan={"steps": [{"weight": 30, "pause": "5m"}]}))
    await env.kube.wait_phase("podinfo-v2", {"Progressing"}, timeout=30)

    async def at_step() -> bool:  # status is written first, then the router
        return await env.kube.vs_weights() == {"stable": 70, "canary": 30}

    await eventually(at_step, timeout=10, what="step 1 on the router")
    await env.kube.act("podinfo-v2", "pause")
    status = await env.kube.wait_phase("podinfo-v2", {"Paused"}, timeout=15)
    assert status["pausedBy"] == "operator"
    await env.kube.act("podinfo-v2", "abort")
    status = await env.kube.wait_phase("podinfo-v2", TERMINAL, timeout=15)
    assert status["phase"] == "Aborted"
    assert "aborted by operator" in status["reason"]
    assert await env.kube.vs_weights() == {"stable": 100, "canary": 0}
    rollout = await env.kube.rollout("podinfo-v2")
    assert "canaryd.io/action" not in (rollout["metadata"].get("annotations") or {})


async def test_a_tightened_threshold_applied_with_kubectl_is_the_one_in_force(
    env: Env, tmp_path: Path
) -> None:
    body = rollout_manifest()
    body["spec"]["analysis"]["thresholds"] = {"istio-latency-p99": {"max": 150}}
    path = tmp_path / "rollout.yaml"
    path.write_text(yaml.safe_dump(body))
    # Not subprocess.run: the emulator serves from this event loop.
    assert env.sandbox.kubeconfig is not None
    await kubectl(env.sandbox.kubeconfig, "apply", "-f", str(path))
    status = await env.kube.wait_phase("podinfo-v2", TERMINAL, timeout=90)
    assert status["phase"] == "Succeeded", status["reason"]
    latency = [c for c in status["checks"] if c["metric"] == "istio-latency-p99"]
    assert latency and all("150" in c["threshold"] for c in latency), latency
