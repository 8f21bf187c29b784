"""The daemon's own /metrics (prometheus_client), in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from canaryd.core.model import Phase
from canaryd.core.reading import UNKNOWN


class DaemonMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.rollouts = Gauge("canaryd_rollouts", "Rollouts by phase", ["phase"], registry=r)
        self.weight = Gauge(
            "canaryd_rollout_canary_weight", "Canary weight per rollout (percent)",
            ["namespace", "rollout"], registry=r,
        )
        self.check_value = Gauge(
            "canaryd_check_value", "Last measured value of a check",
            ["namespace", "rollout", "metric"], registry=r,
        )
        self.check_threshold = Gauge(
            "canaryd_check_threshold", "Threshold of a check",
            ["namespace", "rollout", "metric", "bound"], registry=r,
        )
        self.check_outcomes = Counter(
            "canaryd_check_outcomes", "Check verdicts", ["metric", "verdict"], registry=r
        )
        self.transitions = Counter(
            "canaryd_transitions", "Phase transitions", ["source", "target", "trigger"],
            registry=r,
        )
        self.step_seconds = Histogram(
            "canaryd_step_duration_seconds", "Time spent per rollout step",
            buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600), registry=r,
        )
        self.prometheus_seconds = Histogram(
            "canaryd_prometheus_query_seconds", "Prometheus query latency", registry=r
        )
        self.prometheus_errors = Counter(
            "canaryd_prometheus_query_errors", "Prometheus queries that got no answer",
            registry=r,
        )
        self.prometheus_queries_per_round = Gauge(
            "canaryd_prometheus_queries_per_round", "Queries issued by the last analysis round",
            registry=r,
        )
        self.analysis_rounds = Counter(
            "canaryd_analysis_rounds", "Analysis rounds (one batch of due analyses)", registry=r
        )
        self.prometheus_queries = Counter(
            "canaryd_prometheus_queries", "Prometheus queries issued by analysis", registry=r
        )
        self.analysed_rollouts = Counter(
            "canaryd_analysed_rollouts", "Rollout analyses performed", registry=r
        )
        self.kube_errors = Counter(
            "canaryd_kube_errors", "Kubernetes API calls that failed after retries",
            ["operation"], registry=r,
        )
        self.kube_seconds = Histogram(
            "canaryd_kube_request_seconds", "Kubernetes API call latency (with retries)",
            ["operation"], registry=r,
        )
        self.reconcile_seconds = Histogram(
            "canaryd_reconcile_seconds", "Duration of one reconcile round", registry=r
        )
        self.degraded = Gauge(
            "canaryd_rollout_degraded",
            "1 while canaryd cannot act on a rollout as asked (reason: why; see its Degraded "
            "condition)", ["namespace", "rollout", "reason"], registry=r,
        )
        self.leader = Gauge("canaryd_leader", "1 when this replica drives rollouts", registry=r)
        for phase in [*(p.value for p in Phase), UNKNOWN]:
            self.rollouts.labels(phase=phase)

    def observe_kube(self, operation: str, seconds: float, failed: bool) -> None:
        self.kube_seconds.labels(operation).observe(seconds)
        if failed:
            self.kube_errors.labels(operation).inc()

    def observe_prometheus(self, seconds: float, failed: bool) -> None:
        self.prometheus_seconds.observe(seconds)
        if failed:
            self.prometheus_errors.inc()
