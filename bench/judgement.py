"""Detection quality: how often each policy rolls back a healthy canary, how often and how fast
it rolls back a bad one, on the same seeded traces.

A trace generator produces, per analysis interval (1 minute), each version's request and
error counts and latency histogram buckets (Istio's bounds) from a model with Poisson noise:
requests ~ Poisson(rps x share x 60), errors ~ Binomial(requests, rate), bucket counts ~
Multinomial(requests, log-normal latency). The canary's share follows whatever the policy's
plan says at that interval, and every random draw is seeded by (scenario, run, interval), so
all policies see the same world.

Policies:
- canaryd: its own pure analysis code, the functions the controller calls: the round's
  query plan (`canaryd.core.queryplan`), fed the answers the profile's PromQL would give for
  these counts (one sample per workload, per bucket for histograms), the verdicts, and
  `canaryd.core.machine.decide` for the rollout;
- flagger-tN: Flagger's defaults (request-success-rate >= 99%, request-duration p99 <=
  500 ms; no data counts as a failed check; weight +10 per passing interval up to 50, then
  promotion; rollback once `threshold` checks failed);
- argo: a typical Argo Rollouts AnalysisTemplate (success rate `result[0] >= 0.95`,
  failureLimit 3, NaN fails the measurement) run in the background of setWeight 10..50
  steps of one interval each.

    .venv/bin/python bench/judgement.py [--runs 2000] [--scenarios a,b] [--policies a,b]

Prints one table: per scenario and policy, the rollback rate (a false rollback on the
healthy-type scenarios, a detection on the regressions), promotion and pause rates, and the
median and 90th percentile detection time in intervals (from the first analysis to the
rollback decision). No assertions: figures to read.
"""

from __future__ import annotations

import argparse
import collections
import functools
import math
import random
import re
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from canaryd.core import machine, queryplan  # noqa: E402
from canaryd.core.model import Phase, RolloutSpec, RolloutStatus, Weights  # noqa: E402
from canaryd.core.plan import resolve_analysis, steps  # noqa: E402
from canaryd.core.settings import Settings, parse_settings  # noqa: E402
from canaryd.sandbox.mesh.traffic import (  # noqa: E402
    ISTIO_BUCKETS_MS,
    LatencyProfile,
    binomial,
    poisson,
)

INTERVAL = 60.0  # seconds, the default profile's
PLAN = (10, 20, 30, 40, 50)  # Flagger's stepWeight 10 / maxWeight 50
BOUNDS = (*ISTIO_BUCKETS_MS, math.inf)


# ----------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class Version:
    error_rate: float = 0.002
    p50_ms: float = 40.0
    p99_ms: float = 200.0


@dataclass(frozen=True)
class World:
    """One interval of the environment: total traffic and how each version behaves."""

    rps: float
    stable: Version
    canary: Version


@dataclass(frozen=True)
class Scenario:
    name: str
    regression: bool
    world: Callable[[random.Random, int], World]  # (run's rng, interval index) -> world
    plan: tuple[int, ...] = PLAN
    about: str = ""


def healthy(rps: float = 100.0) -> Callable[[random.Random, int], World]:
    return lambda _rng, _t: World(rps, Version(), Version())


def _low_traffic(rng: random.Random, t: int) -> World:
    return World(rng.uniform(20, 50), Version(), Version())


def _bursty(rng: random.Random, t: int) -> World:
    # a third of the intervals are lulls (2 req/s), the rest bursts of 100-400 req/s
    return World(2.0 if rng.random() < 1 / 3 else rng.uniform(100, 400), Version(), Version())


def _leak(_rng: random.Random, t: int) -> World:
    return World(100.0, Version(), Version(error_rate=0.002 + 0.001 * (t + 1)))


