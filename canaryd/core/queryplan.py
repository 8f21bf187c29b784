"""The queries one analysis round needs, and the verdicts from their answers. Pure.

Jobs due in the same round that use the same groupable template and window are answered by
one query whose `{{ target }}` selects every workload involved; its result, grouped by the
template's namespace/workload labels, is split back per rollout. Prometheus load therefore
grows with the number of templates, not with the number of rollouts.

`plan(jobs, settings)` lists the distinct queries; `verdicts(plan, answers, now)` turns
their answers (samples, or an error) into check results. The daemon answers them with
instant queries at `now`, `canaryd backtest` with range queries over history: the same
queries, the same coalescing, the same verdicts.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from canaryd.core import promql
from canaryd.core.analysisspec import Check
from canaryd.core.model import CheckResult, Evidence
from canaryd.core.plan import EffectiveAnalysis
from canaryd.core.settings import MetricTemplate, Settings
from canaryd.core.verdict import Measurement, judge

Key = tuple[str, str]  # (namespace, workload)
Sample = tuple[Mapping[str, str], float]
Value = float | dict[float, float]  # a sample, or a histogram's buckets (le -> count)
Answer = Sequence[Sample] | str  # the samples of an instant vector, or why there are none


@dataclass(frozen=True)
class Job:
    rollout: str
    namespace: str
    stable: str
    canary: str
    analysis: EffectiveAnalysis
    step: int
    canary_share: float | None = None  # the traffic share the plan gives the canary (0..1)
    evidence: tuple[Evidence, ...] = field(default=())  # sequential checks, from status

    @property
    def compared(self) -> bool:
        """A decisive comparison check judges this run (see Measurement.compared)."""
        share = self.canary_share
        return share is not None and 0 < round(share * 100) < 100 and any(
            c.sequential is not None and not c.dry_run for c in self.analysis.checks)


@dataclass(frozen=True)
class Query:
    text: str
    labels: Mapping[str, str] | None  # how to split a grouped answer; None: one value


@dataclass(frozen=True)
class _Planned:
    job: Job
    check: Check
    template: MetricTemplate
    main: Query
    requests: Query | None


@dataclass(frozen=True)
class Plan:
    queries: tuple[Query, ...]  # distinct: each is asked once
    checks: tuple[_Planned, ...]


def _target(labels: Mapping[str, str], keys: set[Key]) -> str:
    namespaces = {k[0] for k in keys}
    workloads = {k[1] for k in keys}
    return (
        f"{labels['namespace']}=~{promql.regex_alternation(namespaces)}, "
        f"{labels['workload']}=~{promql.regex_alternation(workloads)}"
    )


def _answer_labels(template: MetricTemplate, part: str) -> dict[str, str]:
    """The labels an answer is indexed by: a histogram's request count has no buckets."""
    labels = dict(template.labels or {})
    if part != "query":
        labels.pop("bucket", None)
    return labels


def plan(jobs: Sequence[Job], settings: Settings) -> Plan:
    # Stable rides along in the same grouped query: for comparisons, and for telling a
    # shared incident from a bad canary.
    grouped: dict[tuple[str, str, float], set[Key]] = defaultdict(set)  # (metric, part, window)
    for job in jobs:
        for check in job.analysis.checks:
            template = settings.metric(check.metric)
            if template.labels is not None:
                keys = {(job.namespace, job.canary), (job.namespace, job.stable)}
                grouped[(check.metric, "query", job.analysis.interval)] |= keys
                if template.requests:
                    grouped[(check.metric, "requests", job.analysis.interval)] |= keys
    rendered: dict[tuple[str, str, float], Query] = {}
    for (metric, part, interval), keys in grouped.items():
        template = settings.metric(metric)
        assert template.labels is not None
        text = template.query if part == "query" else (template.requests or "")
        rendered[(metric, part, interval)] = Query(
            promql.render(text, strings={},
                          raw={"target": _target(template.labels, keys),
                               "interval": promql.duration(interval)}),
            _answer_labels(template, part))
    queries: dict[str, Query] = {q.text: q for q in rendered.values()}
    planned: list[_Planned] = []
    for job in jobs:
        window = promql.duration(job.analysis.interval)
        for check in job.analysis.checks:
            template = settings.metric(check.metric)
            if template.labels is not None:
                main = rendered[(check.metric, "query", job.analysis.interval)]
                req = rendered.get((check.metric, "requests", job.analysis.interval))
            else:
                params = {k: (check.params.get(k) or spec.default or "")
                          for k, spec in template.params.items()}
                strings = {"namespace": job.namespace, "workload": job.canary, **params}
                main = Query(promql.render(template.query, strings=strings,
                                           raw={"interval": window}), None)
                req = Query(promql.render(template.requests, strings=strings,
                                          raw={"interval": window}), None) \
                    if template.requests else None
                for q in (main, req):
                    if q is not None:
                        queries.setdefault(q.text, q)
            planned.append(_Planned(job, check, template, main, req))
    return Plan(tuple(queries.values()), tuple(planned))


def _index(samples: Sequence[Sample], labels: Mapping[str, str] | None) -> dict[Key, Value]:
    if labels is None:  # one value: the first sample's, if any
        return {("", ""): samples[0][1]} if samples else {}
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


def measurements(p: Plan, answers: Mapping[str, Answer]) -> list[tuple[_Planned, Measurement]]:
    """Each planned check's measurement, split out of the answers (keyed by query text)."""
    indexed: dict[str, dict[Key, Value] | str] = {}
    for q in p.queries:
        answer = answers.get(q.text, "not asked")
        indexed[q.text] = answer if isinstance(answer, str) else _index(answer, q.labels)
    out = []
    for item in p.checks:
        job, check, template = item.job, item.check, item.template
        canary_key, stable_key = (job.namespace, job.canary), (job.namespace, job.stable)
        if item.main.labels is None:
            canary_key = stable_key = ("", "")
        main = indexed[item.main.text]
        req = indexed[item.requests.text] if item.requests is not None else None
        error = main if isinstance(main, str) else (req if isinstance(req, str) else None)
        values = main if not isinstance(main, str) else {}
        requests = stable_requests = None
        if req is not None and not isinstance(req, str):
            requests = _scalar(req.get(canary_key)) or 0.0
            if math.isnan(requests):
                requests = 0.0
            if stable_key != canary_key:
                stable_requests = _scalar(req.get(stable_key))
        stable = values.get(stable_key) if stable_key != canary_key else None
        out.append((item, Measurement(
            metric=check.metric,
            query=item.main.text,
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
        )))
    return out


def verdicts(
    p: Plan, answers: Mapping[str, Answer], now: datetime
) -> dict[str, tuple[CheckResult, ...]]:
    """Every job's check results, judged from the answers to the plan's queries."""
    results: dict[str, list[CheckResult]] = defaultdict(list)
    for item, m in measurements(p, answers):
        results[item.job.rollout].append(
            judge(item.check, m, min_requests=item.job.analysis.min_requests, now=now,
                  step=item.job.step))
    return {k: tuple(v) for k, v in results.items()}
