"""Watch drops and 410 Gone for real: kube-apiserver restarted mid-rollout, and etcd compacted
past every watcher's resourceVersion before it comes back. The rollout finishes, each step
once, and the mesh (another watcher) follows the weights throughout."""

from __future__ import annotations

import pytest

from canaryd.sandbox.realkube import RealKube
from tests.e2e.conftest import Env
from tests.e2e.support import TERMINAL, canary_share, eventually, rollout_manifest

KUBE_BACKENDS = ("real",)


@pytest.mark.parametrize("compact", [False, True], ids=["restart", "compact-then-restart"])
async def test_rollout_survives_an_apiserver_restart(
    env: Env, kube_backend: RealKube, compact: bool
) -> None:
    plan = {"steps": [{"weight": 20, "pause": "6s"}, {"weight": 50, "pause": "6s"}]}
    await env.kube.create_rollout(rollout_manifest(plan=plan))
    await env.kube.wait_phase("podinfo-v2", {"Progressing"}, timeout=60)

    async def at_step_one() -> bool:
        return (await env.kube.vs_weights())["canary"] == 20

    await eventually(at_step_one, timeout=30, what="step 1 applied")
    if compact:
        # Later writes move the revision on; compaction then makes every watcher's last
        # resourceVersion too old, so each resumes with 410 Gone and has to list again.
        await env.kube.annotate_deployment("podinfo-stable", **{"test/nudge": "1"})
        revision = await kube_backend.compact_etcd()
        assert revision > 0
    await kube_backend.restart_apiserver()

    status = await env.kube.wait_phase("podinfo-v2", TERMINAL, timeout=120)
    assert status["phase"] == "Succeeded", status["reason"]
    triggers = [h["trigger"] for h in status["history"]]
    assert triggers == ["CanaryReady", "StepPassed", "AllStepsPassed", "StableUpdated",
                        "TrafficConfirmed"]
    assert [h["weights"]["canary"] for h in status["history"]] == [20, 50, 50, 0, 0]

    async def on_stable() -> bool:
        share = await canary_share(env.sandbox.prometheus_url)
        return share is not None and share < 0.01

    await eventually(on_stable, timeout=30, what="the mesh following the final weights")
