"""Per-rollout series of a long-finished rollout go RETENTION seconds after it finished (a
deleted one's at once): driven on a virtual monotonic clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import generate_latest

from canaryd.core.machine import Transition
from canaryd.core.model import HistoryEntry, Phase, RolloutStatus
from canaryd.core.transitions import Trigger
from canaryd.runtime.cache import RolloutCache
from canaryd.runtime.metrics import RETENTION, DaemonMetrics
from canaryd.runtime.report import Reporter


def rollout(name: str, phase: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "demo", "name": name, "resourceVersion": phase},
            "status": {"phase": phase}}


def series(metrics: DaemonMetrics) -> set[str]:
    text = generate_latest(metrics.registry).decode()
    return {line.split('rollout="')[1].split('"')[0] for line in text.splitlines()
            if 'rollout="' in line and not line.startswith("#")}


def test_a_finished_rollouts_series_go_after_retention_an_active_ones_stay() -> None:
    cache, metrics = RolloutCache(), DaemonMetrics()
    reporter = Reporter(store=None, cache=cache, metrics=metrics,  # type: ignore[arg-type]
                        clock=lambda: datetime.now(UTC), may_write=lambda _key: True)
    for name, phase in (("done", "Succeeded"), ("running", "Pending"), ("gone", "Failed")):
        cache.put(rollout(name, phase))
        metrics.of_rollout(metrics.weight, "demo", name).set(10)
    cache.drop("demo/gone")  # deleted while this replica was not looking
    assert series(metrics) == {"done", "running", "gone"}

    reporter.expire(1000.0)  # first seen finished now
    assert series(metrics) == {"done", "running"}, "a rollout canaryd no longer knows: at once"
    reporter.expire(1000.0 + RETENTION - 1)
    assert series(metrics) == {"done", "running"}
    reporter.expire(1000.0 + RETENTION)
    assert series(metrics) == {"running"}, "finished RETENTION seconds ago: gone"
    reporter.expire(1000.0 + 100 * RETENTION)
    assert series(metrics) == {"running"}, "an active rollout keeps its series"


def test_a_rollout_that_starts_again_restarts_its_retention() -> None:
    cache, metrics = RolloutCache(), DaemonMetrics()
    reporter = Reporter(store=None, cache=cache, metrics=metrics,  # type: ignore[arg-type]
                        clock=lambda: datetime.now(UTC), may_write=lambda _key: True)
    cache.put(rollout("again", "Failed"))
    metrics.of_rollout(metrics.weight, "demo", "again").set(0)
    reporter.expire(0.0)
    cache.put(rollout("again", "Pending"))  # re-submitted under the same name
    reporter.expire(RETENTION - 1)
    cache.put(rollout("again", "Succeeded"))
    reporter.expire(RETENTION + 1)
    assert series(metrics) == {"again"}, "finished 2 s ago, not RETENTION"
    reporter.expire(2 * RETENTION + 1)
    assert series(metrics) == set()


async def test_a_rollouts_duration_is_observed_once_it_ends_from_its_history() -> None:
    metrics = DaemonMetrics()
    reporter = Reporter(store=None, cache=RolloutCache(), metrics=metrics,  # type: ignore[arg-type]
                        clock=lambda: datetime.now(UTC), may_write=lambda _key: False)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def entry(seq: int, source: Phase, phase: Phase, after: float) -> HistoryEntry:
        return HistoryEntry(seq=seq, time=t0 + timedelta(seconds=after), source=source,
                            phase=phase, trigger="t", reason="")

    def count(phase: str) -> float | None:
        return metrics.registry.get_sample_value(
            "canaryd_rollout_duration_seconds_count", {"phase": phase})

    assert count("Succeeded") == 0 and count("RolledBack") == 0, "exported from 0"
    started = [entry(1, Phase.PENDING, Phase.PROGRESSING, 0)]
    raw = rollout("r", "Progressing")
    reporter.transition("demo/r", raw, Transition(Phase.PENDING, Phase.PROGRESSING,
                                                  Trigger.STEP_PASSED, ""),
                        RolloutStatus(history=started))
    assert count("Succeeded") == 0, "not finished yet"
    ended = [*started, entry(2, Phase.PROGRESSING, Phase.SUCCEEDED, 95)]
    reporter.transition("demo/r", raw, Transition(Phase.PROGRESSING, Phase.SUCCEEDED,
                                                  Trigger.LAST_STEP_PASSED, ""),
                        RolloutStatus(phase=Phase.SUCCEEDED, history=ended))
    assert count("Succeeded") == 1
    assert metrics.registry.get_sample_value(
        "canaryd_rollout_duration_seconds_sum", {"phase": "Succeeded"}) == 95
    # A history whose start was trimmed away says nothing about the duration.
    reporter.transition("demo/s", raw, Transition(Phase.PROGRESSING, Phase.SUCCEEDED,
                                                  Trigger.LAST_STEP_PASSED, ""),
                        RolloutStatus(phase=Phase.SUCCEEDED, history=ended[1:]))
    assert count("Succeeded") == 1
