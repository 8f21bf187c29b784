"""Verdicts: pure functions from measurements to pass / fail / inconclusive.

A failed query is a measurement with an error, not an exception (as in Argo Rollouts), and
every outcome keeps its value, threshold, query and reason, so nothing is decided unrecorded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from canaryd.config import Check
from canaryd.core import sequential, units
from canaryd.core.model import CheckResult, Verdict


@dataclass(frozen=True)
class Measurement:
    metric: str
    query: str
    value: float | None = None
    stable_value: float | None = None
    requests: float | None = None
    error: str | None = None
    # Sequential checks: the canary's traffic share in this step, and the error counts
    # (canary, stable) already seen in this step before this interval.
    canary_share: float | None = None
    prior: tuple[float, float] = (0.0, 0.0)
    unit: str = ""  # the metric template's, for display


def describe_threshold(check: Check, unit: str = "") -> str:
    parts = []
    if check.min is not None:
        parts.append(f">= {units.limit(check.min, unit)}")
    if check.max is not None:
        parts.append(f"<= {units.limit(check.max, unit)}")
    if check.max_ratio_to_stable is not None:
        parts.append(f"<= {check.max_ratio_to_stable:g} x stable")
    if check.sequential is not None:
        parts.append(f"e-value < {1 / check.sequential.alpha:g}")
    return " and ".join(parts)


def _count(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else 0.0


def _finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value) and not math.isinf(value)


def judge(
    check: Check, m: Measurement, *, min_requests: int, now: datetime, step: int
) -> CheckResult:
    unit = m.unit

    def result(verdict: Verdict, reason: str, **extra: float | None) -> CheckResult:
        if check.sequential is not None and "value" not in extra:
            extra.update(_evidence_so_far(check, m))  # the e-value, never a raw count
        value = extra.pop("value", m.value)
        return CheckResult(
            metric=check.metric,
            query=m.query,
            value=value if _finite(value) else None,
            stable_value=m.stable_value if _finite(m.stable_value) else None,
            requests=m.requests if _finite(m.requests) else None,
            unit=unit or None,
            **extra,
            threshold=describe_threshold(check, unit),
            verdict=verdict,
            reason=reason,
            time=now,
            step=step,
        )

    if m.error is not None:
        return result(Verdict.INCONCLUSIVE, f"query failed: {m.error}")
    if m.requests is not None and m.requests < min_requests:
        return result(
            Verdict.INCONCLUSIVE,
            f"too few requests: {m.requests:.0f} < {min_requests} (canary idle or starved)",
        )
    if check.sequential is not None:
        return _sequential(check, m, result)
    if m.value is None:
        return result(Verdict.INCONCLUSIVE, "no data")
    if math.isnan(m.value):
        return result(Verdict.INCONCLUSIVE, "value is NaN (no requests in the window)")
    value = m.value
    shown = units.quantity(value, unit)
    if check.min is not None and value < check.min:
        return result(Verdict.FAIL,
                      f"{shown} is below the minimum {units.limit(check.min, unit)}")
    if check.max is not None and value > check.max:
        return result(Verdict.FAIL,
                      f"{shown} is above the maximum {units.limit(check.max, unit)}")
    ratio = check.max_ratio_to_stable
    if ratio is not None and _finite(m.stable_value) and m.stable_value:
        assert m.stable_value is not None
        if value > m.stable_value * ratio:
            return result(
                Verdict.FAIL,
                f"{shown} is more than {ratio:g} x stable "
                f"({units.quantity(m.stable_value, unit)})",
            )
    return result(Verdict.PASS, f"{shown} within {describe_threshold(check, unit)}")


def _evidence_so_far(check: Check, m: Measurement) -> dict[str, float | None]:
    """An inconclusive sequential interval adds nothing: its result carries the evidence
    gathered before it (counts and e-value), so status shows where the test stands."""
    assert check.sequential is not None
    canary, stable = m.prior
    share = m.canary_share
    out: dict[str, float | None] = {"value": None, "errors": canary, "stable_errors": stable,
                                    "canary_share": share}
    if share is not None and 0 < share < 1:
        out["value"] = sequential.judge_errors(
            canary, stable, share, alpha=check.sequential.alpha,
            k=check.sequential.prior_strength).e_value
    return out


def _sequential(
    check: Check, m: Measurement, result: Callable[..., CheckResult]
) -> CheckResult:
    assert check.sequential is not None
    share = m.canary_share
    if share is None or not 0 < share < 1:
        return result(Verdict.INCONCLUSIVE,
                      "the sequential test needs both versions on live traffic")
    # A missing error series means no errors yet; NaN never comes from increase() sums.
    canary = m.prior[0] + _count(m.value)
    stable = m.prior[1] + _count(m.stable_value)
    test = sequential.judge_errors(canary, stable, share, alpha=check.sequential.alpha,
                                   k=check.sequential.prior_strength)
    counts = {"errors": canary, "stable_errors": stable, "canary_share": share}
    split = f"canary {canary:.0f} of {canary + stable:.0f} errors on {share:.0%} of traffic"
    if test.rejected:
        return result(Verdict.FAIL, f"{split}: e-value {test.e_value:.3g} >= "
                      f"{1 / check.sequential.alpha:g}", value=test.e_value, **counts)
    return result(Verdict.PASS, f"{split}: e-value {test.e_value:.3g}",
                  value=test.e_value, **counts)


def overall(results: Sequence[CheckResult]) -> Verdict:
    """One failing check fails the run; otherwise any inconclusive one makes it inconclusive."""
    if any(r.verdict is Verdict.FAIL for r in results):
        return Verdict.FAIL
    if not results or any(r.verdict is Verdict.INCONCLUSIVE for r in results):
        return Verdict.INCONCLUSIVE
    return Verdict.PASS