def shared_incident(rng: random.Random, t: int, start: int, length: int) -> World:
    if start <= t < start + length:
        bad = Version(error_rate=0.05, p50_ms=80, p99_ms=700)
        return World(100.0, bad, bad)
    return World(100.0, Version(), Version())


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("healthy", False, healthy(), about="100 req/s, 0.2% errors, p99 200 ms, both"),
    Scenario("idle", False, healthy(0.0), about="no traffic at all"),
    Scenario("low-traffic", False, _low_traffic,
             about="20-50 req/s in all: 2-5 req/s on the canary at 10%"),
    Scenario("bursty", False, _bursty, about="1 interval in 3 at 2 req/s, else 100-400"),
    Scenario("shared-incident", False, lambda rng, t: shared_incident(rng, t, 1, 3),
             about="both versions at 5% errors, p99 700 ms, intervals 2-4"),
    Scenario("errors-2x-at-5%", True,
             lambda _rng, _t: World(100.0, Version(error_rate=0.01),
                                    Version(error_rate=0.02)),
             plan=(5,) * 10, about="stable 1%, canary 2% errors, canary held at 5%"),
    Scenario("subtle-0.2-vs-0.8%", True,
             lambda _rng, _t: World(100.0, Version(), Version(error_rate=0.008)),
             about="stable 0.2%, canary 0.8% errors (99.2% success)"),
    Scenario("p99+30%", True,
             lambda _rng, _t: World(100.0, Version(), Version(p99_ms=260.0)),
             about="canary p99 260 ms vs 200 (p50 unchanged)"),
    Scenario("slow-leak", True, _leak, about="canary errors 0.2% + 0.1 point per interval"),
)


@dataclass(frozen=True)
class Counts:
    requests: int
    errors: int
    buckets: dict[float, float]  # cumulative, le -> count


@dataclass(frozen=True)
class Interval:
    canary: Counts
    stable: Counts


@functools.lru_cache(maxsize=64)
def _conditional(p50_ms: float, p99_ms: float) -> tuple[float, ...]:
    """P(in bucket i | not below it), per bucket: a multinomial as a chain of binomials."""
    profile = LatencyProfile(p50_ms, p99_ms)
    out, previous = [], 0.0
    for bound in BOUNDS:
        cdf = 1.0 if math.isinf(bound) else profile.cdf(bound)
        out.append(min(max((cdf - previous) / (1 - previous), 0.0), 1.0) if previous < 1
                   else 1.0)
        previous = cdf
    return tuple(out)


def _draw(rng: random.Random, rps: float, share: float, version: Version) -> Counts:
    n = poisson(rng, rps * share * INTERVAL)
    errors = binomial(rng, n, version.error_rate)
    cumulative, left, below = {}, n, 0
    for bound, p in zip(BOUNDS, _conditional(version.p50_ms, version.p99_ms), strict=True):
        k = binomial(rng, left, p) if left else 0
        left -= k
        below += k
        cumulative[bound] = float(below)
    return Counts(n, errors, cumulative)


def interval(world: World, seed: int, share: float) -> Interval:
    rng = random.Random(seed)
    return Interval(canary=_draw(rng, world.rps, share, world.canary),
                    stable=_draw(rng, world.rps, 1 - share, world.stable))


class Trace:
    """One run of a scenario: the world per interval is fixed by the run's seed; the counts
    depend on the share the policy chose, with noise seeded by (run, interval)."""

    def __init__(self, scenario: Scenario, run: int) -> None:
        self.scenario = scenario
        self.seed = zlib.crc32(f"{scenario.name}/{run}".encode())
        rng = random.Random(self.seed)
        self.worlds = [scenario.world(rng, t) for t in range(200)]
        self._seen: dict[tuple[int, float], Interval] = {}

    def at(self, t: int, share: float) -> Interval:
        key = (t, share)
        if key not in self._seen:
            self._seen[key] = interval(self.worlds[t], self.seed * 1000 + t, share)
        return self._seen[key]


# ----------------------------------------------------------------------------- PromQL, emulated


def quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus' histogram_quantile over one histogram."""
    total = buckets.get(math.inf, 0.0)
    if total <= 0:
        return math.nan
    rank, lower, below = q * total, 0.0, 0.0
    for bound in BOUNDS:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # the +Inf bucket answers with the highest finite bound
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def success_rate(c: Counts) -> float:
    return (c.requests - c.errors) / c.requests * 100 if c.requests else math.nan


