"""Faulty canaries are rolled back, with traffic verified back on stable."""

from __future__ import annotations

from tests.e2e.conftest import Env
from tests.e2e.support import TERMINAL, canary_share, eventually, rollout_manifest

# Judged by the embedded emulator and by the real control plane (tests/realkube.py).
KUBE_BACKENDS = ("emulator", "real")


async def traffic_back_on_stable(env: Env) -> None:
    async def off_canary() -> bool:
        share = await canary_share(env.sandbox.prometheus_url)
        return share is not None and share < 0.01

    await eventually(off_canary, timeout=20, what="the canary's traffic share dropping to 0")


async def test_five_percent_errors_roll_back_after_the_first_failed_interval(env: Env) -> None:
    # ~600 canary requests per 3 s window: 5% errors read 95 +/- 1, never a pass by noise.
    await env.kube.annotate_service("podinfo", **{"sandbox.canaryd.io/rps": "1000"})
    await env.kube.annotate_deployment(
        "podinfo-canary", **{"sandbox.canaryd.io/error-ratio": "0.05"}
    )
    await env.kube.create_rollout(rollout_manifest())
    status = await env.kube.wait_phase("podinfo-v2", TERMINAL, timeout=90)
    assert status["phase"] == "RolledBack", status["reason"]
    assert status["failures"] == 1, "the sandbox profile allows no failed run"
    failed = [c for c in status["checks"] if c["verdict"] == "Fail"]
    assert [c["metric"] for c in failed] == ["istio-success-rate"]
    assert 88 < failed[0]["value"] < 99 and failed[0]["threshold"] == ">= 99%"
    assert "istio-success-rate" in status["reason"] and "traffic verified" in status["reason"]
    assert [h["trigger"] for h in status["history"]] == [
        "CanaryReady", "AnalysisFailed", "TrafficConfirmed",
    ]
    assert await env.kube.vs_weights() == {"stable": 100, "canary": 0}
    await traffic_back_on_stable(env)


async def test_latency_regression_rolls_back(env: Env) -> None:
    await env.kube.annotate_deployment(
        "podinfo-canary",
        **{"sandbox.canaryd.io/latency-p50-ms": "120", "sandbox.canaryd.io/latency-p99-ms": "900"},
    )
    await env.kube.create_rollout(rollout_manifest())
    status = await env.kube.wait_phase("podinfo-v2", TERMINAL, timeout=90)
    assert status["phase"] == "RolledBack", status["reason"]
    failed = [c for c in status["checks"] if c["verdict"] == "Fail"]
    assert failed and all(c["metric"] == "istio-latency-p99" for c in failed)
    assert failed[0]["value"] > 200
    await traffic_back_on_stable(env)
