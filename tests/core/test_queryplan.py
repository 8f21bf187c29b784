"""The round's query plan: one query per template, part and window however many rollouts, and
verdicts split back per rollout from the answers (instant or one point of a range). Pure."""

from __future__ import annotations

from datetime import UTC, datetime

from canaryd.core import queryplan
from canaryd.core.model import RolloutSpec, Verdict
from canaryd.core.plan import resolve_analysis
from canaryd.core.settings import parse_settings

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = parse_settings({"profiles": {"p": {
    "interval": "10s", "minInterval": "1s", "minRequests": 10,
    "checks": [{"metric": "istio-success-rate", "min": 99},
               {"metric": "istio-latency-buckets", "sequential": {"quantiles": [0.99]}}],
}}})


def job(name: str, share: float = 0.2) -> queryplan.Job:
    spec = RolloutSpec.model_validate({
        "target": name, "version": "v2",
        "router": {"istio": {"virtualService": name,
                             "stable": {"host": name, "subset": "stable"},
                             "canary": {"host": name, "subset": "canary"}}},
        "workloads": {"stable": f"{name}-stable", "canary": f"{name}-canary"},
        "plan": {"steps": [{"weight": 20}]}, "analysis": {"profile": "p"},
    })
    return queryplan.Job(rollout=f"demo/{name}", namespace="demo", stable=f"{name}-stable",
                         canary=f"{name}-canary", analysis=resolve_analysis(SETTINGS, spec),
                         step=0, canary_share=share)


def labels(workload: str, **extra: str) -> dict[str, str]:
    return {"destination_workload_namespace": "demo", "destination_workload": workload,
            **extra}


def test_one_query_per_template_and_part_for_any_number_of_rollouts() -> None:
    jobs = [job(f"app{i}") for i in range(30)]
    plan = queryplan.plan(jobs, SETTINGS)
    # success rate, latency buckets, and the request count both templates share
    assert len(plan.queries) == 3
    assert all("app29-canary" in q.text and "app0-stable" in q.text for q in plan.queries)
    assert len(plan.checks) == 60


def test_answers_are_split_back_per_rollout_and_judged() -> None:
    a, b = job("a"), job("b")
    plan = queryplan.plan([a, b], SETTINGS)
    by_metric = {item.check.metric: item for item in plan.checks if item.job is a}
    rate = by_metric["istio-success-rate"]
    hist = by_metric["istio-latency-buckets"]
    assert rate.requests is not None and hist.requests == rate.requests  # asked once
    answers: dict[str, queryplan.Answer] = {
        rate.main.text: [(labels("a-canary"), 95.0), (labels("a-stable"), 99.9),
                         (labels("b-canary"), 99.5), (labels("b-stable"), 99.9)],
        rate.requests.text: [(labels(w), n) for w, n in (("a-canary", 200.0),
                             ("a-stable", 800.0), ("b-canary", 5.0), ("b-stable", 995.0))],
        hist.main.text: "HTTP Status Code 503 (b'timeout')",
    }
    results = queryplan.verdicts(plan, answers, NOW)
    verdict = {(r, c.metric): c.verdict for r, cs in results.items() for c in cs}
    assert verdict[("demo/a", "istio-success-rate")] is Verdict.FAIL
    assert verdict[("demo/b", "istio-success-rate")] is Verdict.INCONCLUSIVE  # 5 requests
    assert verdict[("demo/a", "istio-latency-buckets")] is Verdict.INCONCLUSIVE
    assert "503" in next(c.reason for c in results["demo/a"]
                         if c.metric == "istio-latency-buckets")
    answers[hist.main.text] = [
        (labels(w, le=le), n)
        for w, total, slow in (("a-canary", 200.0, 0.1), ("a-stable", 800.0, 0.01))
        for le, n in (("100", total * (1 - slow)), ("+Inf", total))]
    results = queryplan.verdicts(plan, answers, NOW)
    [latency] = [c for c in results["demo/a"] if c.metric == "istio-latency-buckets"]
    assert latency.verdict is Verdict.FAIL and latency.errors == 20  # slow requests
    a_rate = next(c for c in results["demo/a"] if c.metric == "istio-success-rate")
    assert (a_rate.value, a_rate.stable_value, a_rate.requests) == (95.0, 99.9, 200.0)