def _value(metric: str, c: Counts) -> float:
    """What the template's query answers for one version's counts."""
    if metric == "istio-success-rate":
        return success_rate(c)
    if metric.startswith("istio-latency-p"):
        return quantile({"p50": 0.5, "p90": 0.9, "p99": 0.99}[metric.rsplit("-", 1)[1]],
                        c.buckets)
    if metric == "istio-error-count":
        return float(c.errors)
    raise ValueError(f"no emulation for {metric}")


def answers(plan: queryplan.Plan, iv: Interval) -> dict[str, queryplan.Answer]:
    """Prometheus' answers to the plan's grouped queries for these counts: one sample per
    workload (per workload and bucket for histograms), labelled as the template says."""
    out: dict[str, queryplan.Answer] = {}

    def series(labels: dict[str, str], ns: str, workload: str, **extra: str) -> dict[str, str]:
        return {labels["namespace"]: ns, labels["workload"]: workload, **extra}

    for item in plan.checks:
        job, labels = item.job, item.template.labels or {}
        versions = ((job.canary, iv.canary), (job.stable, iv.stable))

        if item.requests is not None:
            out[item.requests.text] = [
                (series(labels, job.namespace, w), float(c.requests))
                for w, c in versions if c.requests]
        if item.template.histogram:
            out[item.main.text] = [
                (series(labels, job.namespace, w,
                        **{labels["bucket"]: "+Inf" if math.isinf(b) else f"{b:g}"}), n)
                for w, c in versions if c.requests for b, n in c.buckets.items()]
        else:  # a version without requests has no series (0/0 would be NaN: same verdict)
            out[item.main.text] = [(series(labels, job.namespace, w),
                                    _value(item.check.metric, c))
                                   for w, c in versions if c.requests]
    return out


# ----------------------------------------------------------------------------- outcomes


@dataclass
class Outcome:
    result: str  # "rolled back" | "promoted" | "paused" | "unfinished"
    intervals: int  # analysis intervals until the decision
    reason: str = ""


# ----------------------------------------------------------------------------- canaryd

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def canaryd_spec(plan: tuple[int, ...], profile: str, max_pause: float | None) -> RolloutSpec:
    step: dict[str, Any] = {}
    if max_pause is not None:
        step["maxPause"] = f"{max_pause:g}s"
    return RolloutSpec.model_validate({
        "target": "app", "version": "v2",
        "router": {"istio": {"virtualService": "app", "stable": {"host": "app", "subset": "a"},
                             "canary": {"host": "app", "subset": "b"}}},
        "workloads": {"stable": "app-stable", "canary": "app-canary"},
        "plan": {"steps": [{"weight": w, **step} for w in plan]},
        "analysis": {"profile": profile},
    })


def run_canaryd(settings: Settings, profile: str, max_pause: float | None,
                trace: Trace) -> Outcome:
    spec = canaryd_spec(trace.scenario.plan, profile, max_pause)
    ctx = machine.Context(steps=steps(spec), analysis=resolve_analysis(settings, spec),
                          ready_timeout=60, checks_kept=8)
    assert ctx.analysis is not None
    status = RolloutStatus()
    router = Weights(stable=100, canary=0)
    now = T0

    def decide(**obs: Any) -> machine.Decision:
        nonlocal status, router
        obs.setdefault("weights", router)
        decision = machine.decide(ctx, status, machine.Observations(**obs), now)
        status = decision.status
        for action in decision.actions:
            if isinstance(action, machine.SetWeights):
                router = action.weights
        return decision

    d = decide(canary=machine.WorkloadState(exists=True, available=True))
    analyses = 0
    while analyses < 150:
        # Woken when the machine asks, as the daemon's queue does: with the config's
        # prometheus.queryOffset a run is due that long after each interval and is evaluated
        # at the interval's end (the trace gives each interval's counts either way).
        wait = INTERVAL if d.requeue_after is None else max(d.requeue_after, 0.05)
        now += timedelta(seconds=wait)  # (the daemon's queue waits at least 50 ms too)
        if status.phase is Phase.PAUSED:
            return Outcome("paused", analyses, status.reason)
        if not machine.analysis_due(ctx, status, now):
            d = decide()
        else:
            at = machine.evaluation_time(ctx.analysis, now)
            share = router.canary / 100
            iv = trace.at(analyses, share)
            analyses += 1
            job = queryplan.Job(rollout="bench/app", namespace="bench", stable="app-stable",
                                canary="app-canary", analysis=ctx.analysis,
                                step=status.step_index, canary_share=share,
                                evidence=tuple(status.evidence))
            plan = queryplan.plan([job], settings)
            results = queryplan.verdicts(plan, answers(plan, iv), at)[job.rollout]
            d = decide(analysis=results, analysis_time=at)
        if status.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK):
            return Outcome("rolled back", analyses, status.reason)
        if status.phase in (Phase.PROMOTING, Phase.SUCCEEDED):
            return Outcome("promoted", analyses)
    return Outcome("unfinished", analyses)


