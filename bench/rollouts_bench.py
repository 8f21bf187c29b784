"""300 concurrent canary rollouts in the sandbox.

Prints: Prometheus queries per analysis round (from the daemon's counters, cross-checked with
Prometheus' own request counter), daemon CPU seconds per rollout-minute, and peak RSS.
The daemon runs as its own process (`canaryd serve`) so its CPU and memory are its own.

    .venv/bin/python bench/rollouts_bench.py [--rollouts 300] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from kubernetes_asyncio import client, config

from canaryd.sandbox.runner import Sandbox

ROOT = Path(__file__).resolve().parents[1]
NS = "bench"
CLK = os.sysconf("SC_CLK_TCK")


def app_objects(i: int) -> list[tuple[str, dict[str, Any]]]:
    name = f"svc{i:03d}"
    labels = {"app": name}
    def deploy(track: str) -> dict[str, Any]:
        return {
            "metadata": {"name": f"{name}-{track}", "namespace": NS,
                         "annotations": {"sandbox.canaryd.io/error-ratio": "0"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {**labels, "track": track}},
                     "template": {"metadata": {"labels": {**labels, "track": track}},
                                  "spec": {"containers": [{"name": "app", "image": "x"}]}}},
        }
    return [
        ("service", {"metadata": {"name": name, "namespace": NS,
                                  "annotations": {"sandbox.canaryd.io/rps": "20"}},
                     "spec": {"selector": labels, "ports": [{"port": 80}]}}),
        ("deployment", deploy("stable")),
        ("deployment", deploy("canary")),
        ("destinationrule", {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                             "metadata": {"name": name, "namespace": NS},
                             "spec": {"host": name, "subsets": [
                                 {"name": "stable", "labels": {"track": "stable"}},
                                 {"name": "canary", "labels": {"track": "canary"}}]}}),
        ("virtualservice", {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                            "metadata": {"name": name, "namespace": NS},
                            "spec": {"hosts": [name], "http": [{"name": "primary", "route": [
                                {"destination": {"host": name, "subset": "stable"},
                                 "weight": 100},
                                {"destination": {"host": name, "subset": "canary"},
                                 "weight": 0}]}]}}),
    ]


def rollout(i: int, seconds: int) -> dict[str, Any]:
    name = f"svc{i:03d}"
    return {
        "apiVersion": "canaryd.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": f"{name}-v2", "namespace": NS},
        "spec": {
            "target": name, "version": "v2",
            "router": {"istio": {"virtualService": name, "route": "primary",
                                 "stable": {"host": name, "subset": "stable"},
                                 "canary": {"host": name, "subset": "canary"}}},
            "workloads": {"stable": f"{name}-stable", "canary": f"{name}-canary"},
            "plan": {"steps": [{"weight": 10, "pause": f"{seconds}s"}, {"weight": 50}]},
            "analysis": {"profile": "bench"},
        },
    }


async def create_all(api: client.ApiClient, n: int) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    custom = client.CustomObjectsApi(api)
    await core.create_namespace({"metadata": {"name": NS}})
    sem = asyncio.Semaphore(32)

    async def one(kind: str, body: dict[str, Any]) -> None:
        async with sem:
            if kind == "service":
                await core.create_namespaced_service(NS, body)
            elif kind == "deployment":
                await apps.create_namespaced_deployment(NS, body)
            else:
                await custom.create_namespaced_custom_object(
                    "networking.istio.io", "v1", NS, kind + "s", body)

    await asyncio.gather(*(one(k, b) for i in range(n) for k, b in app_objects(i)))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def scrape(url: str, names: tuple[str, ...]) -> dict[str, float]:
    async with aiohttp.ClientSession() as s, s.get(url, timeout=aiohttp.ClientTimeout(10)) as r:
        text = await r.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        for name in names:
            if line.startswith(name):
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


async def main(n: int, seconds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="canaryd-bench-"))
    cfg = yaml.safe_load((ROOT / "config" / "canaryd.yaml").read_text())
    cfg["profiles"]["bench"] = {
        "interval": "5s", "minInterval": "1s", "minRequests": 5,
        "checks": [{"metric": "istio-success-rate", "min": 99},
                   {"metric": "istio-latency-p99", "max": 500, "maxRatioToStable": 2}],
        "limits": {"consecutiveInconclusive": 50},
    }
    (work / "bench.yaml").write_text(yaml.safe_dump(cfg))
    async with Sandbox(example_app=False, workdir=work / "sandbox") as sb:
        api = await config.new_client_from_config(config_file=str(sb.kubeconfig))
        started = time.monotonic()
        await create_all(api, n)
        print(f"created {n} applications ({5 * n} objects) in {time.monotonic() - started:.1f}s")
        log = open(work / "daemon.log", "wb")  # noqa: SIM115
        daemon = subprocess.Popen(
            [sys.executable, "-m", "canaryd", "serve", "--kubeconfig", str(sb.kubeconfig),
             "--config", str(work / "bench.yaml"), "--prometheus-url", sb.prometheus_url,
             "--host", "127.0.0.1", "--port", "0", "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=log,
        )
        assert daemon.stdout is not None
        line = await asyncio.to_thread(daemon.stdout.readline)
        daemon_url = yaml.safe_load(line)["url"]
        custom = client.CustomObjectsApi(api)
        prom_metrics = f"{sb.prometheus_url}/metrics"
        q_name = 'prometheus_http_requests_total{code="200",handler="/api/v1/query"}'
        before = await scrape(prom_metrics, (q_name,))
        cpu0, t0 = cpu_seconds(daemon.pid), time.monotonic()
        sem = asyncio.Semaphore(32)

        async def submit(i: int) -> None:
            async with sem:
                await custom.create_namespaced_custom_object(
                    "canaryd.io", "v1alpha1", NS, "rollouts", rollout(i, seconds))

        await asyncio.gather(*(submit(i) for i in range(n)))
        print(f"submitted {n} rollouts in {time.monotonic() - t0:.1f}s; "
              f"running for {seconds}s of analysis...")
        await asyncio.sleep(seconds)  # the measured period itself, not a wait for a condition
        cpu1, t1 = cpu_seconds(daemon.pid), time.monotonic()
        after = await scrape(prom_metrics, (q_name,))
        mine = await scrape(f"{daemon_url}/metrics", (
            "canaryd_analysis_rounds_total", "canaryd_prometheus_queries_total",
            "canaryd_analysed_rollouts_total", "canaryd_reconcile_seconds_sum",
            "canaryd_reconcile_seconds_count", "canaryd_prometheus_query_seconds_sum",
            "canaryd_prometheus_query_seconds_count", "canaryd_kube_request_seconds_sum",
            "canaryd_kube_request_seconds_count"))
        listed = await custom.list_namespaced_custom_object("canaryd.io", "v1alpha1", NS,
                                                            "rollouts")
        phases: dict[str, int] = {}
        for item in listed["items"]:
            phase = (item.get("status") or {}).get("phase", "none")
            phases[phase] = phases.get(phase, 0) + 1
        rounds = mine.get("canaryd_analysis_rounds_total", 0)
        queries = mine.get("canaryd_prometheus_queries_total", 0)
        analysed = mine.get("canaryd_analysed_rollouts_total", 0)
        server_side = after.get(q_name, 0) - before.get(q_name, 0)
        rollout_minutes = n * (t1 - t0) / 60
        print(f"rollouts by phase: {phases}")
        print(f"analysis rounds: {rounds:.0f}, rollout analyses: {analysed:.0f} "
              f"({analysed / max(rounds, 1):.1f} rollouts per round)")
        print(f"prometheus queries per analysis round: {queries / max(rounds, 1):.2f} "
              f"(daemon count {queries:.0f}; Prometheus served {server_side:.0f} queries)")
        print(f"prometheus queries per rollout analysis: {queries / max(analysed, 1):.3f} "
              f"(uncoalesced would be 4.0: 2 checks x value+requests)")
        print(f"daemon CPU: {cpu1 - cpu0:.1f}s over {rollout_minutes:.0f} rollout-minutes = "
              f"{(cpu1 - cpu0) / rollout_minutes:.3f} CPU s per rollout-minute")
        rounds_all = mine.get("canaryd_reconcile_seconds_count", 0)
        print(f"reconcile rounds: {rounds_all:.0f}, mean duration "
              f"{mine.get('canaryd_reconcile_seconds_sum', 0) / max(rounds_all, 1):.3f}s")
        prom_n = max(mine.get("canaryd_prometheus_query_seconds_count", 0), 1)
        kube_n = max(mine.get("canaryd_kube_request_seconds_count", 0), 1)
        prom_mean = mine.get("canaryd_prometheus_query_seconds_sum", 0) / prom_n
        kube_mean = mine.get("canaryd_kube_request_seconds_sum", 0) / kube_n
        print(f"prometheus query mean {prom_mean:.3f}s; kube call mean {kube_mean:.4f}s "
              f"over {kube_n:.0f} calls (the sandbox API server shares one process with "
              "the mesh and this script)")
        print(f"daemon peak RSS: {peak_rss_mib(daemon.pid):.0f} MiB")
        daemon.terminate()
        daemon.wait(timeout=30)
        log.close()
        await api.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rollouts", type=int, default=300)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    asyncio.run(main(args.rollouts, args.seconds))
