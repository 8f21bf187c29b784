"""A fluid traffic model: cumulative request, error and latency counters per flow.

Pure given an injected `random.Random`: `TrafficModel.advance(routes, dt)` adds one tick's
worth of traffic. Request counts are integers drawn around rps*share*dt (Poisson, normal
approximation for large means); errors are binomial in the workload's error ratio. Latency
is never sampled per request: each bucket of a histogram gains the *expected* number of
requests at or below its bound, from the log-normal CDF. The cost per tick is O(flows x
buckets), independent of the request rate, so hundreds of workloads tick cheaply.

Requests of a flow without a workload (no available endpoint) are all counted as failures
with `unavailable=True`; the exporter reports them from the calling side only (503, UH).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from canaryd.sandbox.mesh import topology

ISTIO_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    300000, 600000, 1800000, 3600000,
)  # fmt: skip
LINKERD_BUCKETS_MS: tuple[float, ...] = (
    1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000, 3000, 4000,
    5000, 10000, 20000, 30000, 40000, 50000,
)  # fmt: skip

Z_99 = 2.3263478740408408  # standard normal quantile at 0.99
_NORMAL_APPROX_MEAN = 30.0  # above this a Poisson/binomial is drawn as a rounded normal


@dataclass(frozen=True)
class FlowKey:
    """Counters are kept per (called service, destination service, workload)."""

    service: topology.ServiceRef
    destination: topology.ServiceRef | None
    workload: tuple[str, str] | None  # (namespace, name)


@dataclass
class Histogram:
    """Cumulative bucket counts (count of observations <= bound) plus sum and count."""

    bounds: tuple[float, ...]
    buckets: list[float]
    total: float = 0.0
    count: float = 0.0

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> Histogram:
        return cls(bounds, [0.0] * len(bounds))

    def add(self, n: float, cdf: tuple[float, ...], mean: float) -> None:
        if n <= 0:
            return
        for i, fraction in enumerate(cdf):
            self.buckets[i] += n * fraction
        self.count += n
        self.total += n * mean


@dataclass
class Outcome:
    """Counters for one response class (success or failure) of a flow."""

    requests: float = 0.0
    istio: Histogram = field(default_factory=lambda: Histogram.empty(ISTIO_BUCKETS_MS))
    linkerd: Histogram = field(default_factory=lambda: Histogram.empty(LINKERD_BUCKETS_MS))


@dataclass
class FlowCounters:
    """Everything the exporter needs about a flow; `flow` is the latest routing seen."""

    flow: topology.Flow
    ok: Outcome = field(default_factory=Outcome)
    failed: Outcome = field(default_factory=Outcome)

    @property
    def unavailable(self) -> bool:
        return self.flow.workload is None


@dataclass(frozen=True)
class LatencyProfile:
    """Log-normal latency with the given median and 99th percentile, in milliseconds."""

    p50_ms: float
    p99_ms: float

    @property
    def mu(self) -> float:
        return math.log(self.p50_ms)

    @property
    def sigma(self) -> float:
        return max(1e-9, (math.log(self.p99_ms) - math.log(self.p50_ms)) / Z_99)

    def cdf(self, x_ms: float) -> float:
        if x_ms <= 0:
            return 0.0
        z = (math.log(x_ms) - self.mu) / (self.sigma * math.sqrt(2.0))
        return 0.5 * (1.0 + math.erf(z))

    def mean(self) -> float:
        return math.exp(self.mu + self.sigma**2 / 2)


def poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > _NORMAL_APPROX_MEAN:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    # Knuth's method: cheap for the small means where the normal approximation is poor.
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def binomial(rng: random.Random, n: int, p: float) -> int:
    if n <= 0 or p <= 0:
        return 0
    if p >= 1:
        return n
    if n <= 40:
        return sum(1 for _ in range(n) if rng.random() < p)
    variance = n * p * (1 - p)
    if variance >= 9:
        return min(n, max(0, round(rng.gauss(n * p, math.sqrt(variance)))))
    # Rare events (or near-certain ones) in many trials: Poisson on the rarer side.
    return min(n, poisson(rng, n * p)) if p <= 0.5 else n - min(n, poisson(rng, n * (1 - p)))


class TrafficModel:
    """Cumulative counters for every flow ever routed; `advance` adds one tick."""

    def __init__(self, *, rng: random.Random) -> None:
        self._rng = rng
        self._counters: dict[FlowKey, FlowCounters] = {}
        # CDF vectors depend only on the latency profile; workloads mostly share a few.
        self._cdf_cache: dict[LatencyProfile, tuple[tuple[float, ...], tuple[float, ...], float]]
        self._cdf_cache = {}

    @property
    def counters(self) -> Mapping[FlowKey, FlowCounters]:
        return self._counters

    def _profile(
        self, profile: LatencyProfile
    ) -> tuple[tuple[float, ...], tuple[float, ...], float]:
        cached = self._cdf_cache.get(profile)
        if cached is None:
            cached = (
                tuple(profile.cdf(b) for b in ISTIO_BUCKETS_MS),
                tuple(profile.cdf(b) for b in LINKERD_BUCKETS_MS),
                profile.mean(),
            )
            if len(self._cdf_cache) > 4096:  # annotations are user input; bound the cache
                self._cdf_cache.clear()
            self._cdf_cache[profile] = cached
        return cached

    def advance(self, routes: Iterable[topology.ServiceRoutes], dt: float) -> None:
        if dt <= 0:
            return
        for service_routes in routes:
            for flow in service_routes.flows:
                self._advance_flow(flow, service_routes.rps * flow.share * dt)

    def _advance_flow(self, flow: topology.Flow, expected: float) -> None:
        workload = flow.workload
        key = FlowKey(
            flow.service,
            flow.destination,
            (workload.namespace, workload.name) if workload else None,
        )
        counters = self._counters.get(key)
        if counters is None:
            counters = self._counters[key] = FlowCounters(flow)
        else:
            counters.flow = flow  # labels and knobs follow the latest object state
        n = poisson(self._rng, expected)
        if n == 0:
            return
        if workload is None:
            counters.failed.requests += n  # an immediate 503: no latency worth modelling
            return
        errors = binomial(self._rng, n, workload.error_ratio)
        istio_cdf, linkerd_cdf, mean = self._profile(
            LatencyProfile(workload.p50_ms, workload.p99_ms)
        )
        for outcome, count in ((counters.ok, n - errors), (counters.failed, errors)):
            if count:
                outcome.requests += count
                outcome.istio.add(count, istio_cdf, mean)
                outcome.linkerd.add(count, linkerd_cdf, mean)


def quantile_from_buckets(q: float, hist: Histogram) -> float:
    """Prometheus' histogram_quantile over one histogram (linear within a bucket)."""
    if hist.count <= 0:
        return math.nan
    rank = q * hist.count
    lower_bound, lower_count = 0.0, 0.0
    for bound, cumulative in zip(hist.bounds, hist.buckets, strict=True):
        if cumulative >= rank:
            if cumulative == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                cumulative - lower_count
            )
        lower_bound, lower_count = bound, cumulative
    return hist.bounds[-1]