# ----------------------------------------------------------------------------- peers


def run_flagger(threshold: int, trace: Trace) -> Outcome:
    plan = trace.scenario.plan
    index, failed = 0, 0
    for t in range(150):
        iv = trace.at(t, plan[index] / 100)
        rate = success_rate(iv.canary)
        p99 = quantile(0.99, iv.canary.buckets)
        # "no values found": NaN or no series counts as a failed check
        ok = not math.isnan(rate) and rate >= 99 and not math.isnan(p99) and p99 <= 500
        if not ok:
            failed += 1
            if failed >= threshold:
                return Outcome("rolled back", t + 1)
            continue
        if index == len(plan) - 1:
            return Outcome("promoted", t + 1)
        index += 1
    return Outcome("unfinished", 150)


def run_argo(trace: Trace) -> Outcome:
    plan = trace.scenario.plan
    failed = 0
    for t in range(len(plan)):
        iv = trace.at(t, plan[t] / 100)
        rate = success_rate(iv.canary) / 100
        if not rate >= 0.95:  # NaN fails `result[0] >= 0.95` too
            failed += 1
            if failed > 3:  # failureLimit: 3
                return Outcome("rolled back", t + 1)
    return Outcome("promoted", len(plan))


# ----------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Policy:
    name: str
    run: Callable[[Trace], Outcome]
    about: str = ""


WAIT = 3 * INTERVAL  # maxPause of the "wait" plan: a step may last up to 3 intervals


def policies(settings_file: Path) -> list[Policy]:
    import yaml

    raw = yaml.safe_load(settings_file.read_text())
    default = dict(raw["profiles"]["default"])
    # The latency judgement canaryd had before: p99 at most 1.5 x stable's, each interval.
    ratio_checks = [c for c in default["checks"] if "latency" not in c["metric"]]
    ratio_checks.append({"metric": "istio-latency-p99", "max": 500, "maxRatioToStable": 1.5})
    raw["profiles"]["bench-ratio"] = {**default, "checks": ratio_checks}
    settings = parse_settings(raw)
    return [
        Policy("canaryd default", lambda tr: run_canaryd(settings, "default", None, tr),
               "the packaged default profile, on the same plan as Flagger's"),
        Policy("canaryd default+wait",
               lambda tr: run_canaryd(settings, "default", WAIT, tr),
               "the same plan; a step may last up to 3 intervals waiting for evidence (maxPause)"),
        Policy("canaryd maxRatioToStable",
               lambda tr: run_canaryd(settings, "bench-ratio", None, tr),
               "default with the latency check canaryd had: p99 <= 1.5 x stable"),
        Policy("flagger-t1", lambda tr: run_flagger(1, tr)),
        Policy("flagger-t5", lambda tr: run_flagger(5, tr)),
        Policy("argo", run_argo),
    ]


@dataclass
class Row:
    scenario: Scenario
    policy: Policy
    outcomes: list[Outcome] = field(default_factory=list)

    def share(self, result: str) -> float:
        return sum(o.result == result for o in self.outcomes) / len(self.outcomes)

    def detection_times(self) -> list[int]:
        return sorted(o.intervals for o in self.outcomes if o.result == "rolled back")


def _pct(x: float) -> str:
    return f"{x * 100:5.1f}%"


def _time(values: list[int], q: float) -> str:
    if not values:
        return "-"
    return f"{values[min(len(values) - 1, math.ceil(q * len(values)) - 1)]}"


