"""The daemon's own /metrics (prometheus_client), in a registry of its own.

Per-rollout series (labels namespace and rollout) are bounded by the rollouts canaryd knows:
`canaryd_rollout_info` exists while a rollout is active; the weight and check series are
removed when the rollout is deleted, or RETENTION seconds after it finished (`forget`).
Everything else is aggregated (phase counts, verdict counters).
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from canaryd.core.model import TERMINAL_PHASES, Phase
from canaryd.core.reading import UNKNOWN

RETENTION = 600.0  # seconds a finished rollout's weight and check series stay


class DaemonMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.rollouts = Gauge("canaryd_rollouts", "Rollouts by phase", ["phase"], registry=r)
        self.info = Gauge(
            "canaryd_rollout_info", "1 per active rollout, with its target and phase",
            ["namespace", "rollout", "target", "phase"], registry=r,
        )
        self._info: dict[str, tuple[str, str, str, str]] = {}
        self._series: dict[str, set[tuple[Gauge, tuple[str, ...]]]] = {}
        self.weight = Gauge(
            "canaryd_rollout_canary_weight", "Canary weight per rollout (percent)",
            ["namespace", "rollout"], registry=r,
        )
        # dry_run="true": a check that is recorded and exported but never decides anything.
        self.check_value = Gauge(
            "canaryd_check_value", "Last measured value of a check",
            ["namespace", "rollout", "metric", "dry_run"], registry=r,
        )
        self.check_threshold = Gauge(
            "canaryd_check_threshold", "Threshold of a check",
            ["namespace", "rollout", "metric", "bound", "dry_run"], registry=r,
        )
        self.check_outcomes = Counter(
            "canaryd_check_outcomes", "Check verdicts", ["metric", "verdict", "dry_run"],
            registry=r,
        )
        self.transitions = Counter(
            "canaryd_transitions", "Phase transitions", ["source", "target", "trigger"],
            registry=r,
        )
        self.step_seconds = Histogram(
            "canaryd_step_duration_seconds", "Time spent per rollout step",
            buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600), registry=r,
        )
        # From the transition out of Pending to the terminal phase (phase: which one), as the
        # rollout's status history has them, so a leader change does not restart the count.
        self.rollout_seconds = Histogram(
            "canaryd_rollout_duration_seconds", "Time from a rollout's start to its end",
            ["phase"], buckets=(30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400),
            registry=r,
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
        self.policy_starts = Counter(
            "canaryd_policy_rollouts_started",
            "Rollouts a RolloutPolicy started (created by this replica)", registry=r)
        self.policy_looks = Counter(
            "canaryd_policy_looks",
            "Looks at a RolloutPolicy's Deployments (outcome: ok, or error)", ["outcome"],
            registry=r)
        self.policies_not_ready = Gauge(
            "canaryd_policies_not_ready",
            "RolloutPolicies whose Ready condition is False (see the condition)", registry=r)
        self.shards_held = Gauge(
            "canaryd_shards_held", "Shards this replica leads (with --shards > 1)", registry=r)
        self.shard_transitions = Counter(
            "canaryd_shard_transitions", "Shards this replica took (acquired), lost (renew "
            "deadline passed or taken) or gave up (released)", ["change"], registry=r)
        for phase in [*(p.value for p in Phase), UNKNOWN]:
            self.rollouts.labels(phase=phase)
        for ended in TERMINAL_PHASES:  # from 0, so that rate() sees the first one end
            self.rollout_seconds.labels(ended.value)

    def of_rollout(self, gauge: Gauge, namespace: str, rollout: str, *labels: str) -> Gauge:
        """`gauge`'s child for this rollout, remembered so that `forget` can remove it."""
        values = (namespace, rollout, *labels)
        self._series.setdefault(f"{namespace}/{rollout}", set()).add((gauge, values))
        return gauge.labels(*values)

    def set_info(self, key: str, *, target: str, phase: str, active: bool) -> None:
        namespace, _, name = key.partition("/")
        new = (namespace, name, target, phase) if active else None
        old = self._info.pop(key, None)
        if old is not None and old != new:
            with contextlib.suppress(KeyError):
                self.info.remove(*old)
        if new is not None:
            self.info.labels(*new).set(1)
            self._info[key] = new

    def with_series(self) -> list[str]:
        """The rollouts ("namespace/name") that have weight or check series."""
        return list(self._series)

    def forget(self, key: str) -> None:
        """Remove every series of this rollout."""
        self.set_info(key, target="", phase="", active=False)
        for gauge, values in self._series.pop(key, ()):
            with contextlib.suppress(KeyError):
                gauge.remove(*values)

    def observe_kube(self, operation: str, seconds: float, failed: bool) -> None:
        self.kube_seconds.labels(operation).observe(seconds)
        errors = self.kube_errors.labels(operation)  # exported from 0, so rate() sees the 1st
        if failed:
            errors.inc()

    def observe_prometheus(self, seconds: float, failed: bool) -> None:
        self.prometheus_seconds.observe(seconds)
        if failed:
            self.prometheus_errors.inc()
