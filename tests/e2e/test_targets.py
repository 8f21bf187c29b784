"""One active rollout per target; supersede rolls the running one back first."""

from __future__ import annotations

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
    assert await env.kube.vs_weights() == {"stable": 0, "canary": 100}