def _median_all(row: Row) -> float:
    """Median detection time over all runs, a run never caught counting as never."""
    times = sorted(o.intervals if o.result == "rolled back" else math.inf for o in row.outcomes)
    return times[(len(times) - 1) // 2]


def _goal(rows: list[Row]) -> None:
    """The issue's goal, measured: 0 false rollbacks on the healthy-type scenarios, every
    regression caught, median detection time at most half of Flagger's on the same traces."""
    quiet = ("healthy", "idle", "low-traffic", "shared-incident")
    mine = sorted({r.policy.name for r in rows if r.policy.name.startswith("canaryd")})
    print("goal:")
    for name in mine:
        own = {r.scenario.name: r for r in rows if r.policy.name == name}
        false = {n: sum(o.result == "rolled back" for o in r.outcomes)
                 for n, r in own.items() if n in quiet}
        missed = {n: sum(o.result != "rolled back" for o in r.outcomes)
                  for n, r in own.items() if r.scenario.regression}
        print(f"  {name}: false rollbacks {sum(false.values())} "
              f"({', '.join(f'{n} {v}' for n, v in false.items())}); regressions missed "
              f"{sum(missed.values())} ({', '.join(f'{n} {v}' for n, v in missed.items())})")
        for peer in ("flagger-t1", "flagger-t5"):
            parts = []
            for n, r in own.items():
                if not r.scenario.regression:
                    continue
                other = next((x for x in rows if x.policy.name == peer
                              and x.scenario.name == n), None)
                if other is None:
                    continue
                a, b = _median_all(r), _median_all(other)
                ok = a <= b / 2
                parts.append(f"{n} {a:g} vs {b:g}{'' if ok else ' (not half)'}")
            if parts:
                print(f"    median detection (a miss = never) vs {peer}: {'; '.join(parts)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--scenarios", default="", help="comma-separated names (default all)")
    parser.add_argument("--policies", default="", help="comma-separated names (default all)")
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "canaryd.yaml")
    parser.add_argument("--reasons", action="store_true",
                        help="also print why canaryd's policies rolled back or paused")
    args = parser.parse_args()
    chosen = [s for s in SCENARIOS if not args.scenarios or s.name in args.scenarios.split(",")]
    pols = [p for p in policies(args.config)
            if not args.policies or p.name in args.policies.split(",")]
    started = time.monotonic()
    rows: list[Row] = []
    for scenario in chosen:
        traces = [Trace(scenario, run) for run in range(args.runs)]
        for policy in pols:
            row = Row(scenario, policy)
            row.outcomes = [policy.run(trace) for trace in traces]
            rows.append(row)
    print(f"detection quality: {args.runs} seeded runs per scenario, 1-minute intervals, "
          f"{time.monotonic() - started:.0f} s")
    for scenario in chosen:
        print(f"  {scenario.name}: {scenario.about}; plan {'/'.join(map(str, scenario.plan))}%")
    header = (f"{'scenario':<20} {'policy':<28} {'rolled back':>11} {'promoted':>9} "
              f"{'paused':>7} {'median t':>8} {'p90 t':>6} {'mean len':>8}")
    print(header)
    print("-" * len(header))
    for row in rows:
        times = row.detection_times()
        lengths = [o.intervals for o in row.outcomes]
        label = ("false " if not row.scenario.regression else "caught ") + _pct(
            row.share("rolled back"))
        print(f"{row.scenario.name:<20} {row.policy.name:<28} {label:>11} "
              f"{_pct(row.share('promoted')):>9} {_pct(row.share('paused')):>7} "
              f"{_time(times, 0.5):>8} {_time(times, 0.9):>6} "
              f"{statistics.fmean(lengths):8.1f}")
    _goal(rows)
    if args.reasons:
        for row in rows:
            why = collections.Counter(
                re.sub(r"\d[\d.e+-]*", "N", o.reason)[:110] for o in row.outcomes
                if o.reason and (o.result == "paused" or not row.scenario.regression))
            for reason, n in why.most_common(3):
                print(f"  {row.scenario.name} / {row.policy.name}: {n}x {reason}")
    print("rolled back: a false rollback on the first five scenarios, a detection on the "
          "others; t: intervals from the first analysis to the rollback decision; mean len: "
          "analysis intervals per run.")


if __name__ == "__main__":
    main()

