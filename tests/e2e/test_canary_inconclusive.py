"""No data is not bad data: idle canaries and a dead Prometheus pause, never promote."""

from __future__ import annotations

from tests.e2e.conftest import Env
from tests.e2e.support import TERMINAL, rollout_manifest


async def test_idle_canary_is_not_judged_broken(env: Env) -> None:
    await env.kube.annotate_service("podinfo", **{"sandbox.canaryd.io/rps": "0"})
    await env.kube.create_rollout(rollout_manifest())
    status = await env.kube.wait_phase("podinfo-v2", {"Paused", *TERMINAL}, timeout=60)
    assert status["phase"] == "Paused", status["reason"]
    assert status["pausedBy"] == "analysis"
    assert status["failures"] == 0
    assert all(c["verdict"] == "Inconclusive" for c in status["checks"])
    assert any("too few requests" in c["reason"] for c in status["checks"])
    assert await env.kube.vs_weights() == {"stable": 80, "canary": 20}


async def test_prometheus_outage_pauses_then_resume_completes(env: Env) -> None:
    await env.kube.create_rollout(rollout_manifest(plan={"steps": [{"weight": 20},
                                                                   {"weight": 40, "pause": "1h"}]}))
    status = await env.kube.wait_phase("podinfo-v2", {"Progressing"}, timeout=30)

    async def second_step() -> bool:
        return (await env.kube.status("podinfo-v2")).get("stepIndex") == 1

    from tests.e2e.support import eventually

    await eventually(second_step, timeout=60, what="step 2")
    prometheus = env.sandbox.prometheus
    assert prometheus is not None
    prometheus.kill()
    status = await env.kube.wait_phase("podinfo-v2", {"Paused", *TERMINAL}, timeout=60)
    assert status["phase"] == "Paused", status["reason"]
    assert "query failed" in status["reason"]
    assert await env.kube.vs_weights() == {"stable": 60, "canary": 40}
    phases = [h["phase"] for h in status["history"]]
    assert "Promoting" not in phases and "Succeeded" not in phases

    await prometheus.restart()
    await env.kube.act("podinfo-v2", "promote")
    status = await env.kube.wait_phase("podinfo-v2", TERMINAL, timeout=30)
    assert status["phase"] == "Succeeded"
