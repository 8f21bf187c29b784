"""Kubernetes API trouble mid-rollout (5xx, 429, dropped watches, 410) loses nothing."""

from __future__ import annotations

import aiohttp

from tests.e2e.conftest import Env
from tests.e2e.support import NS, TERMINAL, eventually, rollout_manifest


async def test_api_faults_are_retried_and_the_rollout_completes(env: Env) -> None:
    server = env.sandbox.api_server
    await env.kube.create_rollout(rollout_manifest())
    await env.kube.wait_phase("podinfo-v2", {"Progressing"}, timeout=30)
    server.faults.fail_next(3, 500, verb="patch", resource="virtualservices")
    server.faults.fail_next(2, 429, verb="get", resource="virtualservices", retry_after=1)
    server.faults.fail_next(2, 503, verb="patch", resource="rollouts")
    server.faults.drop_watches()
    server.compact()
    status = await env.kube.wait_phase("podinfo-v2", TERMINAL, timeout=90)
    assert status["phase"] == "Succeeded", status["reason"]
    assert [h["trigger"] for h in status["history"]] == [
        "CanaryReady", "StepPassed", "AllStepsPassed", "StableUpdated", "TrafficConfirmed",
    ]
    failed = [r for r in server.requests if r.status >= 500 or r.status == 429]
    assert len(failed) >= 5, "the injected faults were hit"
    assert await env.kube.vs_weights() == {"stable": 100, "canary": 0}


async def test_transitions_are_recorded_as_events_and_metrics(env: Env) -> None:
    await env.kube.create_rollout(rollout_manifest())
    await env.kube.wait_phase("podinfo-v2", TERMINAL, timeout=90)

    async def events() -> list[str]:
        listed = await env.kube.core.list_namespaced_event(
            NS, field_selector="involvedObject.name=podinfo-v2")
        return sorted(e.reason for e in listed.items)

    reasons = await eventually(events, timeout=10, what="events on the Rollout")
    assert {"CanaryReady", "StepPassed", "AllStepsPassed", "TrafficConfirmed"} <= set(reasons)
    assert env.daemon is not None and env.daemon.url is not None
    async with aiohttp.ClientSession() as s, s.get(f"{env.daemon.url}/metrics") as resp:
        text = await resp.text()
    assert 'canaryd_rollouts{phase="Succeeded"} 1.0' in text
    assert (
        'canaryd_check_value{dry_run="false",metric="istio-success-rate",namespace="demo",'
        'rollout="podinfo-v2"}'
        in text
    )
    assert ('canaryd_check_outcomes_total{dry_run="false",metric="istio-success-rate",'
            'verdict="Pass"}') in text
    assert "canaryd_prometheus_queries_total" in text
    assert "canaryd_prometheus_query_seconds_count" in text
    assert 'canaryd_kube_request_seconds_count{operation="write"}' in text
    assert 'canaryd_check_threshold{bound="min",dry_run="false",metric="istio-success-rate"' in (
        text)
