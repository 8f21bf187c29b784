"""Built-in metric templates for Istio and Linkerd.

A template is "groupable" when it selects its targets through `{{ target }}` and names the
labels that identify a workload in its result: then one query answers for every rollout
that uses it in the same tick (see canaryd.runtime.analysis).
"""

from __future__ import annotations

ISTIO_LABELS = {"namespace": "destination_workload_namespace", "workload": "destination_workload"}
LINKERD_LABELS = {"namespace": "namespace", "workload": "deployment"}

_ISTIO_BY = "sum by (destination_workload_namespace, destination_workload)"
_ISTIO_SEL = 'reporter="destination", {{ target }}'
_LINKERD_BY = "sum by (namespace, deployment)"
_LINKERD_SEL = 'direction="inbound", {{ target }}'

_INTERVAL = "[{{ interval }}]"
_ISTIO_REQUESTS = f"{_ISTIO_BY} (increase(istio_requests_total{{{_ISTIO_SEL}}}{_INTERVAL}))"
_LINKERD_REQUESTS = f"{_LINKERD_BY} (increase(response_total{{{_LINKERD_SEL}}}{_INTERVAL}))"


def _istio_latency(q: str) -> str:
    return (
        f"histogram_quantile({q}, sum by (destination_workload_namespace, destination_workload, le)"
        f" (rate(istio_request_duration_milliseconds_bucket{{{_ISTIO_SEL}}}[{{{{ interval }}}}])))"
    )


def _linkerd_latency(q: str) -> str:
    return (
        f"histogram_quantile({q}, sum by (namespace, deployment, le)"
        f" (rate(response_latency_ms_bucket{{{_LINKERD_SEL}}}[{{{{ interval }}}}])))"
    )


def builtin_metrics() -> dict[str, dict[str, object]]:
    """Raw template definitions (validated by canaryd.core.settings like user-defined ones)."""
    metrics: dict[str, dict[str, object]] = {
        "istio-success-rate": {
            "description": "percentage of non-5xx responses served by the workload (Istio)",
            "query": (
                f'{_ISTIO_BY} (rate(istio_requests_total{{{_ISTIO_SEL}, response_code!~"5.."}}'
                f"[{{{{ interval }}}}])) / {_ISTIO_BY} (rate(istio_requests_total{{{_ISTIO_SEL}}}"
                f"[{{{{ interval }}}}])) * 100"
            ),
            "requests": _ISTIO_REQUESTS,
            "labels": ISTIO_LABELS,
            "unit": "%",
        },
        "linkerd-success-rate": {
            "description": "percentage of successful responses (Linkerd classification)",
            "query": (
                f'{_LINKERD_BY} (rate(response_total{{{_LINKERD_SEL}, classification="success"}}'
                f"[{{{{ interval }}}}])) / {_LINKERD_BY} (rate(response_total{{{_LINKERD_SEL}}}"
                f"[{{{{ interval }}}}])) * 100"
            ),
            "requests": _LINKERD_REQUESTS,
            "labels": LINKERD_LABELS,
            "unit": "%",
        },
    }
    # Error counts per workload over the interval: for `sequential` checks, which compare
    # the canary's share of errors with its share of traffic.
    metrics["istio-error-count"] = {
        "description": "5xx responses served by the workload in the interval (Istio)",
        "query": (
            f'{_ISTIO_BY} (increase(istio_requests_total{{{_ISTIO_SEL}, response_code=~"5.."}}'
            f"{_INTERVAL}))"
        ),
        "requests": _ISTIO_REQUESTS,
        "labels": ISTIO_LABELS,
    }
    metrics["linkerd-error-count"] = {
        "description": "failed responses in the interval (Linkerd classification)",
        "query": (
            f'{_LINKERD_BY} (increase(response_total{{{_LINKERD_SEL}, classification="failure"}}'
            f"{_INTERVAL}))"
        ),
        "requests": _LINKERD_REQUESTS,
        "labels": LINKERD_LABELS,
    }
    # Latency histograms per workload over the interval: for `sequential` checks, which
    # compare the canary's share of slow requests with its share of traffic.
    metrics["istio-latency-buckets"] = {
        "description": "request latency histogram buckets over the interval (Istio)",
        "query": (
            "sum by (destination_workload_namespace, destination_workload, le) "
            f"(increase(istio_request_duration_milliseconds_bucket{{{_ISTIO_SEL}}}{_INTERVAL}))"
        ),
        "requests": _ISTIO_REQUESTS,
        "labels": {**ISTIO_LABELS, "bucket": "le"},
        "unit": "ms",
    }
    metrics["linkerd-latency-buckets"] = {
        "description": "response latency histogram buckets over the interval (Linkerd)",
        "query": (
            "sum by (namespace, deployment, le) "
            f"(increase(response_latency_ms_bucket{{{_LINKERD_SEL}}}{_INTERVAL}))"
        ),
        "requests": _LINKERD_REQUESTS,
        "labels": {**LINKERD_LABELS, "bucket": "le"},
        "unit": "ms",
    }
    for name, q in (("p50", "0.5"), ("p90", "0.9"), ("p99", "0.99")):
        metrics[f"istio-latency-{name}"] = {
            "description": f"{name} request latency in milliseconds (Istio histogram)",
            "query": _istio_latency(q),
            "requests": _ISTIO_REQUESTS,
            "labels": ISTIO_LABELS,
            "unit": "ms",
        }
        metrics[f"linkerd-latency-{name}"] = {
            "description": f"{name} response latency in milliseconds (Linkerd histogram)",
            "query": _linkerd_latency(q),
            "requests": _LINKERD_REQUESTS,
            "labels": LINKERD_LABELS,
            "unit": "ms",
        }
    return metrics
