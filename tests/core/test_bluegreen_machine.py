"""Blue-green through the same state machine: preview step, switch, scale-down, rollback."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from canaryd.core import machine
from canaryd.core.model import (
    CheckResult,
    Phase,
    RolloutSpec,
    Verdict,
)
from canaryd.core.plan import resolve_analysis, steps
from tests.core import driver
from tests.core.test_machine import SETTINGS

T0 = driver.T0
READY = driver.READY


def spec(**bg: Any) -> RolloutSpec:
    return RolloutSpec.model_validate({
        "strategy": "blueGreen", "target": "shop", "version": "2",
        "router": {"service": {"activeService": "shop", "previewService": "shop-preview",
                               "blue": "v1", "green": "v2"}},
        "workloads": {"stable": "shop-blue", "canary": "shop-green"},
        "blueGreen": {"postPromotion": "20s", **bg},
        "analysis": {"profile": "p"},
    })


class Driver(driver.Driver):
    """The shared driver; its router is the active Service's selector (stable: blue)."""

    def __init__(self, s: RolloutSpec) -> None:
        bg = s.blue_green
        assert bg is not None
        super().__init__(machine.Context(
            steps=steps(s), analysis=resolve_analysis(SETTINGS, s), ready_timeout=60,
            scale_down=("shop-blue", bg.scale_down_delay) if bg.scale_down else None,
        ))

    def analyse(self, seconds: float, verdict: Verdict) -> None:
        at = self.now + timedelta(seconds=seconds)
        self.analysis(seconds, (CheckResult(metric="m", query="q", value=1, threshold="t",
                                            verdict=verdict, reason="r", time=at, step=0),))


def test_plan_is_preview_then_switch() -> None:
    pre, post = steps(spec(approval=True))
    assert (pre.weight, pre.gate, pre.analysis) == (0, "manual", True)
    assert (post.weight, post.pause) == (100, 20.0)


def test_green_is_checked_on_preview_then_switched_then_blue_scaled_down() -> None:
    d = Driver(spec(scaleDown=True, scaleDownDelay="30s"))
    d.tick(canary=READY)
    assert d.status.phase is Phase.PROGRESSING and d.router.canary == 0, "live stays on blue"
    d.analyse(10, Verdict.PASS)
    assert d.status.step_index == 1 and d.router.canary == 100, "switched after pre-promotion"
    d.analyse(10, Verdict.PASS)
    d.analyse(10, Verdict.PASS)
    assert d.status.phase is Phase.PROMOTING
    d.tick(29)
    assert d.scaled == [] and d.status.phase is Phase.PROMOTING
    d.tick(1)
    assert d.scaled == ["shop-blue"] and d.status.phase is Phase.PROMOTING
    d.tick(1, stable_scaled_down=True)
    assert d.status.phase is Phase.SUCCEEDED and "scaled to zero" in d.status.reason


def test_failing_pre_promotion_never_switches() -> None:
    d = Driver(spec())
    d.tick(canary=READY)
    d.analyse(10, Verdict.FAIL)
    d.analyse(10, Verdict.FAIL)
    assert d.status.phase is Phase.ROLLING_BACK
    d.tick(1)
    assert d.status.phase is Phase.ROLLED_BACK
    assert all((h.weights is None or h.weights.canary == 0) for h in d.status.history)


def test_failing_post_promotion_switches_back_to_blue() -> None:
    d = Driver(spec())
    d.tick(canary=READY)
    d.analyse(10, Verdict.PASS)
    assert d.router.canary == 100
    d.analyse(10, Verdict.FAIL)
    d.analyse(10, Verdict.FAIL)
    assert d.status.phase is Phase.ROLLING_BACK and d.router.canary == 0
    d.tick(1)
    assert d.status.phase is Phase.ROLLED_BACK


def test_without_preview_the_switch_waits_for_nothing_but_approval() -> None:
    s = spec(approval=True)
    router = s.router.model_copy(update={"service": s.router.service.model_copy(  # type: ignore[union-attr]
        update={"preview_service": None})})
    d = Driver(s.model_copy(update={"router": router}))
    assert not d.ctx.steps[0].analysis
    d.tick(canary=READY)
    assert not machine.analysis_due(d.ctx, d.status, d.now + timedelta(hours=1))
    d.tick(1)
    assert d.status.phase is Phase.PAUSED and d.status.paused_by == "gate"
    d.tick(1, action="resume")
    assert d.router.canary == 100


def test_strategy_and_router_must_agree() -> None:
    with pytest.raises(ValidationError, match=r"needs router\.service"):
        RolloutSpec.model_validate({**spec().wire(), "router": {"istio": {
            "virtualService": "v", "stable": {"host": "a"}, "canary": {"host": "b"}}}})
    with pytest.raises(ValidationError, match="plan is for canaries"):
        RolloutSpec.model_validate({**spec().wire(), "plan": {"stepWeight": 10}})
