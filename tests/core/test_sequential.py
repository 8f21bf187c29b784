"""The anytime-valid error test: math, false-alarm rate under repeated looks, power."""

from __future__ import annotations

import math
import random

import pytest

from canaryd.core.sequential import judge_errors, log_e_value


def test_no_errors_is_no_evidence() -> None:
    assert log_e_value((0, 0), (0.2, 0.8), 10) == pytest.approx(0.0)
    assert not judge_errors(0, 0, 0.2, alpha=0.01, k=10).rejected


def test_errors_in_proportion_to_traffic_are_not_rejected() -> None:
    result = judge_errors(20, 80, 0.2, alpha=0.01, k=10)
    assert result.e_value < 1 and not result.rejected


def test_canary_with_most_errors_on_a_small_share_is_rejected() -> None:
    result = judge_errors(30, 10, 0.2, alpha=0.01, k=10)
    assert result.rejected and result.e_value > 100
    assert result.canary_error_share == pytest.approx(0.75)


def test_a_better_canary_is_never_rejected() -> None:
    assert not judge_errors(0, 200, 0.5, alpha=0.01, k=10).rejected


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="traffic shares"):
        log_e_value((1, 1), (0.0, 1.0), 10)
    with pytest.raises(ValueError, match="counts"):
        log_e_value((-1, 1), (0.5, 0.5), 10)


def test_false_alarms_stay_below_alpha_under_continuous_monitoring() -> None:
    """1,000 healthy canaries, each looked at after every one of 200 errors: the share of
    runs ever rejected stays below alpha (a fixed-sample test checked this often would not)."""
    rng = random.Random(7)  # noqa: S311 (simulation)
    alpha, share, runs, alarms = 0.05, 0.3, 1000, 0
    for _ in range(runs):
        canary = stable = 0
        for _ in range(200):
            if rng.random() < share:
                canary += 1
            else:
                stable += 1
            if judge_errors(canary, stable, share, alpha=alpha, k=10).rejected:
                alarms += 1
                break
    assert alarms / runs < alpha


def test_a_canary_twice_as_bad_is_caught_as_data_accumulates() -> None:
    rng = random.Random(3)  # noqa: S311 (simulation)
    share = 0.2
    weight = share * 2 / (share * 2 + (1 - share))  # canary errors at twice stable's rate
    canary = stable = 0
    caught_at = None
    for n in range(1, 2001):
        if rng.random() < weight:
            canary += 1
        else:
            stable += 1
        if judge_errors(canary, stable, share, alpha=0.01, k=10).rejected:
            caught_at = n
            break
    assert caught_at is not None and caught_at < 500
    assert math.isfinite(judge_errors(canary, stable, share, alpha=0.01, k=10).e_value)


def test_verdict_accumulates_counts_within_a_step() -> None:
    from datetime import UTC, datetime

    from canaryd.config import Check
    from canaryd.core.model import Verdict
    from canaryd.core.verdict import Measurement, judge

    check = Check.model_validate({"metric": "istio-error-count", "sequential": {"alpha": 0.01}})
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def run(canary: float, stable: float, prior: tuple[float, float]) -> object:
        m = Measurement("istio-error-count", "q", value=canary, stable_value=stable,
                        requests=500, canary_share=0.2, prior=prior)
        return judge(check, m, min_requests=20, now=now, step=0)

    first = run(4, 6, (0, 0))
    assert first.verdict is Verdict.PASS and (first.errors, first.stable_errors) == (4, 6)
    later = run(9, 3, (first.errors, first.stable_errors))
    assert later.verdict is Verdict.FAIL and later.errors == 13 and later.stable_errors == 9
    assert "e-value" in later.reason and later.threshold.startswith("e-value < 100")
    idle_share = Measurement("istio-error-count", "q", value=1, stable_value=0, requests=500,
                             canary_share=0.0)
    assert judge(check, idle_share, min_requests=20, now=now, step=0).verdict is (
        Verdict.INCONCLUSIVE)
    no_errors = Measurement("istio-error-count", "q", value=None, stable_value=None,
                            requests=500, canary_share=0.5)
    assert judge(check, no_errors, min_requests=20, now=now, step=0).verdict is Verdict.PASS
