"""Replaying a profile over history: what the daemon would have decided. Pure.

The replay drives the same state machine (`machine.decide`) on a virtual clock that wakes
when the machine asks to be woken, as the daemon's queue does: a step starts at its
decision, a run is due `interval + prometheus.queryOffset` after the step's start or the
last run, and evaluates the round's queries (`queryplan.plan`, the daemon's own coalesced
queries) at `machine.evaluation_time`, `queryOffset` before it, where the daemon's run
evaluates them too. So replay and daemon read the same windows of the same settled data;
they differ only by the daemon's own latency (a round starts a few ms after it is due).

`answers_at(t)` gives Prometheus' answers at t, or None when they have not been fetched:
the replay then stops and says so (`Replay.missing`), and `canaryd backtest` fetches a
range query from there (`Fetched`) and replays again. A run's later points lie on the grid
`t + k * interval`; each new step starts off it (by the decision's offset), so a replay
fetches once per analysed step.
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

AnswersAt = Callable[[datetime], Mapping[str, queryplan.Answer] | None]
Ranges = Mapping[str, list[tuple[Mapping[str, str], list[tuple[float, float]]]] | str]


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
    missing: datetime | None = None  # stopped here: the answers at this time are not fetched


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
    start = start.replace(microsecond=start.microsecond // 1000 * 1000)  # whole ms, as `ms`
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

    def result(missing: datetime | None = None) -> Replay:
        return Replay(profile=analysis.profile, start=start, end=end, interval=interval,
                      runs=tuple(runs), phase=status.phase, decided_at=decided_at,
                      reason=status.reason, transitions=tuple(moves), missing=missing)

    now = start
    d = decide(now, canary=machine.WorkloadState(exists=True, available=True))
    while not status.phase.terminal and status.phase is not Phase.PAUSED:
        now += _wait(d.requeue_after if d.requeue_after is not None else interval)
        at = machine.evaluation_time(analysis, now)
        if at > end:
            break
        if not machine.analysis_due(ctx, status, now):
            d = decide(now)
        else:
            answers = answers_at(at)
            if answers is None:
                return result(missing=at)
            share = router.canary / 100
            if measured:
                share_now = measured_share(queryplan.plan([_job(name, target, analysis, status,
                                                                 None)], settings), answers)
                share = share_now if share_now is not None else 0.0
            job = _job(name, target, analysis, status, share)
            results = queryplan.verdicts(queryplan.plan([job], settings), answers, at)[name]
            d = decide(now, analysis=results, analysis_time=at)
            runs.append(Run(at, job.step, verdict.weight_of(share), results,
                            verdict.overall(results), d.transitions))
        while status.phase in (Phase.PROMOTING, Phase.ROLLING_BACK):
            d = decide(now)  # the router follows at once here
    return result()


def _wait(seconds: float) -> timedelta:
    """A wait on the millisecond grid the replay's times keep to (range query points are
    whole milliseconds), never shorter than the daemon's queue waits (50 ms)."""
    return timedelta(milliseconds=max(round(seconds * 1000), 50))


def _job(name: str, target: Target, analysis: EffectiveAnalysis, status: RolloutStatus,
         share: float | None) -> queryplan.Job:
    return queryplan.Job(rollout=name, namespace=target.namespace, stable=target.stable,
                         canary=target.canary, analysis=analysis, step=status.step_index,
                         canary_share=share, evidence=tuple(status.evidence))


def ms(t: datetime | float) -> int:
    """A time as whole unix milliseconds (Prometheus' own resolution)."""
    return round((t.timestamp() if isinstance(t, datetime) else t) * 1000)


class Fetched:
    """The answers fetched so far, as `answers_at`: range-query results, each on its grid
    (start + k * step up to end, in whole milliseconds). At a grid time, each series' point
    there (what an instant query at that time answers; none: an empty answer) or the
    query's error; at any other time None (not fetched)."""

    def __init__(self) -> None:
        self._grids: list[tuple[int, int, int, dict[str, dict[int, list[queryplan.Sample]]],
                                dict[str, str]]] = []

    def add(self, start: datetime, step: float, end: datetime, ranges: Ranges) -> None:
        tables: dict[str, dict[int, list[queryplan.Sample]]] = {}
        errors: dict[str, str] = {}
        for text, result in ranges.items():
            if isinstance(result, str):
                errors[text] = result
                continue
            table: dict[int, list[queryplan.Sample]] = {}
            for labels, points in result:
                for t, value in points:
                    table.setdefault(ms(t), []).append((labels, value))
            tables[text] = table
        self._grids.append((ms(start), max(round(step * 1000), 1), ms(end), tables, errors))

    def __call__(self, t: datetime) -> Mapping[str, queryplan.Answer] | None:
        key = ms(t)
        for start, step, end, tables, errors in reversed(self._grids):
            if start <= key <= end and (key - start) % step == 0:
                out: dict[str, queryplan.Answer] = dict(errors)
                for text, table in tables.items():
                    out[text] = table.get(key, [])
                return out
        return None
