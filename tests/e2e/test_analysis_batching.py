"""Analyses of many rollouts due in one round cost one query per template, not per rollout."""

from __future__ import annotations

from datetime import UTC, datetime

from canaryd.adapters.prometheus import PrometheusClient
from canaryd.config import load_settings
from canaryd.core.model import CheckResult, RolloutSpec, Verdict
from canaryd.core.plan import resolve_analysis
from canaryd.runtime.analysis import Analyzer, Job
from canaryd.sandbox.runner import Sandbox
from canaryd.sandbox.testing import eventually
from tests.e2e.support import CONFIG, rollout_manifest


async def test_three_rollouts_share_each_query(sandbox: Sandbox) -> None:
    settings = load_settings(CONFIG, env={})
    spec = RolloutSpec.model_validate(rollout_manifest()["spec"])
    analysis = resolve_analysis(settings, spec)
    jobs = [
        Job(rollout="demo/a", namespace="demo", stable="podinfo-stable",
            canary="podinfo-stable", analysis=analysis, step=0),
        Job(rollout="demo/b", namespace="demo", stable="shop-green", canary="shop-blue",
            analysis=analysis, step=0),
        Job(rollout="demo/c", namespace="demo", stable="podinfo-stable",
            canary="podinfo-canary", analysis=analysis, step=0),
    ]
    prometheus = PrometheusClient(sandbox.prometheus_url, timeout=3, retries=0)
    analyzer = Analyzer(prometheus=prometheus, settings=settings)

    async def measured() -> dict[str, tuple[CheckResult, ...]] | None:
        results = await analyzer.run(jobs, datetime.now(UTC))
        a, b = results["demo/a"], results["demo/b"]
        ready = all(r.verdict is Verdict.PASS for r in (*a, *b))
        return results if ready else None

    results = await eventually(measured, timeout=30, what="traffic in Prometheus")
    checks = len(analysis.checks)
    assert analyzer.queries_last_round == 2 * checks, "value + request count per template"
    for key in ("demo/a", "demo/b", "demo/c"):
        assert [r.metric for r in results[key]] == [c.metric for c in analysis.checks]
    # The idle canary (weight 0) is told apart from the busy workloads of the same query.
    assert all(r.verdict is Verdict.INCONCLUSIVE for r in results["demo/c"])
    assert "too few requests" in results["demo/c"][0].reason
