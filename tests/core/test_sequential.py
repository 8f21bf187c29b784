"""The anytime-valid share test: math, false alarms under repeated looks and changing weights,
power with evidence carried across steps, and the verdicts built on it."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest

from canaryd.core.analysisspec import Check
from canaryd.core.model import Evidence, Verdict
from canaryd.core.sequential import State, judge, log_e_within, log_e_worse, of
from canaryd.core.verdict import Measurement
from canaryd.core.verdict import judge as judge_check
from canaryd.sandbox.mesh.traffic import poisson

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_no_events_is_no_evidence() -> None:
    assert log_e_worse(of([(0.2, 0, 0)])) == pytest.approx(0.0)
    assert not judge(State(), alpha=0.01, ratio=2).rejected


def test_events_in_proportion_to_traffic_are_not_rejected() -> None:
    state = of([(0.2, 20, 80)])
    assert judge(state, alpha=0.01, ratio=2).e_value < 1
    assert (state.canary, state.stable, state.expected) == (20, 80, 20)


def test_canary_with_most_events_on_a_small_share_is_rejected() -> None:
    result = judge(of([(0.2, 30, 10)]), alpha=0.01, ratio=2)
    assert result.rejected and result.e_value > 100


def test_a_better_canary_is_never_rejected_and_enough_data_rules_out_a_worse_one() -> None:
    assert not judge(of([(0.5, 0, 200)]), alpha=0.01, ratio=2).rejected
    few, many = of([(0.5, 10, 10)]), of([(0.5, 300, 300)])
    assert not judge(few, alpha=0.01, ratio=2).settled
    assert judge(many, alpha=0.01, ratio=2).settled
    assert log_e_within(many, 2) > log_e_within(many, 1.3)


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="traffic share"):
        State().update(1.0, 1, 1)
    with pytest.raises(ValueError, match="counts"):
        State().update(0.5, -1, 1)
    with pytest.raises(ValueError, match="ratio"):
        log_e_within(State(), 1.0)
    with pytest.raises(ValueError, match="grid"):
        State(log_lr=(0.0,))


def test_evidence_carried_across_steps_decides_where_each_step_alone_cannot() -> None:
    """A canary twice as error-prone, four steps at growing weights: no step alone reaches
    1/alpha = 100; the rollout's evidence together does."""
    steps = [(0.1, 15, 65), (0.2, 27, 53), (0.3, 37, 43), (0.5, 53, 27)]
    assert all(math.exp(log_e_worse(of([c]))) < 100 for c in steps)
    assert math.exp(log_e_worse(of(steps))) > 10_000


@pytest.mark.parametrize("ratio", [1.0, 0.5])
def test_false_alarms_stay_below_alpha_under_continuous_monitoring(ratio: float) -> None:
    """2,000 canaries no worse than stable, looked at every interval while the weight climbs
    10% -> 50%, evidence carried through: the share ever rejected stays below alpha (a
    fixed-sample test looked at this often would not)."""
    rng = random.Random(7)  # noqa: S311 (simulation)
    alpha, runs, alarms = 0.05, 2000, 0
    shares = [0.1] * 5 + [0.2] * 5 + [0.3] * 5 + [0.5] * 10
    for _ in range(runs):
        state = State()
        for share in shares:
            state = state.update(share, poisson(rng, 8 * share * ratio),
                                 poisson(rng, 8 * (1 - share)))
            if judge(state, alpha=alpha, ratio=2).rejected:
                alarms += 1
                break
    assert alarms / runs < alpha


