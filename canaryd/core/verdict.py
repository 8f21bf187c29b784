"""Verdicts: pure functions from measurements to pass / fail / inconclusive.

A failed query is a measurement with an error, not an exception (as in Argo Rollouts), and
every outcome keeps its value, threshold, query and reason, so nothing is decided unrecorded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from canaryd.config import Check
from canaryd.core.model import CheckResult, Verdict


@dataclass(frozen=True)
class Measurement:
    metric: str
    query: str
    value: float | None = None
    stable_value: float | None = None
    requests: float | None = None
    error: str | None = None


def describe_threshold(check: Check) -> str:
    parts = []
    if check.min is not None:
        parts.append(f">= {check.min:g}")
    if check.max is not None:
        parts.append(f"<= {check.max:g}")
    if check.max_ratio_to_stable is not None:
        parts.append(f"<= {check.max_ratio_to_stable:g} x stable")
    return " and ".join(parts)


def _finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value) and not math.isinf(value)


def judge(
    check: Check, m: Measurement, *, min_requests: int, now: datetime, step: int
) -> CheckResult:
    def result(verdict: Verdict, reason: str) -> CheckResult:
        return CheckResult(
            metric=check.metric,
            query=m.query,
            value=m.value if _finite(m.value) else None,
            stable_value=m.stable_value if _finite(m.stable_value) else None,
            requests=m.requests,
            threshold=describe_threshold(check),
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
    if m.value is None:
        return result(Verdict.INCONCLUSIVE, "no data")
    if math.isnan(m.value):
        return result(Verdict.INCONCLUSIVE, "value is NaN (no requests in the window)")
    value = m.value
    if check.min is not None and value < check.min:
        return result(Verdict.FAIL, f"{value:.4g} is below the minimum {check.min:g}")
    if check.max is not None and value > check.max:
        return result(Verdict.FAIL, f"{value:.4g} is above the maximum {check.max:g}")
    ratio = check.max_ratio_to_stable
    if ratio is not None and _finite(m.stable_value) and m.stable_value:
        assert m.stable_value is not None
        if value > m.stable_value * ratio:
            return result(
                Verdict.FAIL,
                f"{value:.4g} is more than {ratio:g} x stable ({m.stable_value:.4g})",
            )
    return result(Verdict.PASS, f"{value:.4g} within {describe_threshold(check)}")


def overall(results: Sequence[CheckResult]) -> Verdict:
    """One failing check fails the run; otherwise any inconclusive one makes it inconclusive."""
    if any(r.verdict is Verdict.FAIL for r in results):
        return Verdict.FAIL
    if not results or any(r.verdict is Verdict.INCONCLUSIVE for r in results):
        return Verdict.INCONCLUSIVE
    return Verdict.PASS
