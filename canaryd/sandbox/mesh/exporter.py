"""Istio and Linkerd proxy metrics rendered from the traffic model's counters.

`MeshCollector` is a prometheus_client custom collector: register it on a private
`CollectorRegistry` (never the global one) and serve `generate_latest(registry)`.

Istio: every flow reaching a workload gives `reporter="destination"` and a matching
`reporter="source"` series (same counts: the client sidecar sees the same responses).
Requests with no available endpoint appear only with `reporter="source"`, response code
503 and flags `UH`. Linkerd: inbound metrics of the destination proxy, with the `namespace`,
`pod` and `deployment` labels Prometheus' pod discovery would add; each Deployment is
shown as one pod named `<deployment>-sandbox` (the mesh runs no pods). Series for a
response code appear once it has been seen, as with a real proxy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from canaryd.sandbox.mesh import traffic

ISTIO_LABELS = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_canonical_service",
    "destination_workload",
    "destination_workload_namespace",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_app",
    "destination_version",
    "destination_canonical_service",
    "destination_canonical_revision",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
)
LINKERD_LABELS = ("authority", "direction", "tls", "namespace", "pod", "deployment")
UNKNOWN = "unknown"


@dataclass
class _Sums:
    """Counts (and, for histograms, buckets) merged across flows sharing a label set."""

    count: float
    buckets: list[float]
    total: float

    def merge(self, count: float, hist: traffic.Histogram) -> None:
        self.count += count
        self.total += hist.total
        for i, value in enumerate(hist.buckets):
            self.buckets[i] += value


def _merge(
    into: dict[tuple[str, ...], _Sums],
    labels: tuple[str, ...],
    count: float,
    hist: traffic.Histogram,
) -> None:
    sums = into.get(labels)
    if sums is None:
        into[labels] = _Sums(count, list(hist.buckets), hist.total)
    else:
        sums.merge(count, hist)


def _istio_labels(
    counters: traffic.FlowCounters, *, reporter: str, code: str, source: tuple[str, str]
) -> tuple[str, ...]:
    flow = counters.flow
    wl = flow.workload
    dest = flow.destination or flow.service
    if wl is None:
        app = version = canonical = revision = name = namespace = UNKNOWN
    else:
        name, namespace = wl.name, wl.namespace
        app = wl.label("app", "app.kubernetes.io/name")
        # A pod without a version label: its image tag, so every release shows apart.
        version = wl.label("version", "app.kubernetes.io/version", default=wl.image_tag or UNKNOWN)
        canonical = wl.label(
            "service.istio.io/canonical-name", "app.kubernetes.io/name", "app", default=wl.name
        )
        revision = wl.label(
            "service.istio.io/canonical-revision",
            "app.kubernetes.io/version",
            "version",
            default=wl.image_tag or "latest",
        )
    return (
        reporter,
        source[0],
        source[1],
        source[0],
        name,
        namespace,
        dest.fqdn,
        dest.name,
        dest.namespace,
        app,
        version,
        canonical,
        revision,
        "http",
        code,
        "",
        "UH" if wl is None else "-",
        "mutual_tls" if reporter == "destination" else UNKNOWN,
    )


def _linkerd_labels(counters: traffic.FlowCounters) -> tuple[str, ...]:
    wl = counters.flow.workload
    assert wl is not None  # callers skip unavailable flows: no inbound proxy saw them
    svc = counters.flow.service
    authority = f"{svc.fqdn}:{svc.port}" if svc.port else svc.fqdn
    return (authority, "inbound", "true", wl.namespace, f"{wl.name}-sandbox", wl.name)


def _histogram(
    name: str,
    doc: str,
    labels: Sequence[str],
    bounds: tuple[float, ...],
    data: dict[tuple[str, ...], _Sums],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    for values, sums in data.items():
        buckets = [(_le(b), v) for b, v in zip(bounds, sums.buckets, strict=True)]
        buckets.append(("+Inf", sums.count))
        family.add_metric(list(values), buckets, sums.total)
    return family


def _counter(
    name: str, doc: str, labels: Sequence[str], data: dict[tuple[str, ...], float]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=list(labels))
    for values, count in data.items():
        family.add_metric(list(values), count)
    return family


def _le(bound: float) -> str:
    return str(int(bound)) if bound == int(bound) else str(bound)


class MeshCollector(Collector):
    """Renders the model's counters at scrape time; holds no state of its own."""

    def __init__(
        self,
        counters: Callable[[], Sequence[traffic.FlowCounters]],
        *,
        source_workload: str = UNKNOWN,
        source_namespace: str = UNKNOWN,
    ) -> None:
        self._counters = counters
        self._source = (source_workload, source_namespace)

    def collect(self) -> Iterator[Metric]:
        istio_requests: dict[tuple[str, ...], float] = {}
        istio_latency: dict[tuple[str, ...], _Sums] = {}
        l5d_requests: dict[tuple[str, ...], float] = {}
        l5d_responses: dict[tuple[str, ...], float] = {}
        l5d_latency: dict[tuple[str, ...], _Sums] = {}
        for counters in self._counters():
            unavailable = counters.unavailable
            reporters = ("source",) if unavailable else ("destination", "source")
            outcomes = (("200", counters.ok), ("503" if unavailable else "500", counters.failed))
            for code, outcome in outcomes:
                # A routed workload's series exist from the start at 0 (see topology):
                # success always, failures as soon as the workload is set to produce them.
                workload = counters.flow.workload
                zero_ok = not unavailable and (
                    code == "200" or (workload is not None and workload.error_ratio > 0)
                )
                if outcome.requests <= 0 and not zero_ok:
                    continue
                for reporter in reporters:
                    labels = _istio_labels(
                        counters, reporter=reporter, code=code, source=self._source
                    )
                    istio_requests[labels] = istio_requests.get(labels, 0.0) + outcome.requests
                    _merge(istio_latency, labels, outcome.requests, outcome.istio)
                if unavailable:
                    continue
                base = _linkerd_labels(counters)
                l5d_requests[base] = l5d_requests.get(base, 0.0) + outcome.requests
                classification = "success" if code == "200" else "failure"
                response = (*base, code, classification)
                l5d_responses[response] = l5d_responses.get(response, 0.0) + outcome.requests
                _merge(l5d_latency, (*base, code), outcome.requests, outcome.linkerd)
        yield _counter(
            "istio_requests", "Requests seen by Istio proxies.", ISTIO_LABELS, istio_requests
        )
        yield _histogram(
            "istio_request_duration_milliseconds",
            "Request duration seen by Istio proxies.",
            ISTIO_LABELS,
            traffic.ISTIO_BUCKETS_MS,
            istio_latency,
        )
        yield _counter(
            "request", "Requests received by Linkerd proxies.", LINKERD_LABELS, l5d_requests
        )
        yield _counter(
            "response",
            "Responses sent by Linkerd proxies.",
            (*LINKERD_LABELS, "status_code", "classification"),
            l5d_responses,
        )
        yield _histogram(
            "response_latency_ms",
            "Response latency seen by Linkerd proxies.",
            (*LINKERD_LABELS, "status_code"),
            traffic.LINKERD_BUCKETS_MS,
            l5d_latency,
        )
