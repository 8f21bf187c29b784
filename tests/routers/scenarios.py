"""The two end-to-end stories every router must tell, written once: a healthy canary is
promoted step by step; a faulty one is rolled back and the mesh's own metrics show its
traffic gone. Each router's test module runs them against its example Rollout."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tests.routers.support import TERMINAL, Harness, eventually

Weights = Callable[[], Awaitable[dict[str, int]]]
ANALYSED = {"linkerd-success-rate", "linkerd-latency-p99"}


async def healthy_canary_is_promoted(
    h: Harness, rollout: dict[str, Any], *, apex: str, routed: Weights
) -> None:
    name = rollout["metadata"]["name"]
    await h.create_rollout(rollout)
    status = await h.wait_phase(name, TERMINAL, timeout=120)
    assert status["phase"] == "Succeeded", status.get("reason")
    # Promoted: stable runs the new version and has all the traffic back.
    assert status["weights"] == {"stable": 100, "canary": 0}
    assert await routed() == {"podinfo-stable": 100, "podinfo-canary": 0}
    assert "StableUpdated" in [entry["trigger"] for entry in status["history"]]
    # Both steps were analysed with Linkerd's proxy metrics, and passed.
    triggers = [entry["trigger"] for entry in status["history"]]
    assert triggers.count("StepPassed") == 1 and "AllStepsPassed" in triggers
    passed = [c for c in status["checks"] if c["verdict"] == "Pass"]
    assert {c["metric"] for c in passed} == ANALYSED
    assert all("response_" in c["query"] and c["requests"] > 0 for c in passed)

    async def apex_on_stable() -> bool:
        rates = await h.inbound_rates(apex)
        total = sum(rates.values())
        return total > 0 and rates.get("podinfo-canary", 0.0) / total < 0.01

    await eventually(apex_on_stable, timeout=20, what=f"{apex}'s traffic back on stable")


async def faulty_canary_is_rolled_back(
    h: Harness, rollout: dict[str, Any], *, apex: str, routed: Weights
) -> None:
    name = rollout["metadata"]["name"]
    # Enough requests per 5 s window at 20% that 5% errors read 95 +/- 1, not +/- 3.
    await h.annotate_service(apex, {"sandbox.canaryd.io/rps": "500"})
    await h.annotate_deployment("podinfo-canary", {"sandbox.canaryd.io/error-ratio": "0.05"})
    await h.create_rollout(rollout)
    status = await h.wait_phase(name, TERMINAL, timeout=120)
    assert status["phase"] == "RolledBack", status.get("reason")
    assert "traffic verified back on stable; canary podinfo-canary scaled to zero" in (
        status["reason"]), status["reason"]
    assert "linkerd-success-rate" in status["rollbackReason"]
    failed = [c for c in status["checks"] if c["verdict"] == "Fail"]
    assert failed and failed[0]["metric"] == "linkerd-success-rate"
    assert 90 < failed[0]["value"] < 99 and failed[0]["requests"] > 0
    assert status["weights"] == {"stable": 100, "canary": 0}
    assert await routed() == {"podinfo-stable": 100, "podinfo-canary": 0}

    # Through the mesh: the canary serves nothing any more, the stable serves the apex.
    async def off_canary() -> tuple[float, float] | None:
        canary = await h.canary_rate()
        stable = (await h.inbound_rates(apex)).get("podinfo-stable", 0.0)
        return (canary, stable) if canary < 0.01 and stable > 0 else None

    await eventually(off_canary, timeout=20, what="the canary's request rate dropping to 0")
