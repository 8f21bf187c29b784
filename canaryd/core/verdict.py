"""Verdicts: pure functions from measurements to pass / fail / inconclusive / not applicable.

A failed query is a measurement with an error, not an exception (as in Argo Rollouts), and
every outcome keeps its value, threshold, query and reason, so nothing is decided unrecorded.

Four outcomes: *pass*, *fail*, *inconclusive* (no data, too few requests, Prometheus errors,
or a fixed threshold that stable violates too) and *not applicable* (a comparison with
nothing to compare against: at 100% no stable traffic, at 0% no canary share of live
traffic). Not-applicable and dry-run results never count toward a decision.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from canaryd.core import sequential, units
from canaryd.core.analysisspec import Check
from canaryd.core.model import CheckResult, Evidence, Verdict

Buckets = Mapping[float, float]  # cumulative histogram: upper bound (le) -> count


@dataclass(frozen=True)
class Measurement:
    metric: str
    query: str
    value: float | None = None
    stable_value: float | None = None
    requests: float | None = None
    stable_requests: float | None = None
    error: str | None = None
    # The canary's traffic share (0..1) the plan set for this interval.
    canary_share: float | None = None
    # Sequential checks: the evidence the rollout has gathered so far (status.evidence).
    evidence: tuple[Evidence, ...] = ()
    # Histogram templates: cumulative bucket counts over the interval, per version.
    buckets: Buckets | None = None
    stable_buckets: Buckets | None = None
    # A decisive comparison check judges this run: a fixed threshold that stable violates
    # too is then left to it (a shared incident says nothing about the canary).
    compared: bool = False
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
    return value if value is not None and math.isfinite(value) and value > 0 else 0.0


def _finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value) and not math.isinf(value)


def weight_of(share: float) -> int:
    return round(share * 100)


def _comparable(share: float | None) -> str | None:
    """Why nothing can be compared at this share, or None when it can."""
    if share is None:
        return "no traffic split known"
    weight = weight_of(share)
    if weight >= 100:
        return "no stable traffic to compare with at 100%"
    if weight <= 0:
        return "the canary has no share of live traffic at 0%"
    return None


def judge(
    check: Check, m: Measurement, *, min_requests: int, now: datetime, step: int
) -> CheckResult:
    unit = m.unit

    def result(verdict: Verdict, reason: str, **extra: object) -> CheckResult:
        if check.sequential is not None and "value" not in extra:
            extra.update(_evidence_so_far(check, m))  # the e-value, never a raw count
        value = extra.pop("value", m.value)
        assert value is None or isinstance(value, float | int)
        return CheckResult(
            metric=check.metric,
            query=m.query,
            value=value if _finite(value) else None,
            stable_value=m.stable_value if _finite(m.stable_value) else None,
            requests=m.requests,
            unit=unit or None,
            **extra,
            threshold=describe_threshold(check, unit),
            verdict=verdict,
            reason=reason,
            time=now,
            step=step,
            dry_run=True if check.dry_run else None,
            decisive=True if check.sequential is not None else None,
        )

    incomparable = _comparable(m.canary_share)
    # A ratio to stable needs stable traffic, not a known split: blue-green's preview step
    # (0%) compares the preview's latency with stable's live traffic.
    no_stable = incomparable if m.canary_share is not None and m.canary_share >= 1 else None
    if check.sequential is not None and incomparable is not None:
        return result(Verdict.NOT_APPLICABLE, incomparable)
    if check.comparison_only and no_stable is not None:
        return result(Verdict.NOT_APPLICABLE, no_stable, value=None)
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
    violated = None
    miss = stable_miss = noise = 0.0  # how far the canary, and stable, are past the threshold
    stable = m.stable_value if _finite(m.stable_value) else None
    if check.min is not None and value < check.min:
        violated = f"{shown} is below the minimum {units.limit(check.min, unit)}"
        miss, stable_miss = check.min - value, check.min - (stable if stable is not None
                                                             else check.min)
        noise = _sampling_error(m, check.min, lower=True)
    elif check.max is not None and value > check.max:
        violated = f"{shown} is above the maximum {units.limit(check.max, unit)}"
        miss, stable_miss = value - check.max, (stable if stable is not None
                                                else check.max) - check.max
        noise = _sampling_error(m, check.max, lower=False)
    if violated is not None and miss <= noise:
        return result(Verdict.INCONCLUSIVE,
                      f"{violated}, by less than its sampling error at "
                      f"{m.requests:.0f} requests (±{noise:.2g} points): too close to call",
                      close=True)
    if violated is not None:
        # Stable misses it too, by at least half as much: a shared incident, which says
        # nothing about the canary. The comparison checks judge the canary meanwhile.
        if m.compared and incomparable is None and stable_miss > 0 and miss <= 2 * stable_miss:
            assert stable is not None
            return result(Verdict.INCONCLUSIVE,
                          f"{violated}, and so is stable ({units.quantity(stable, unit)}): "
                          "a shared problem, left to the comparison checks")
        return result(Verdict.FAIL, violated)
    within = f"{shown} within {describe_threshold(check, unit)}"
    ratio = check.max_ratio_to_stable
    if ratio is None:
        return result(Verdict.PASS, within)
    if no_stable is not None:
        return result(Verdict.PASS, f"{within}; maxRatioToStable: {no_stable}")
    if not _finite(m.stable_value) or not m.stable_value:
        if check.min is None and check.max is None:
            return result(Verdict.INCONCLUSIVE, "stable has no value to compare with")
        return result(Verdict.PASS, f"{within}; stable has no value to compare with")
    assert m.stable_value is not None
    if value > m.stable_value * ratio:
        return result(Verdict.FAIL, f"{shown} is more than {ratio:g} x stable "
                      f"({units.quantity(m.stable_value, unit)})")
    return result(Verdict.PASS, within)


def _sampling_error(m: Measurement, bound: float, lower: bool) -> float:
    """For a percentage of requests (unit %, with a request count): one standard error of
    that percentage at the threshold, in points. A fixed threshold is missed only by more
    than that: at 120 requests a single error moves a success rate by 0.8 points, and a
    healthy canary at 0.2% errors would dip below 99% in several intervals out of a hundred.
    Otherwise (other units, no count) 0."""
    n = m.requests
    if m.unit != "%" or n is None or n <= 0 or not 0 <= bound <= 100:
        return 0.0
    p = 1 - bound / 100 if lower else bound / 100  # the share of requests the bound allows
    return 100 * math.sqrt(p * (1 - p) / n)


def _slow_counts(
    quantile: float, canary: Buckets, stable: Buckets
) -> tuple[float, float, float] | None:
    """(bound, canary requests above it, stable requests above it): the bound is the largest
    bucket bound with at least 1 - quantile of both versions' pooled requests above it.

    Choosing it from the pooled histogram keeps the test valid: under "no worse" latency
    does not depend on the version, so which version a slow request came from is still a
    coin flip with the traffic share, whatever the bound."""
    bounds = sorted(set(canary) | set(stable))
    if not bounds or not math.isinf(bounds[-1]):
        return None
    inf = bounds[-1]
    total = _count(canary.get(inf)) + _count(stable.get(inf))
    chosen = None
    for b in bounds[:-1]:
        above = total - _count(canary.get(b)) - _count(stable.get(b))
        if above > 0 and above >= (1 - quantile) * total:
            chosen = b
    if chosen is None:
        return None
    return (chosen, max(_count(canary.get(inf)) - _count(canary.get(chosen)), 0.0),
            max(_count(stable.get(inf)) - _count(stable.get(chosen)), 0.0))


def _keys(check: Check, m: Measurement) -> list[tuple[str, str]]:
    """(evidence key, label) of each test a sequential check runs."""
    assert check.sequential is not None
    if m.buckets is None and m.stable_buckets is None:
        return [(check.metric, "")]
    return [(f"{check.metric}@p{q * 100:g}", f"p{q * 100:g}") for q in check.sequential.quantiles]


def _evidence_so_far(check: Check, m: Measurement) -> dict[str, object]:
    """An interval that adds nothing (inconclusive, or not applicable) carries the evidence
    gathered before it, so status shows where the test stands."""
    seq = check.sequential
    assert seq is not None
    states = [_state(m.evidence, key) for key, _ in _keys(check, m)]
    if not any(s.canary or s.stable for s in states):
        return {"value": None}
    combined = _log_mean([sequential.log_e_worse(s) for s in states])
    return {"value": math.exp(min(combined, 700.0)),
            "errors": sum(s.canary for s in states),
            "stable_errors": sum(s.stable for s in states),
            "expected_errors": sum(s.expected for s in states)}


def _state(evidence: Sequence[Evidence], key: str) -> sequential.State:
    for e in evidence:
        if e.key == key and len(e.log_lr) == len(sequential.GRID_K):
            return sequential.State(tuple(e.log_lr), e.canary, e.stable, e.expected)
    return sequential.State()


def _sequential(
    check: Check, m: Measurement, result: Callable[..., CheckResult]
) -> CheckResult:
    seq = check.sequential
    assert seq is not None and m.canary_share is not None
    histogram = m.buckets is not None or m.stable_buckets is not None
    # This interval's traffic split, measured from the same metric over the same window.
    if histogram:
        canary_n = _count((m.buckets or {}).get(math.inf))
        stable_n = _count((m.stable_buckets or {}).get(math.inf))
    else:
        canary_n, stable_n = _count(m.requests), _count(m.stable_requests)
    measured = canary_n / (canary_n + stable_n) if canary_n > 0 and stable_n > 0 else None
    # (key, this interval's canary and stable events, label)
    parts: list[tuple[str, float, float, str]] = []
    if histogram:
        for (key, label), q in zip(_keys(check, m), seq.quantiles, strict=True):
            slow = _slow_counts(q, m.buckets or {}, m.stable_buckets or {})
            if slow is None:
                parts.append((key, 0.0, 0.0, f"{label} -"))
            else:
                parts.append((key, slow[1], slow[2], f"{label} (>{units.limit(slow[0], m.unit)})"))
    else:
        parts.append((check.metric, _count(m.value), _count(m.stable_value), ""))
    evidence: list[Evidence] = []
    worse: list[float] = []
    within: list[float] = []
    shown: list[str] = []
    for key, canary, stable, label in parts:
        state = _state(m.evidence, key)
        if measured is not None:
            state = state.update(measured, canary, stable)
        test = sequential.judge(state, alpha=seq.alpha, ratio=seq.ratio)
        worse.append(test.log_e)
        within.append(test.log_e_within)
        evidence.append(Evidence(key=key, canary=state.canary, stable=state.stable,
                                 expected=state.expected, log_lr=list(state.log_lr)))
        shown.append(f"{label} {state.canary:.0f} vs {state.expected:.1f}".strip())
    threshold = math.log(1 / seq.alpha)
    # The mean of e-processes is an e-process: several latency levels share one alpha.
    combined = _log_mean(worse)
    settled = _log_mean(within) >= threshold
    e_value = math.exp(min(combined, 700.0))
    share = f"{measured:.1%}" if measured is not None else "no traffic on one side"
    if histogram:
        split = (f"canary slow requests vs what its traffic share explains, whole rollout: "
                 f"{', '.join(shown)} (this interval {share} of requests)")
    else:
        e = evidence[0]
        split = (f"canary {e.canary:.0f} errors where its traffic share explains "
                 f"{e.expected:.1f} (stable {e.stable:.0f}, whole rollout; this interval "
                 f"{share} of requests)")
    extra = {"value": e_value, "errors": sum(e.canary for e in evidence),
             "stable_errors": sum(e.stable for e in evidence),
             "expected_errors": sum(e.expected for e in evidence),
             "canary_share": measured, "evidence": evidence, "settled": settled}
    if combined >= threshold:
        return result(Verdict.FAIL, f"{split}: e-value {e_value:.3g} >= {1 / seq.alpha:g}",
                      **extra)
    note = f"; rules out {seq.ratio:g}x worse" if settled else ""
    return result(Verdict.PASS, f"{split}: e-value {e_value:.3g}{note}", **extra)


def _log_mean(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values) / len(values))


def considered(results: Sequence[CheckResult]) -> list[CheckResult]:
    """The results that decide: not dry-run, not 'not applicable'."""
    return [r for r in results
            if not r.dry_run and r.verdict is not Verdict.NOT_APPLICABLE]


def overall(results: Sequence[CheckResult]) -> Verdict:
    """One failing check fails the run; otherwise any inconclusive one makes it inconclusive.
    Dry-run and not-applicable results do not count; with nothing left to judge (every
    check a comparison at 100%, say) the run passes."""
    counted = considered(results)
    if any(r.verdict is Verdict.FAIL for r in counted):
        return Verdict.FAIL
    if not results or any(r.verdict is Verdict.INCONCLUSIVE for r in counted):
        return Verdict.INCONCLUSIVE
    return Verdict.PASS
