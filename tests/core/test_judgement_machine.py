"""The state machine with real verdicts: evidence carried across steps, decisive sequential
failures, waiting for evidence, comparisons at 100%, and decisions stamped with the time of
their observations. Virtual clock, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from canaryd.config import parse_settings
from canaryd.core import machine
from canaryd.core.model import CheckResult, Phase, RolloutSpec, RolloutStatus, Weights
from canaryd.core.plan import resolve_analysis, steps
from canaryd.core.verdict import Measurement, judge

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = parse_settings({"profiles": {"p": {
    "interval": "10s", "minInterval": "1s", "minRequests": 10,
    "checks": [{"metric": "istio-success-rate", "min": 99},
               {"metric": "istio-error-count", "sequential": {"alpha": 0.01, "ratio": 2}}],
    "limits": {"failures": 3, "consecutiveFailures": 2, "consecutiveInconclusive": 3},
}}})
READY = machine.WorkloadState(exists=True, available=True)


def spec(plan: dict[str, object]) -> RolloutSpec:
    return RolloutSpec.model_validate({
        "target": "podinfo", "version": "v2",
        "router": {"istio": {"virtualService": "podinfo",
                             "stable": {"host": "podinfo", "subset": "stable"},
                             "canary": {"host": "podinfo", "subset": "canary"}}},
        "workloads": {"stable": "podinfo-stable", "canary": "podinfo-canary"},
        "plan": plan, "analysis": {"profile": "p"},
    })


class Driver:
    """Runs the profile's real checks on given counts, like the runtime would."""

    def __init__(self, plan: dict[str, object]) -> None:
        s = spec(plan)
        self.ctx = machine.Context(steps=steps(s), analysis=resolve_analysis(SETTINGS, s),
                                   ready_timeout=60)
        self.status = RolloutStatus()
        self.now = T0
        self.router = Weights(stable=100, canary=0)

    def tick(self, seconds: float = 0.0, **obs: object) -> machine.Decision:
        self.now += timedelta(seconds=seconds)
        obs.setdefault("weights", self.router)
        decision = machine.decide(self.ctx, self.status,
                                  machine.Observations(**obs),  # type: ignore[arg-type]
                                  self.now)
        self.status = decision.status
        for action in decision.actions:
            self.router = action.weights
        return decision

    def results(self, canary_errors: float, stable_errors: float,
                at: datetime) -> tuple[CheckResult, ...]:
        assert self.ctx.analysis is not None
        share = self.router.canary / 100
        out = []
        for check in self.ctx.analysis.checks:
            requests, stable_requests = 10_000 * share, 10_000 * (1 - share)
            if check.sequential is None:
                m = Measurement(check.metric, "q", value=99.9,
                                stable_value=99.9, requests=requests, canary_share=share)
            else:
                m = Measurement(check.metric, "q", value=canary_errors,
                                stable_value=stable_errors, requests=requests,
                                stable_requests=stable_requests, canary_share=share,
                                evidence=tuple(self.status.evidence))
            out.append(judge(check, m, min_requests=10, now=at, step=self.status.step_index))
        return tuple(out)

    def analyse(self, canary_errors: float, stable_errors: float, *, after: float = 10,
                lag: float = 0.0) -> machine.Decision:
        """An analysis evaluated `after` seconds on, whose answers arrive `lag` s later."""
        self.now += timedelta(seconds=after)
        assert machine.analysis_due(self.ctx, self.status, self.now)
        evaluated = self.now
        results = self.results(canary_errors, stable_errors, evaluated)
        return self.tick(lag, analysis=results, analysis_time=evaluated)


def test_evidence_is_kept_across_steps_and_decides_at_once() -> None:
    d = Driver({"steps": [{"weight": 10}, {"weight": 20}, {"weight": 50}]})
    d.tick(canary=READY)
    d.analyse(2, 8)  # 10%: 2 of 10 errors, a little more than 10%
    assert d.status.step_index == 1 and d.router.canary == 20
    d.analyse(4, 8)  # 20%: 4 of 12
    assert d.status.step_index == 2
    [evidence] = d.status.evidence
    assert (evidence.key, evidence.canary, evidence.stable) == ("istio-error-count", 6, 16)
    assert evidence.expected == 10 * 0.1 + 12 * 0.2
    d.analyse(16, 1)  # 50%: 16 of 17; with the evidence before it, decisive at once
    assert d.status.phase is Phase.ROLLING_BACK and d.router.canary == 0
    assert "decisive at once" in d.status.reason and "istio-error-count" in d.status.reason
    assert d.status.consecutive_failures == 1, "one failed run was enough"


def test_healthy_canary_passes_a_100_percent_step_on_its_fixed_checks() -> None:
    d = Driver({"steps": [{"weight": 50}, {"weight": 100, "pause": "20s"}]})
    d.tick(canary=READY)
    d.analyse(5, 5)
    assert d.router.canary == 100
    d.analyse(0, 0)
    [fixed, seq] = d.status.checks[-2:]
    assert fixed.verdict.value == "Pass" and seq.verdict.value == "NotApplicable"
    assert "100%" in seq.reason
    d.analyse(0, 0)
    assert d.status.phase is Phase.PROMOTING, "no manual promote needed"


def test_a_step_that_may_wait_waits_for_evidence_then_advances() -> None:
    d = Driver({"steps": [{"weight": 50, "maxPause": "60s"}, {"weight": 80}]})
    d.tick(canary=READY)
    d.analyse(3, 3)
    assert d.status.step_index == 0 and d.status.settled is False, "too few errors to tell"
    decision = d.tick(1)
    assert decision.requeue_after is not None and decision.requeue_after <= 9
    for _ in range(3):
        d.analyse(40, 40)
        if d.status.step_index == 1:
            break
    assert d.status.step_index == 1 and d.status.settled is True
    assert d.status.checks[-1].settled and "rules out 2x worse" in d.status.checks[-1].reason


def test_a_step_that_may_wait_advances_at_its_max_pause_without_enough_evidence() -> None:
    d = Driver({"steps": [{"weight": 50, "maxPause": "30s"}, {"weight": 80}]})
    d.tick(canary=READY)
    for _ in range(2):
        d.analyse(0, 0)
        assert d.status.step_index == 0
    d.analyse(0, 0)
    assert d.status.step_index == 1 and d.status.settled is False


def test_decisions_use_the_time_of_their_observations() -> None:
    """The analysis evaluated at t answers 2.5 s late: the run is recorded at t (its
    window), the step change at t + 2.5 s (when the weights really change)."""
    d = Driver({"steps": [{"weight": 10}, {"weight": 50, "pause": "15s"}]})
    d.tick(canary=READY)
    d.analyse(1, 9, lag=2.5)
    evaluated = d.status.checks[-1].time
    assert d.status.step_started_at == evaluated + timedelta(seconds=2.5) == d.now
    assert d.status.history[-1].time == d.now
    d.analyse(5, 5, lag=2.5)  # inside the step: the next window starts where this one ended
    assert d.status.last_analysis_at == d.status.checks[-1].time == d.now - timedelta(seconds=2.5)
    assert not machine.analysis_due(d.ctx, d.status, d.now + timedelta(seconds=7.4))
    assert d.status.step_index == 1
