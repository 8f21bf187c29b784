"""The Helm chart for real: `helm install` into a real control plane, the Deployment Ready
(its pods are kwok's), then `canaryd serve` beside it as the chart's ServiceAccount (a bound
token from the TokenRequest API) with the chart's rendered ConfigMap, electing itself
through the chart's Lease, runs a canary in the sandbox. A real Prometheus scrapes that
canaryd meanwhile, and every query of the Grafana dashboard (deploy/grafana/canaryd.json)
must parse and return data from it. Then `helm upgrade` to the namespaced RBAC scope, and
the same canaryd runs a blue-green rollout to the end with it."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, config

from canaryd.sandbox.prometheus import PrometheusServer, free_loopback_port
from canaryd.sandbox.realkube import RealKube
from canaryd.sandbox.runner import Sandbox
from canaryd.sandbox.testing import eventually
from tests.deploy.grafana import expressions
from tests.deploy.helm import CHART, RELEASE, helm, helm_binary
from tests.deploy.test_rbac import NAMESPACE
from tests.e2e.support import TERMINAL, Kube, rollout_manifest
from tests.e2e.test_bluegreen import manifest as bluegreen_manifest
from tests.real.test_rbac_real import service_account_kubeconfig
from tests.realkube import running

LEASE = "canaryd-leader"  # the chart's default leaderElection.leaseName


@pytest.fixture(scope="module")
def helm_kube() -> Iterator[RealKube]:
    """A control plane of this module's own: the chart installs cluster-wide objects."""
    helm_binary()  # skip (or fail in CI) before starting anything
    with running(RealKube()) as kube:
        yield kube


@pytest.fixture
async def sandbox(helm_kube: RealKube) -> AsyncIterator[Sandbox]:
    async with Sandbox(rps=200, kube=helm_kube) as sb:
        yield sb


async def _query_range(session: aiohttp.ClientSession, url: str, expr: str, start: float,
                       end: float) -> dict[str, Any]:
    params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "1"}
    async with session.get(f"{url}/api/v1/query_range", params=params) as resp:
        body: dict[str, Any] = await resp.json()
        return body


def _has_values(result: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(v)) for series in result for _, v in series["values"])


async def test_the_chart_installs_and_canaryd_runs_a_canary_with_its_account_and_config(
    sandbox: Sandbox, helm_kube: RealKube, tmp_path: Path
) -> None:
    assert sandbox.kubeconfig is not None
    kubeconfig = str(sandbox.kubeconfig)
    t0 = time.monotonic()
    installed = await asyncio.to_thread(
        helm, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace",
        "--kubeconfig", kubeconfig, "--wait", "--timeout", "3m", timeout=240)
    install_seconds = time.monotonic() - t0
    assert "STATUS: deployed" in installed.stdout, installed.stdout

    api = await config.new_client_from_config(config_file=kubeconfig)
    procs: list[subprocess.Popen[bytes]] = []
    prometheus: PrometheusServer | None = None
    log_path = tmp_path / "canaryd.log"
    try:
        kube = Kube(api)
        deployment = await client.AppsV1Api(api).read_namespaced_deployment(RELEASE, NAMESPACE)
        assert deployment.status.ready_replicas == 2, deployment.status
        assert {c.type: c.status for c in deployment.status.conditions}["Available"] == "True"
        pods = await client.CoreV1Api(api).list_namespaced_pod(
            NAMESPACE, label_selector=f"app.kubernetes.io/instance={RELEASE}")
        assert len(pods.items) == 2
        assert {p.spec.service_account_name for p in pods.items} == {RELEASE}

        # The chart's ConfigMap, as the cluster holds it, is canaryd's config file.
        cm = await client.CoreV1Api(api).read_namespaced_config_map(f"{RELEASE}-config",
                                                                    NAMESPACE)
        config_file = tmp_path / "canaryd.yaml"
        config_file.write_text(cm.data["canaryd.yaml"])
        sa_kubeconfig = await service_account_kubeconfig(api, helm_kube,
                                                         tmp_path / "sa-kubeconfig")
        port = free_loopback_port()
        with log_path.open("wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "canaryd", "serve", "--kubeconfig", str(sa_kubeconfig),
                 "--config", str(config_file), "--prometheus-url", sandbox.prometheus_url,
                 "--host", "127.0.0.1", "--port", str(port), "--identity", "helm-real",
                 "--lease-namespace", NAMESPACE, "--lease-name", LEASE],
                stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "CANARYD_LOG_LEVEL": "info"}))
        prometheus = PrometheusServer([f"127.0.0.1:{port}"], workdir=tmp_path)
        await prometheus.start()

        async def leading() -> bool:
            lease = await client.CoordinationV1Api(api).read_namespaced_lease(LEASE, NAMESPACE)
            return lease.spec.holder_identity == "helm-real"

        await eventually(leading, timeout=60, what="canaryd holding the chart's Lease",
                         tolerate=(client.ApiException,))
        start = time.time()
        await kube.create_rollout(rollout_manifest("podinfo-v2"))
        status = await kube.wait_phase("podinfo-v2", TERMINAL, timeout=180)
        assert status["phase"] == "Succeeded", status["reason"]
        canary_seconds = time.time() - start

        # The dashboard, every query, over the canary's time: each parses and has data.
        values = {"namespace": "demo", "rollout": ".*", "__rate_interval": "15s",
                  "__range": f"{int(time.time() - start) + 60}s"}
        queries = expressions(values)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            async def finished_scraped() -> bool:
                body = await _query_range(session, prometheus.url,
                                          "canaryd_rollout_duration_seconds_count > 0",
                                          start, time.time())
                return bool(body.get("data", {}).get("result"))

            await eventually(finished_scraped, timeout=30, what="the finished rollout scraped")
            end = time.time()
            answers = {expr: await _query_range(session, prometheus.url, expr, start - 5, end)
                       for _, expr in queries}
        refused = [(t, e, answers[e].get("error")) for t, e in queries
                   if answers[e].get("status") != "success"]
        assert not refused, f"queries Prometheus refused: {refused}"
        empty = [(t, e) for t, e in queries if not _has_values(answers[e]["data"]["result"])]
        assert not empty, f"queries without data: {empty}"

        # The namespaced scope, for real: upgraded in place (the ClusterRole goes, a Role in
        # demo and the cluster-wide list/watch of Rollouts come), the same canaryd drives a
        # blue-green rollout to the end with it.
        upgraded = await asyncio.to_thread(
            helm, "upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kubeconfig",
            kubeconfig, "--set", "rbac.scope=namespaces", "--set", "rbac.namespaces={demo}",
            "--wait", "--timeout", "3m", timeout=240)
        assert "STATUS: deployed" in upgraded.stdout, upgraded.stdout
        rbac = client.RbacAuthorizationV1Api(api)
        names = {r.metadata.name for r in (await rbac.list_cluster_role()).items}
        assert RELEASE not in names and f"{RELEASE}-rollout-cache" in names
        await rbac.read_namespaced_role(RELEASE, "demo")
        await kube.create_rollout(bluegreen_manifest(scaleDown=True))
        status = await kube.wait_phase("shop-v2", TERMINAL, timeout=180)
        assert status["phase"] == "Succeeded", status["reason"]
        print(json.dumps({"helm_install_seconds": round(install_seconds, 1),
                          "canary_seconds": round(canary_seconds, 1),
                          "dashboard_queries": len(queries)}))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if prometheus is not None:
            await prometheus.stop()
        await api.close()
        if os.environ.get("CANARYD_HELM_REAL_LOG"):
            print(log_path.read_text()[-5000:])
