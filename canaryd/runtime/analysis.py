"""Analysis runs for many rollouts at once, with coalesced queries.

Jobs due in the same tick that use the same groupable template and window are answered by
one query whose `{{ target }}` selects every workload involved; its result, grouped by the
template's namespace/workload labels, is split back per rollout. Prometheus load therefore
grows with the number of templates, not with the number of rollouts.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from canaryd.adapters.prometheus import PrometheusClient, QueryError, Sample
from canaryd.analysis import promql
from canaryd.config import Check, MetricTemplate, Settings
from canaryd.core.model import CheckResult, Evidence
from canaryd.core.plan import EffectiveAnalysis
from canaryd.core.verdict import Measurement, judge

Key = tuple[str, str]  # (namespace, workload)
Value = float | dict[float, float]  # a sample, or a histogram's buckets (le -> count)


@dataclass(frozen=True)
class Job:
    rollout: str
    namespace: str
    stable: str
    canary: str
    analysis: EffectiveAnalysis
    step: int
    canary_share: float | None = None  # current traffic share of the canary (0..1)
    evidence: tuple[Evidence, ...] = field(default=())  # sequential checks, from status

    @property
    def compared(self) -> bool:
        """A decisive comparison check judges this run (see Measurement.compared)."""
        share = self.canary_share
        return share is not None and 0 < round(share * 100) < 100 and any(
            c.sequential is not None and not c.dry_run for c in self.analysis.checks)


@dataclass
class _Answer:
    values: dict[Key, Value] | None = None
    error: str | None = None


def _target(labels: dict[str, str], keys: set[Key]) -> str:
    namespaces = {k[0] for k in keys}
    workloads = {k[1] for k in keys}
    return (
        f"{labels['namespace']}=~{promql.regex_alternation(namespaces)}, "
        f"{labels['workload']}=~{promql.regex_alternation(workloads)}"
    )


def _index(samples: Sequence[Sample], labels: dict[str, str]) -> dict[Key, Value]:
    out: dict[Key, Value] = {}
    bucket = labels.get("bucket")
    for metric, value in samples:
        key = (metric.get(labels["namespace"], ""), metric.get(labels["workload"], ""))
        if bucket is None:
            out[key] = value
            continue
        try:
            le = float(metric.get(bucket, ""))
        except ValueError:
            continue  # not a bucket series
        buckets = out.setdefault(key, {})
        assert isinstance(buckets, dict)
        buckets[le] = value
    return out


def _scalar(value: Value | None) -> float | None:
    return value if isinstance(value, float) else None


def _buckets(value: Value | None) -> dict[float, float] | None:
    return value if isinstance(value, dict) else None


class Analyzer:
    def __init__(self, *, prometheus: PrometheusClient, settings: Settings) -> None:
        self.prometheus = prometheus
        self.settings = settings
        self.queries_last_round = 0

    async def _grouped(self, query: str, labels: dict[str, str], at: datetime) -> _Answer:
        try:
            return _Answer(values=_index(await self.prometheus.query(query, at=at), labels))
        except QueryError as exc:
            return _Answer(error=str(exc))

    async def _single(self, query: str, at: datetime) -> _Answer:
        try:
            samples = await self.prometheus.query(query, at=at)
        except QueryError as exc:
            return _Answer(error=str(exc))
        if not samples:
            return _Answer(values={})
        return _Answer(values={("", ""): samples[0][1]})

    async def run(self, jobs: Sequence[Job], now: datetime) -> dict[str, tuple[CheckResult, ...]]:
        """Analyse every job as of `now`: each query is evaluated at exactly that time
        (Prometheus' `time=`), so a window is the one the results are stamped with, however
        long the answers take."""
        settings = self.settings
        # 1. Work out every distinct query this round needs.
        grouped: dict[tuple[str, str, float], set[Key]] = defaultdict(set)  # (metric, part, window)
        singles: dict[str, str] = {}
        plans: list[tuple[Job, Check, MetricTemplate, dict[str, str]]] = []
        for job in jobs:
            window = promql.duration(job.analysis.interval)
            for check in job.analysis.checks:
                template = settings.metric(check.metric)
                # Stable rides along in the same grouped query: for comparisons, and for
                # telling a shared incident from a bad canary.
                keys = {(job.namespace, job.canary), (job.namespace, job.stable)}
                queries: dict[str, str] = {}
                if template.labels is not None:
                    grouped[(check.metric, "query", job.analysis.interval)] |= keys
                    if template.requests:
                        grouped[(check.metric, "requests", job.analysis.interval)] |= keys
                else:
                    params = {k: (check.params.get(k) or spec.default or "")
                              for k, spec in template.params.items()}
                    strings = {"namespace": job.namespace, "workload": job.canary, **params}
                    for part in ("query", "requests"):
                        text = getattr(template, part)
                        if text:
                            q = promql.render(text, strings=strings, raw={"interval": window})
                            singles[q] = q
                            queries[part] = q
                plans.append((job, check, template, queries))

        # 2. Issue them concurrently: one query per (template, part, window).
        rendered: dict[tuple[str, str, float], str] = {}
        for (metric, part, interval), keys in grouped.items():
            template = settings.metric(metric)
            assert template.labels is not None
            text = template.query if part == "query" else (template.requests or "")
            rendered[(metric, part, interval)] = promql.render(
                text, strings={},
                raw={"target": _target(template.labels, keys),
                     "interval": promql.duration(interval)},
            )
        names = list(rendered)
        answers = await asyncio.gather(
            *(self._grouped(rendered[n], settings.metric(n[0]).labels or {}, now)
              for n in names),
            *(self._single(q, now) for q in singles),
        )
        by_group = dict(zip(names, answers[: len(names)], strict=True))
        by_single = dict(zip(singles, answers[len(names):], strict=True))
        self.queries_last_round = len(answers)

        # 3. Split the answers back into measurements per rollout and judge them.
        results: dict[str, list[CheckResult]] = defaultdict(list)
        for job, check, template, queries in plans:
            canary_key = (job.namespace, job.canary)
            stable_key = (job.namespace, job.stable)
            if template.labels is not None:
                main = by_group[(check.metric, "query", job.analysis.interval)]
                req = by_group.get((check.metric, "requests", job.analysis.interval))
                query = rendered[(check.metric, "query", job.analysis.interval)]
            else:
                main = by_single[queries["query"]]
                req = by_single.get(queries.get("requests", ""))
                query = queries["query"]
                canary_key = stable_key = ("", "")
            error = main.error or (req.error if req else None)
            values = main.values or {}
            requests = stable_requests = None
            if req is not None and req.values is not None:
                requests = _scalar(req.values.get(canary_key)) or 0.0
                if math.isnan(requests):
                    requests = 0.0
                if stable_key != canary_key:
                    stable_requests = _scalar(req.values.get(stable_key))
            stable = values.get(stable_key) if stable_key != canary_key else None
            measurement = Measurement(
                metric=check.metric,
                query=query,
                value=_scalar(values.get(canary_key)),
                stable_value=_scalar(stable),
                requests=requests,
                stable_requests=stable_requests,
                error=error,
                canary_share=job.canary_share,
                evidence=job.evidence,
                buckets=(_buckets(values.get(canary_key)) or {}) if template.histogram else None,
                stable_buckets=(_buckets(stable) or {}) if template.histogram else None,
                compared=job.compared,
                unit=template.unit,
            )
            results[job.rollout].append(
                judge(check, measurement, min_requests=job.analysis.min_requests, now=now,
                      step=job.step)
            )
        return {k: tuple(v) for k, v in results.items()}
