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
    # a value query per template, and one request count the templates share
    assert analyzer.queries_last_round == checks + 1
    for key in ("demo/a", "demo/b", "demo/c"):
        assert [r.metric for r in results[key]] == [c.metric for c in analysis.checks]
    # The idle canary (weight 0) is told apart from the busy workloads of the same query.
    assert all(r.verdict is Verdict.INCONCLUSIVE for r in results["demo/c"])
    assert "too few requests" in results["demo/c"][0].reason


async def test_custom_template_with_a_parameter_against_real_prometheus(
    sandbox: Sandbox,
) -> None:
    from canaryd.core.settings import parse_settings

    settings = parse_settings({
        "metrics": {"error-rps": {
            "description": "5xx per second for a workload (custom, not groupable)",
            "query": 'sum(rate(istio_requests_total{reporter="destination", '
                     'destination_workload_namespace="{{ namespace }}", '
                     'destination_workload="{{ workload }}", response_code=~"{{ codes }}"}'
                     "[{{ interval }}]))",
            "params": {"codes": {"pattern": r"^[0-9.|]{1,20}$", "default": "5.."}},
        }},
        "profiles": {"p": {"interval": "3s", "minInterval": "1s", "minRequests": 0, "checks": [
            {"metric": "error-rps", "max": 1, "params": {"codes": "5.."}}]}},
    })
    spec = RolloutSpec.model_validate(rollout_manifest(analysis={"profile": "p"})["spec"])
    analysis = resolve_analysis(settings, spec)
    api_server = sandbox.api_server
    assert api_server is not None
    # The stable podinfo serves all of the example's traffic: make 20% of it fail.
    from kubernetes_asyncio import client, config

    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    try:
        await client.AppsV1Api(api).patch_namespaced_deployment(
            "podinfo-stable", "demo",
            {"metadata": {"annotations": {"sandbox.canaryd.io/error-ratio": "0.2"}}})
    finally:
        await api.close()
    analyzer = Analyzer(prometheus=PrometheusClient(sandbox.prometheus_url, timeout=3, retries=0),
                        settings=settings)
    job = Job(rollout="demo/x", namespace="demo", stable="podinfo-canary",
              canary="podinfo-stable", analysis=analysis, step=0)

    async def failing() -> CheckResult | None:
        [result] = (await analyzer.run([job], datetime.now(UTC)))["demo/x"]
        return result if result.verdict is Verdict.FAIL else None

    result = await eventually(failing, timeout=30, what="5xx rate above 1/s")
    assert 'response_code=~"5.."' in result.query and "[3s]" in result.query
    assert result.value is not None and 20 < result.value < 80  # ~20% of ~200 rps
    assert analyzer.queries_last_round == 1
