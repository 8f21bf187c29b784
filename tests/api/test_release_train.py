"""A release train, as a pipeline runs it: one Rollout file, `canaryd submit --set
spec.version=IMAGE --wait` (a process) against `canaryd serve` (a process) for each release,
in a full sandbox with real Prometheus, on the emulator and on the real control plane.

6.8.0 is promoted (stable runs it with 100% of traffic, the canary at zero replicas), 6.9.0
misbehaves (5% errors) and is rolled back (stable still 6.8.0), 6.9.1 is promoted. Through
Prometheus, per version (the mesh labels requests with the pod's image tag): until its
verdict, the version under test never took more than the share of the step it was at, and
after each release the version that left takes nothing. Then a router someone left split
makes the fourth release fail before touching anything, saying what it found."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from kubernetes_asyncio import client, config

from canaryd.sandbox.runner import Sandbox
from tests.api.support import EXAMPLE
from tests.api.test_e2e_submit import sandbox, serve, submit_wait
from tests.e2e.support import eventually

pytestmark = pytest.mark.prometheus
KUBE_BACKENDS = ("emulator", "real")
__all__ = ["sandbox", "serve"]
NS = "demo"
IMAGE = "ghcr.io/stefanprodan/podinfo"
FIRST = "6.7.1"  # what the example app's stable runs
STEPS = [20, 50]
# The mesh's requests are random: a 5 s window at 200 rps (1,000 requests) reads a share
# within 1.6 percentage points (one standard deviation at 50%); 8 points is five of them.
TOLERANCE = 0.08
BY_VERSION = ('sum by (destination_version) (rate(istio_requests_total{reporter="destination",'
              f'destination_service_name="podinfo",destination_workload_namespace="{NS}"}}[5s]))')


def release_file(tmp_path: Path) -> Path:
    body = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"] = {"generateName": "podinfo-", "namespace": NS}
    body["spec"]["plan"] = {"steps": [{"weight": w} for w in STEPS]}
    body["spec"]["analysis"] = {"profile": "sandbox", "interval": "3s"}
    path = tmp_path / "rollout.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


async def shares_over(prometheus_url: str, start: float, end: float
                      ) -> list[tuple[float, dict[str, float]]]:
    """(time, {version: share of requests}) every second between start and end."""
    params = {"query": BY_VERSION, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "1"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(f"{prometheus_url}/api/v1/query_range", params=params) as resp,
    ):
        body = await resp.json()
    rates: dict[float, dict[str, float]] = {}
    for series in body["data"]["result"]:
        version = series["metric"].get("destination_version", "")
        for at, value in series["values"]:
            rates.setdefault(float(at), {})[version] = float(value)
    out = []
    for at, by in sorted(rates.items()):
        total = sum(by.values())
        if total > 0:
            out.append((at, {v: r / total for v, r in by.items()}))
    assert out, f"no samples between {start} and {end}"
    return out


async def shares_now(prometheus_url: str) -> dict[str, float]:
    now = time.time()
    return (await shares_over(prometheus_url, now - 1, now))[-1][1]


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def allowed_share(history: list[dict[str, Any]], at: float) -> float:
    """The canary weight canaryd had recorded at `at` (status is written before the router,
    and weights only grow until the verdict): the most the version under test may take."""
    weight = 0
    for entry in history:
        if _ts(entry["time"]) > at:
            break
        weight = entry["weights"]["canary"] if entry.get("weights") else weight
        if entry["phase"] in ("Promoting", "RollingBack"):
            break
    return weight / 100


class Cluster:
    def __init__(self, api: client.ApiClient) -> None:
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    async def images(self, name: str) -> list[str]:
        d = await self.apps.read_namespaced_deployment(name, NS)
        return [c.image for c in d.spec.template.spec.containers]

    async def replicas(self, name: str) -> int:
        return int((await self.apps.read_namespaced_deployment(name, NS)).spec.replicas)

    async def weights(self) -> list[int]:
        vs = await self.custom.get_namespaced_custom_object(
            "networking.istio.io", "v1", NS, "virtualservices", "podinfo")
        return [d["weight"] for d in vs["spec"]["http"][0]["route"]]

    async def latest(self) -> dict[str, Any]:
        items = (await self.custom.list_namespaced_custom_object(
            "canaryd.io", "v1alpha1", NS, "rollouts"))["items"]
        return max(items, key=lambda r: (r["metadata"]["creationTimestamp"],
                                         r["status"].get("sequence", 0)))

    async def errors(self, ratio: str) -> None:
        """How the next release behaves: the sandbox reads it from the canary Deployment."""
        await self.apps.patch_namespaced_deployment(
            "podinfo-canary", NS,
            {"metadata": {"annotations": {"sandbox.canaryd.io/error-ratio": ratio}}})


async def test_release_after_release_with_one_file(
    sandbox: Sandbox, serve: str, tmp_path: Path,
) -> None:
    path = release_file(tmp_path)
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    k = Cluster(api)
    prom = sandbox.prometheus_url
    try:
        assert await k.weights() == [100, 0]
        serving = FIRST
        assert await k.images("podinfo-stable") == [f"{IMAGE}:{serving}"]
        for version, healthy in (("6.8.0", True), ("6.9.0", False), ("6.9.1", True)):
            await k.errors("0" if healthy else "0.05")
            began = time.time()
            code, out, err = await submit_wait(serve, path, "--set",
                                               f"spec.version={IMAGE}:{version}")
            assert code == (0 if healthy else 1), out + err
            rollout = await k.latest()
            status = rollout["status"]
            assert rollout["spec"]["version"] == f"{IMAGE}:{version}"
            assert status["phase"] == ("Succeeded" if healthy else "RolledBack"), status["reason"]
            triggers = [h["trigger"] for h in status["history"]]
            if healthy:
                assert triggers[-2:] == ["StableUpdated", "TrafficConfirmed"], triggers
            assert "StableUpdated" not in triggers or healthy
            release = status["release"]
            assert release["from"]["images"] == {"podinfo": f"{IMAGE}:{serving}"}
            assert release["to"]["images"] == {"podinfo": f"{IMAGE}:{version}"}
            leaving, serving = (serving, version) if healthy else (version, serving)
            # The steady state, whatever the verdict: stable runs the last promoted version
            # with all the traffic, the canary is at zero replicas.
            assert await k.images("podinfo-stable") == [f"{IMAGE}:{serving}"]
            assert await k.weights() == [100, 0]
            assert await k.replicas("podinfo-canary") == 0
            # Until its verdict, the version under test never had more than its step's share.
            history = status["history"]
            verdict_at = next(_ts(h["time"]) for h in history
                              if h["phase"] in ("Promoting", "RollingBack"))
            peaks: dict[int, float] = {}
            for at, shares in await shares_over(prom, began, verdict_at):
                share, limit = shares.get(version, 0.0), allowed_share(history, at)
                assert share <= limit + TOLERANCE, (version, at, share, limit)
                peaks[round(limit * 100)] = max(peaks.get(round(limit * 100), 0.0), share)
            print(f"release {version}: {status['phase']}, peak share by recorded weight "
                  f"{ {w: round(p, 3) for w, p in sorted(peaks.items())} }, "
                  f"{time.time() - began:.1f}s")
            # Healthy: every step ran at its own weight. Faulty: caught before the last one.
            assert (max(peaks) == STEPS[-1]) is healthy, peaks

            async def left(gone: str = leaving, kept: str = serving) -> bool:
                shares = await shares_now(prom)
                return shares.get(gone, 0.0) == 0.0 and shares.get(kept, 0.0) > 0.99

            await eventually(left, timeout=20, what=f"{leaving} taking no traffic, {serving} "
                             "all of it")

        # Someone splits the traffic by hand: the next release refuses to start, untouched.
        vs = await k.custom.get_namespaced_custom_object(
            "networking.istio.io", "v1", NS, "virtualservices", "podinfo")
        vs["spec"]["http"][0]["route"][0]["weight"] = 70
        vs["spec"]["http"][0]["route"][1]["weight"] = 30
        await k.custom.replace_namespaced_custom_object(
            "networking.istio.io", "v1", NS, "virtualservices", "podinfo", vs)
        code, out, err = await submit_wait(serve, path, "--set", f"spec.version={IMAGE}:7.0.0")
        assert code == 1, out + err
        status = (await k.latest())["status"]
        assert status["phase"] == "Failed"
        assert "70% to stable and 30% to the canary" in status["reason"]
        assert "no other rollout of this target is active" in status["reason"]
        assert "Nothing was touched: put all traffic back on stable" in status["reason"]
        assert await k.weights() == [70, 30]
        assert await k.images("podinfo-stable") == [f"{IMAGE}:{serving}"]
        assert await k.replicas("podinfo-canary") == 0
        assert await k.images("podinfo-canary") == [f"{IMAGE}:6.9.1"]
    finally:
        await api.close()
