"""Per-rollout series of a long-finished rollout go RETENTION seconds after it finished (a
deleted one's at once): driven on a virtual monotonic clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prometheus_client import generate_latest

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
                        clock=lambda: datetime.now(UTC), may_write=lambda: True)
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
                        clock=lambda: datetime.now(UTC), may_write=lambda: True)
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
