"""Replaying a profile over history: what the daemon would have decided. Pure.

The replay drives the same state machine (`machine.decide`) on a virtual clock that ticks
once per analysis interval from `start`, and answers each due analysis from `answers_at(t)`:
the answers Prometheus gives for the round's queries (`queryplan.plan`, the daemon's own
coalesced queries) evaluated at t. `canaryd backtest` fetches them with one range query per
query at the profile's interval; the verdicts come from the same code as the daemon's.

Steps start on the interval grid (a pause ends at the first tick after it), so the replay's
decisions can land up to one interval after the daemon's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from canaryd.core import machine, queryplan, verdict
from canaryd.core.model import CheckResult, Phase, RolloutStatus, Step, Verdict, Weights
from canaryd.core.plan import EffectiveAnalysis
from canaryd.core.settings import Settings

AnswersAt = Callable[[datetime], Mapping[str, queryplan.Answer]]


@dataclass(frozen=True)
class Target:
    namespace: str
    canary: str
    stable: str


@dataclass(frozen=True)
class Run:
    time: datetime
    step: int  # 0-based
    weight: int  # the canary's share the plan had (or the measured one), percent
    results: tuple[CheckResult, ...]
    verdict: Verdict
    transitions: tuple[machine.Transition, ...] = ()


@dataclass(frozen=True)
class Replay:
    profile: str
    start: datetime
    end: datetime
    interval: float
    runs: tuple[Run, ...]
    phase: Phase  # where the rollout was when the replay ended
    decided_at: datetime | None  # when it started rolling back, was promoted, or paused
    reason: str
    transitions: tuple[tuple[datetime, machine.Transition], ...] = field(default=())


def queries(settings: Settings, analysis: EffectiveAnalysis, target: Target) -> tuple[str, ...]:
    """The query texts a replay needs answered (the same whatever the step or evidence)."""
    job = queryplan.Job(rollout="backtest", namespace=target.namespace, stable=target.stable,
                        canary=target.canary, analysis=analysis, step=0)
    return tuple(q.text for q in queryplan.plan([job], settings).queries)


def measured_share(
    p: queryplan.Plan, answers: Mapping[str, queryplan.Answer]
) -> float | None:
    """The canary's share of requests, from the first request count the plan asks for."""
    for m in (m for item, m in queryplan.measurements(p, answers) if item.requests):
        canary, stable = m.requests, m.stable_requests
        if canary is not None and stable is not None and math.isfinite(canary + stable) and (
                canary + stable > 0):
            return canary / (canary + stable)
    return None


def replay(
    settings: Settings,
    analysis: EffectiveAnalysis,
    steps: tuple[Step, ...] | None,
    target: Target,
    start: datetime,
    end: datetime,
    answers_at: AnswersAt,
    *,
    name: str = "backtest",
) -> Replay:
    """With `steps` the plan moves the weights as the daemon would; without, one step spans
    the whole window and the canary's share is the one measured in each interval."""
    interval = analysis.interval
    measured = steps is None
    plan_steps = steps or (Step(weight=50, pause=(end - start).total_seconds() + interval),)
    ctx = machine.Context(steps=plan_steps, analysis=analysis, ready_timeout=0.0,
                          checks_kept=len(analysis.checks))
    status = RolloutStatus()
    router = Weights(stable=100, canary=0)
    runs: list[Run] = []
    moves: list[tuple[datetime, machine.Transition]] = []
    decided_at: datetime | None = None

    def decide(now: datetime, **obs: object) -> machine.Decision:
        nonlocal status, router, decided_at
        obs.setdefault("weights", router)
        d = machine.decide(ctx, status, machine.Observations(**obs),  # type: ignore[arg-type]
                           now)
        status = d.status
        for action in d.actions:
            if isinstance(action, machine.SetWeights):
                router = action.weights
        for t in d.transitions:
            moves.append((now, t))
            if decided_at is None and t.target in (Phase.ROLLING_BACK, Phase.PROMOTING,
                                                    Phase.PAUSED, Phase.FAILED):
                decided_at = now
        return d

    decide(start, canary=machine.WorkloadState(exists=True, available=True))
    k = 1
    while not status.phase.terminal and status.phase is not Phase.PAUSED:
        now = start + timedelta(seconds=k * interval)
        if now > end:
            break
        k += 1
        if not machine.analysis_due(ctx, status, now):
            decide(now)
        else:
            answers = answers_at(now)
            share = router.canary / 100
            if measured:
                share_now = measured_share(queryplan.plan([_job(name, target, analysis, status,
                                                                 None)], settings), answers)
                share = share_now if share_now is not None else 0.0
            job = _job(name, target, analysis, status, share)
            results = queryplan.verdicts(queryplan.plan([job], settings), answers, now)[name]
            d = decide(now, analysis=results, analysis_time=now)
            runs.append(Run(now, job.step, verdict.weight_of(share), results,
                            verdict.overall(results), d.transitions))
        while status.phase in (Phase.PROMOTING, Phase.ROLLING_BACK):
            decide(now)  # the router follows at once here
    return Replay(profile=analysis.profile, start=start, end=end, interval=interval,
                  runs=tuple(runs), phase=status.phase, decided_at=decided_at,
                  reason=status.reason, transitions=tuple(moves))


def _job(name: str, target: Target, analysis: EffectiveAnalysis, status: RolloutStatus,
         share: float | None) -> queryplan.Job:
    return queryplan.Job(rollout=name, namespace=target.namespace, stable=target.stable,
                         canary=target.canary, analysis=analysis, step=status.step_index,
                         canary_share=share, evidence=tuple(status.evidence))


def points_at(
    ranges: Mapping[str, list[tuple[Mapping[str, str], list[tuple[float, float]]]] | str],
) -> AnswersAt:
    """answers_at from range-query results: at t, each series' point at exactly t (what an
    instant query at t answers), or the query's error."""
    by_time: dict[str, dict[float, list[queryplan.Sample]]] = {}
    errors: dict[str, str] = {}
    for text, result in ranges.items():
        if isinstance(result, str):
            errors[text] = result
            continue
        table: dict[float, list[queryplan.Sample]] = {}
        for labels, points in result:
            for t, value in points:
                table.setdefault(round(t, 3), []).append((labels, value))
        by_time[text] = table

    def at(now: datetime) -> Mapping[str, queryplan.Answer]:
        key = round(now.timestamp(), 3)
        out: dict[str, queryplan.Answer] = dict(errors)
        for text, table in by_time.items():
            out[text] = table.get(key, [])
        return out

    return at
