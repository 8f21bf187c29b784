"""A confirmPromotion gate that keeps saying "not yet" while the canary breaks: the analysis
goes on during the hold and rolls back; the rollback and postRollout hooks are called once.
Judged by the embedded emulator and by the real control plane (tests/realkube.py)."""

from __future__ import annotations

import pytest

from tests.e2e.support import TERMINAL, eventually, rollout_manifest
from tests.hooks.conftest import Hooked, hook

pytestmark = pytest.mark.prometheus
KUBE_BACKENDS = ("emulator", "real")


async def test_a_breach_while_the_gate_holds_rolls_back(hooked: Hooked) -> None:
    kube, rec = hooked.kube, hooked.rec
    rec.answers["/cab"] = (425, {"reason": "CHG-77 awaiting approval"})
    await kube.annotate_service("podinfo", **{"sandbox.canaryd.io/rps": "1000"})
    code, created = await hooked.submit(rollout_manifest(hooks=[
        hook(rec, "cab", "confirmPromotion", interval="1s"),
        hook(rec, "page", "rollback"), hook(rec, "report", "postRollout")]))
    assert code == 201, created

    async def holding() -> bool:
        status = await kube.status("podinfo-v2")
        return "waiting for confirmPromotion" in status.get("reason", "")

    await eventually(holding, timeout=90, what="the gate holding the last step")
    await kube.annotate_deployment("podinfo-canary",
                                   **{"sandbox.canaryd.io/error-ratio": "0.05"})
    status = await kube.wait_phase("podinfo-v2", TERMINAL, timeout=90)
    assert status["phase"] == "RolledBack", status["reason"]
    assert "istio-success-rate" in status["reason"]
    assert await kube.vs_weights() == {"stable": 100, "canary": 0}

    async def reported() -> dict[str, str] | None:
        runs = {r["id"]: r["outcome"] for r in (await kube.status("podinfo-v2"))["hooks"]}
        return runs if runs.get("postRollout/report") == "Passed" else None

    runs = await eventually(reported, timeout=30, what="the postRollout hook answered")
    assert runs == {"confirmPromotion/cab": "Cancelled", "rollback/page": "Passed",
                    "postRollout/report": "Passed"}, runs
    assert len(rec.to("/page")) == 1 and len(rec.to("/report")) == 1
    assert rec.to("/page")[0].json["stage"] == "rollback"
    assert rec.to("/report")[0].json["phase"] == "RolledBack"
