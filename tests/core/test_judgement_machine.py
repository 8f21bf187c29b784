"""The state machine with real verdicts: evidence carried across steps, decisive sequential
failures, waiting for evidence, comparisons at 100%, and decisions stamped with the time of
their observations. Virtual clock, no I/O."""

from __future__ import annotations

from datetime import datetime, timedelta

from canaryd.core import machine
from canaryd.core.model import CheckResult, Phase, RolloutSpec, RolloutStatus, Weights
from canaryd.core.plan import resolve_analysis, steps
from canaryd.core.settings import parse_settings
from canaryd.core.verdict import Measurement, judge
from tests.core import driver

T0 = driver.T0
SETTINGS = parse_settings({"profiles": {"p": {
    "interval": "10s", "minInterval": "1s", "minRequests": 10,
    "checks": [{"metric": "istio-success-rate", "min": 99},
               {"metric": "istio-error-count", "sequential": {"alpha": 0.01, "ratio": 2}}],
    "limits": {"failures": 3, "consecutiveFailures": 2, "consecutiveInconclusive": 3},
}}})
READY = driver.READY


def spec(plan: dict[str, object]) -> RolloutSpec:
    return RolloutSpec.model_validate({
        "target": "podinfo", "version": "v2",
        "router": {"istio": {"virtualService": "podinfo",
                             "stable": {"host": "podinfo", "subset": "stable"},
                             "canary": {"host": "podinfo", "subset": "canary"}}},
        "workloads": {"stable": "podinfo-stable", "canary": "podinfo-canary"},
        "plan": plan, "analysis": {"profile": "p"},
    })


class Driver(driver.Driver):
    """The shared driver on the profile's real checks, fed given counts as the runtime
    would feed Prometheus' answers."""

    def __init__(self, plan: dict[str, object]) -> None:
        s = spec(plan)
        super().__init__(machine.Context(steps=steps(s), analysis=resolve_analysis(SETTINGS, s),
                                         ready_timeout=60))

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
    assert all(c.evidence is None for c in d.status.checks), "kept once, in status.evidence"
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
    # Past its pause (0 s), waiting: woken for the next run, not at once over and over (it
    # used to ask for 0 s, which the daemon's queue turned into a decision every 50 ms).
    assert decision.requeue_after == 9
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


def test_a_query_offset_delays_each_run_and_its_windows_still_tile_the_step() -> None:
    """prometheus.queryOffset 2 s: a run is due interval + 2 s after its anchor, evaluated
    2 s before; a 20 s analysed step gets both of its 10 s windows judged."""
    d = Driver({"steps": [{"weight": 10, "pause": "20s"}, {"weight": 50}]})
    d.ctx = machine.Context(steps=d.ctx.steps, analysis=resolve_analysis(parse_settings({
        **SETTINGS.model_dump(by_alias=True, mode="json"), "prometheus": {"queryOffset": "2s"}}),
        spec({"steps": [{"weight": 10}]})), ready_timeout=60)
    assert d.ctx.analysis is not None
    d.tick(canary=READY)
    windows = []
    for anchor in (0, 10):  # the step's start, then the last run's evaluation time
        woken = T0 + timedelta(seconds=anchor + 10)  # a wake-up an interval on: not yet
        assert d.tick((woken - d.now).total_seconds()).requeue_after == 2
        assert d.status.step_index == 0
        d.now += timedelta(seconds=2)
        assert machine.analysis_due(d.ctx, d.status, d.now)
        at = machine.evaluation_time(d.ctx.analysis, d.now)
        d.tick(analysis=d.results(1, 9, at), analysis_time=at)
        windows.append(((at - T0).total_seconds() - 10, (at - T0).total_seconds()))
    assert windows == [(0, 10), (10, 20)]  # each window ends where the next starts
    assert d.status.step_index == 1 and d.status.step_started_at == T0 + timedelta(seconds=22)


