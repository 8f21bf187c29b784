"""The fluid traffic model: counts, error ratios and latency histograms, seeded."""

from __future__ import annotations

import random

import pytest

from canaryd.sandbox.mesh import topology, traffic

SVC = topology.ServiceRef("shop", "web", 80)


def seeded(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 -- a reproducible simulation, not cryptography


def workload(
    name: str, *, error_ratio: float = 0.0, p50: float = 20, p99: float = 80
) -> topology.Workload:
    return topology.Workload("shop", name, (("app", "web"),), error_ratio, p50, p99)


def routes(
    rps: float, *shares: tuple[topology.Workload | None, float]
) -> list[topology.ServiceRoutes]:
    flows = tuple(topology.Flow(SVC, SVC, wl, share) for wl, share in shares)
    return [topology.ServiceRoutes(SVC, rps, "selector", flows)]


def run(
    model: traffic.TrafficModel,
    plan: list[topology.ServiceRoutes],
    seconds: float,
    dt: float = 0.25,
) -> None:
    for _ in range(round(seconds / dt)):
        model.advance(plan, dt)


def counters_of(model: traffic.TrafficModel, name: str | None) -> traffic.FlowCounters:
    for key, counters in model.counters.items():
        if (key.workload[1] if key.workload else None) == name:
            return counters
    raise KeyError(name)


def test_request_counts_follow_rps_and_share() -> None:
    model = traffic.TrafficModel(rng=seeded(1))
    run(model, routes(200, (workload("a"), 0.7), (workload("b"), 0.3)), seconds=60)
    a = counters_of(model, "a")
    b = counters_of(model, "b")
    assert a.ok.requests == pytest.approx(200 * 0.7 * 60, rel=0.02)
    assert b.ok.requests == pytest.approx(200 * 0.3 * 60, rel=0.03)
    assert a.failed.requests == b.failed.requests == 0


def test_low_rates_are_not_biased() -> None:
    model = traffic.TrafficModel(rng=seeded(2))
    run(model, routes(2, (workload("a"), 1.0)), seconds=600)
    assert counters_of(model, "a").ok.requests == pytest.approx(1200, rel=0.08)


def test_error_ratio_is_respected() -> None:
    model = traffic.TrafficModel(rng=seeded(3))
    run(model, routes(500, (workload("a", error_ratio=0.05), 1.0)), seconds=60)
    a = counters_of(model, "a")
    total = a.ok.requests + a.failed.requests
    assert a.failed.requests / total == pytest.approx(0.05, abs=0.005)


def test_unavailable_share_counts_only_failures_without_latency() -> None:
    model = traffic.TrafficModel(rng=seeded(4))
    run(model, routes(100, (workload("a"), 0.5), (None, 0.5)), seconds=10)
    down = counters_of(model, None)
    assert down.unavailable
    assert down.ok.requests == 0
    assert down.failed.requests == pytest.approx(500, rel=0.15)
    assert down.failed.istio.count == 0


@pytest.mark.parametrize(("p50", "p99"), [(10.0, 100.0), (50.0, 500.0)])
def test_histogram_quantiles_match_configured_latency(p50: float, p99: float) -> None:
    # Both values sit on Istio and Linkerd bucket bounds, where histogram_quantile is exact;
    # between bounds it interpolates linearly, which is the scraper's error, not the model's.
    model = traffic.TrafficModel(rng=seeded(5))
    run(model, routes(100, (workload("a", p50=p50, p99=p99), 1.0)), seconds=30)
    a = counters_of(model, "a")
    for hist in (a.ok.istio, a.ok.linkerd):
        assert hist.count == a.ok.requests
        assert traffic.quantile_from_buckets(0.5, hist) == pytest.approx(p50, rel=0.01)
        assert traffic.quantile_from_buckets(0.99, hist) == pytest.approx(p99, rel=0.01)
    assert a.ok.istio.total / a.ok.istio.count == pytest.approx(
        traffic.LatencyProfile(p50, p99).mean(), rel=1e-9
    )


def test_quantiles_between_bounds_land_in_the_right_bucket() -> None:
    model = traffic.TrafficModel(rng=seeded(6))
    run(model, routes(100, (workload("a", p50=20, p99=80), 1.0)), seconds=10)
    hist = counters_of(model, "a").ok.istio
    assert 10 < traffic.quantile_from_buckets(0.5, hist) <= 25
    assert 50 < traffic.quantile_from_buckets(0.99, hist) <= 100


def test_buckets_are_cumulative_and_bounded_by_count() -> None:
    model = traffic.TrafficModel(rng=seeded(6))
    run(model, routes(50, (workload("a"), 1.0)), seconds=5)
    hist = counters_of(model, "a").ok.istio
    assert hist.buckets == sorted(hist.buckets)
    assert hist.buckets[-1] <= hist.count


def test_same_seed_same_counters() -> None:
    first, second = (
        traffic.TrafficModel(rng=seeded(7)),
        traffic.TrafficModel(rng=seeded(7)),
    )
    plan = routes(100, (workload("a", error_ratio=0.1), 1.0))
    run(first, plan, seconds=5)
    run(second, plan, seconds=5)
    assert counters_of(first, "a") == counters_of(second, "a")


def test_three_hundred_workloads_each_get_their_counters() -> None:
    # (What a tick costs at this size is bench/mesh_bench.py's figure, not a test's.)
    model = traffic.TrafficModel(rng=seeded(8))
    plan = [
        topology.ServiceRoutes(
            topology.ServiceRef("shop", f"svc{i}", 80),
            1000,
            "virtualservice",
            (
                topology.Flow(SVC, SVC, workload(f"w{i}-primary", error_ratio=0.01), 0.9),
                topology.Flow(SVC, SVC, workload(f"w{i}-canary", p50=i + 1, p99=4 * (i + 1)), 0.1),
            ),
        )
        for i in range(150)
    ]
    for _ in range(4):
        model.advance(plan, 0.25)
    assert len(model.counters) == 300
    assert all(c.ok.requests > 0 for c in model.counters.values())