def test_a_canary_twice_as_bad_is_caught_as_evidence_accumulates() -> None:
    rng = random.Random(3)  # noqa: S311 (simulation)
    caught = []
    for _ in range(200):
        state = State()
        for interval, share in enumerate([0.1] * 5 + [0.2] * 5 + [0.5] * 10, start=1):
            state = state.update(share, poisson(rng, 30 * share * 2),
                                 poisson(rng, 30 * (1 - share)))
            if judge(state, alpha=0.01, ratio=2).rejected:
                caught.append(interval)
                break
    assert len(caught) >= 190
    assert sorted(caught)[len(caught) // 2] <= 10


# ----------------------------------------------------------------------------- verdicts

ERRORS = Check.model_validate({"metric": "istio-error-count", "sequential": {"alpha": 0.01}})
LATENCY = Check.model_validate({"metric": "istio-latency-buckets",
                                "sequential": {"alpha": 0.01, "quantiles": [0.5, 0.99]}})


def errors(canary: float | None, stable: float | None, share: float | None,
           evidence: tuple[Evidence, ...] = (), requests: float = 500) -> Measurement:
    """`requests` in all; the canary serves `share` of them."""
    return Measurement("istio-error-count", "q", value=canary, stable_value=stable,
                       requests=requests * (share or 0),
                       stable_requests=requests * (1 - (share or 0)),
                       canary_share=share, evidence=evidence)


def test_verdict_carries_evidence_across_steps() -> None:
    first = judge_check(ERRORS, errors(4, 36, 0.1), min_requests=20, now=NOW, step=0)
    assert first.verdict is Verdict.PASS and first.decisive
    [e] = first.evidence or []
    assert (e.key, e.canary, e.stable, e.expected) == ("istio-error-count", 4, 36, 4)
    # next step, 50%: the evidence at 10% is still counted
    later = judge_check(ERRORS, errors(40, 4, 0.5, (e,)), min_requests=20, now=NOW, step=1)
    assert later.verdict is Verdict.FAIL
    assert (later.errors, later.stable_errors) == (44, 40)
    assert later.expected_errors == pytest.approx(4.0 + 22.0)
    assert "e-value" in later.reason and later.threshold.startswith("e-value < 100")
    no_errors = judge_check(ERRORS, errors(None, None, 0.5), min_requests=20, now=NOW, step=0)
    assert no_errors.verdict is Verdict.PASS and no_errors.errors == 0


def test_the_null_is_the_measured_split_not_the_planned_one() -> None:
    """Stable also serves traffic the split does not route (other callers): at 50% planned
    but 25% measured, 25% of the errors on the canary is no evidence against it."""
    m = Measurement("istio-error-count", "q", value=25, stable_value=75, requests=1000,
                    stable_requests=3000, canary_share=0.5)
    result = judge_check(ERRORS, m, min_requests=20, now=NOW, step=0)
    assert result.verdict is Verdict.PASS and result.expected_errors == 25
    assert "25.0% of requests" in result.reason


@pytest.mark.parametrize(("share", "why"), [(1.0, "100%"), (0.0, "0%"), (None, "no traffic")])
def test_comparisons_are_not_applicable_without_both_versions_on_live_traffic(
    share: float | None, why: str
) -> None:
    result = judge_check(ERRORS, errors(5, 0, share), min_requests=20, now=NOW, step=0)
    assert result.verdict is Verdict.NOT_APPLICABLE and why in result.reason
    if share != 1.0:
        return
    ratio_only = Check.model_validate({"metric": "m", "maxRatioToStable": 1.5})
    m = Measurement("m", "q", value=300, requests=500, canary_share=share)
    assert judge_check(ratio_only, m, min_requests=1, now=NOW, step=0).verdict is (
        Verdict.NOT_APPLICABLE)
    both = Check.model_validate({"metric": "m", "max": 500, "maxRatioToStable": 1.5})
    fixed = judge_check(both, m, min_requests=1, now=NOW, step=0)
    assert fixed.verdict is Verdict.PASS and "maxRatioToStable: no stable traffic" in fixed.reason


def _histogram(total: float, slow_250: float, slow_100: float) -> dict[float, float]:
    return {50.0: total * 0.5, 100.0: total - slow_100, 250.0: total - slow_250,
            500.0: total, math.inf: total}


def test_latency_judged_on_the_slow_requests_of_both_versions() -> None:
    # stable: 9000 requests, 1% above 100ms... canary 1000 requests, 3x the slow ones
    stable = _histogram(9000, 9, 90)
    slow = _histogram(1000, 3, 30)
    same = _histogram(1000, 1, 10)

    def run(canary: dict[float, float]) -> tuple[Verdict, float | None]:
        m = Measurement("istio-latency-buckets", "q", requests=1000, canary_share=0.1,
                        buckets=canary, stable_buckets=stable)
        r = judge_check(LATENCY, m, min_requests=20, now=NOW, step=0)
        return r.verdict, r.value

    assert run(same)[0] is Verdict.PASS
    verdict, e_value = run(slow)
    assert verdict is Verdict.FAIL and e_value is not None and e_value > 100
    empty = Measurement("istio-latency-buckets", "q", requests=1000, canary_share=0.1,
                        buckets={}, stable_buckets={})
    assert judge_check(LATENCY, empty, min_requests=20, now=NOW, step=0).verdict is Verdict.PASS


def test_a_fixed_threshold_stable_violates_too_is_left_to_the_comparison_checks() -> None:
    floor = Check.model_validate({"metric": "istio-success-rate", "min": 99})

    def run(canary: float, stable: float, compared: bool) -> Verdict:
        m = Measurement("istio-success-rate", "q", value=canary, stable_value=stable,
                        requests=500, canary_share=0.2, compared=compared)
        return judge_check(floor, m, min_requests=20, now=NOW, step=0).verdict

    assert run(95, 95.5, compared=True) is Verdict.INCONCLUSIVE  # a shared incident
    assert run(95, 99.9, compared=True) is Verdict.FAIL  # the canary alone
    assert run(98, 98.9, compared=True) is Verdict.FAIL  # stable barely misses it: 10x less
    assert run(95, 95.5, compared=False) is Verdict.FAIL  # nothing else would judge it


def test_a_percentage_of_few_requests_misses_its_threshold_only_beyond_sampling_error() -> None:
    floor = Check.model_validate({"metric": "istio-success-rate", "min": 99})

    def run(value: float, requests: float) -> Verdict:
        m = Measurement("istio-success-rate", "q", value=value, requests=requests, unit="%")
        return judge_check(floor, m, min_requests=20, now=NOW, step=0).verdict

    assert run(100 - 2 / 120 * 100, 120) is Verdict.INCONCLUSIVE  # 2 errors: +-0.91 points
    assert run(100 - 3 / 120 * 100, 120) is Verdict.FAIL
    assert run(98.8, 6000) is Verdict.FAIL  # +-0.13 points at 6000 requests
    p99 = Check.model_validate({"metric": "istio-latency-p99", "max": 200})
    m = Measurement("istio-latency-p99", "q", value=201, requests=120, unit="ms")
    assert judge_check(p99, m, min_requests=20, now=NOW, step=0).verdict is Verdict.FAIL