def test_a_failing_dry_run_check_is_recorded_and_never_decides() -> None:
    raw = {"profiles": {"p": {
        "interval": "10s", "minInterval": "1s", "minRequests": 10,
        "checks": [{"metric": "istio-success-rate", "min": 99},
                   {"metric": "istio-latency-p99", "max": 1, "dryRun": True},
                   {"metric": "istio-error-count", "dryRun": True,
                    "sequential": {"alpha": 0.01}}],
        "limits": {"failures": 1, "consecutiveFailures": 1, "consecutiveInconclusive": 1},
    }}}
    settings = parse_settings(raw)
    s = spec({"steps": [{"weight": 50}, {"weight": 80}]})
    ctx = machine.Context(steps=steps(s), analysis=resolve_analysis(settings, s),
                          ready_timeout=60)
    assert ctx.analysis is not None
    status = machine.decide(ctx, RolloutStatus(), machine.Observations(
        canary=READY, weights=Weights(stable=100, canary=0)), T0).status
    now = T0
    for step in range(2):
        now += timedelta(seconds=10)
        share = status.weights.canary / 100 if status.weights else 0
        results = tuple(judge(c, Measurement(
            c.metric, "q", value={"istio-success-rate": 99.9, "istio-latency-p99": 90.0}.get(
                c.metric, 40.0), stable_value=1.0, requests=5000 * share,
            stable_requests=5000 * (1 - share), canary_share=share,
            evidence=tuple(status.evidence)), min_requests=10, now=now, step=step)
            for c in ctx.analysis.checks)
        assert [r.verdict.value for r in results] == ["Pass", "Fail", "Fail"]
        status = machine.decide(ctx, status, machine.Observations(
            analysis=results, weights=status.weights), now).status
    assert status.phase is Phase.PROMOTING, status.reason
    assert status.failures == 0 and status.consecutive_failures == 0
    dry = [c for c in status.checks if c.dry_run]
    assert len(dry) == 4 and all(c.verdict.value == "Fail" for c in dry)
    assert {e.key for e in status.evidence} == {"istio-error-count"}


def test_a_rollout_may_add_dry_run_checks_only_and_they_are_validated() -> None:
    import pytest
    from pydantic import ValidationError

    from canaryd.core.plan import PlanError

    def with_checks(checks: list[dict[str, object]]) -> RolloutSpec:
        raw = spec({"steps": [{"weight": 50}]}).model_dump(by_alias=True, exclude_none=True)
        raw["analysis"]["checks"] = checks
        return RolloutSpec.model_validate(raw)

    with pytest.raises(ValidationError, match=r"may only add dry-run checks"):
        with_checks([{"metric": "istio-latency-p99", "max": 100}])
    with pytest.raises(PlanError, match=r"spec.analysis.checks\[0\].metric: unknown metric"):
        resolve_analysis(SETTINGS, with_checks([{"metric": "nope", "max": 1, "dryRun": True}]))
    added = resolve_analysis(SETTINGS, with_checks(
        [{"metric": "istio-latency-p99", "max": 100, "dryRun": True}]))
    assert [c.metric for c in added.checks][-1] == "istio-latency-p99"
    assert added.checks[-1].dry_run


def test_a_value_too_close_to_call_holds_the_step_without_counting() -> None:
    d = Driver({"steps": [{"weight": 50}, {"weight": 80}]})
    d.tick(canary=READY)
    floor = next(c for c in d.ctx.analysis.checks if c.sequential is None)  # type: ignore[union-attr]

    def rate(value: float, requests: float) -> CheckResult:
        return judge(floor, Measurement("istio-success-rate", "q", value=value,
                                        requests=requests, unit="%", canary_share=0.5),
                     min_requests=10, now=d.now, step=0)

    for _ in range(4):  # 98.4% of 120 requests: within 0.91 points of 99%
        d.now += timedelta(seconds=10)
        result = rate(100 - 2 / 120 * 100, 120)
        assert result.close and result.verdict.value == "Inconclusive"
        d.tick(analysis=(result,), analysis_time=d.now)
    assert d.status.phase is Phase.PROGRESSING and d.status.step_index == 0
    assert d.status.consecutive_inconclusive == 0 and d.status.passed_runs_in_step == 0
    d.now += timedelta(seconds=10)
    d.tick(analysis=(rate(99.9, 5000),), analysis_time=d.now)
    assert d.status.step_index == 1
