"""Scale on the real control plane: canaryd, the mesh and Prometheus each in their own process.

    python bench/scale.py --rollouts 100 --interval 10s [--seconds 60]
    python bench/scale.py --finished 50000 --rollouts 100

Starts etcd, kube-apiserver, controller-manager, scheduler and kwok (`RealKube`), installs
the CRDs, creates one application per rollout (Service, stable and canary Deployments with a
Pod each, DestinationRule, VirtualService), runs the simulated mesh (`python -m
canaryd.sandbox.mesh`), a real Prometheus scraping it, and `canaryd serve`. This script only
creates objects and reads counters: canaryd's /metrics, kube-apiserver's /metrics,
Prometheus' own /metrics and /proc of the canaryd process.

With `--finished N`, N finished Rollouts (status copied from a rollout that really rolled
back in a first run) are written before canaryd is started again, and the start-up to a
synced cache, the memory and the list latency are measured with them in the cache.

Printed per run: rollouts in flight and finished objects in the cache; the analysis
interval; Prometheus queries per analysis round (canaryd's count and Prometheus' own);
canaryd CPU (share of one core) and peak RSS; reconcile-round duration p50/p99; breach
(a canary made faulty mid-run) to traffic verified back on stable, p50/p99; API server
requests per rollout per minute by verb (rollouts only, then all resources); status bytes
written per rollout per minute; HTTP API GET p99 under the load; start-up to a synced cache.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yaml
from kubernetes_asyncio import client, config

from canaryd.sandbox.prometheus import PrometheusServer
from canaryd.sandbox.realkube import RealKube
from canaryd.sandbox.realkube import crds as real_crds
from canaryd.sandbox.runner import crd_paths, install_crds

ROOT = Path(__file__).resolve().parents[1]
NS, OLD_NS = "scale", "history"
CLK = os.sysconf("SC_CLK_TCK")
TOKEN = "scale-bench-admin-token-0123456789"  # noqa: S105 (a throwaway local token)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GROUP, VERSION = "canaryd.io", "v1alpha1"
ERROR_ANNOTATION = "sandbox.canaryd.io/error-ratio"


# ------------------------------------------------------------------------------ objects


def app_objects(i: int) -> list[tuple[str, dict[str, Any]]]:
    name = f"svc{i:04d}"
    labels = {"app": name}

    def deploy(track: str) -> dict[str, Any]:
        return {
            "metadata": {"name": f"{name}-{track}", "namespace": NS,
                         "annotations": {ERROR_ANNOTATION: "0"}},
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
        ("destinationrules", {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                              "metadata": {"name": name, "namespace": NS},
                              "spec": {"host": name, "subsets": [
                                  {"name": "stable", "labels": {"track": "stable"}},
                                  {"name": "canary", "labels": {"track": "canary"}}]}}),
        ("virtualservices", {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                             "metadata": {"name": name, "namespace": NS},
                             "spec": {"hosts": [name], "http": [{"name": "primary", "route": [
                                 {"destination": {"host": name, "subset": "stable"},
                                  "weight": 100},
                                 {"destination": {"host": name, "subset": "canary"},
                                  "weight": 0}]}]}}),
    ]


def rollout(name: str, target: str, namespace: str, hold: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Rollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "target": target, "version": "v2",
            "router": {"istio": {"virtualService": target, "route": "primary",
                                 "stable": {"host": target, "subset": "stable"},
                                 "canary": {"host": target, "subset": "canary"}}},
            "workloads": {"stable": f"{target}-stable", "canary": f"{target}-canary"},
            # One long step: every rollout stays in flight for the whole measured window.
            "plan": {"steps": [{"weight": 10, "pause": hold}, {"weight": 50}]},
            "analysis": {"profile": "scale"},
        },
    }


def bench_config(interval: str) -> dict[str, Any]:
    cfg: dict[str, Any] = yaml.safe_load((ROOT / "config" / "canaryd.yaml").read_text())
    cfg["profiles"]["scale"] = {
        "interval": interval, "minInterval": "1s", "minRequests": 5,
        "checks": [{"metric": "istio-success-rate", "min": 99},
                   {"metric": "istio-latency-p99", "max": 500, "maxRatioToStable": 2}],
        "limits": {"failures": 1, "consecutiveFailures": 1, "consecutiveInconclusive": 1000},
    }
    return cfg


# ------------------------------------------------------------------------------ reading


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            continue
        labels = dict(_LABEL.findall(m.group(3) or ""))
        try:
            out.append((m.group(1), labels, float(m.group(4))))
        except ValueError:
            continue
    return out


def total(samples: list[tuple[str, dict[str, str], float]], name: str, **match: str) -> float:
    return sum(v for n, labels, v in samples
               if n == name and all(labels.get(k) == want for k, want in match.items()))


def by(samples: list[tuple[str, dict[str, str], float]], name: str, key: tuple[str, ...],
       **match: str) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = {}
    for n, labels, v in samples:
        if n == name and all(labels.get(k) == want for k, want in match.items()):
            k = tuple(labels.get(x, "") for x in key)
            out[k] = out.get(k, 0.0) + v
    return out


def histogram_quantile(q: float, before: dict[tuple[str, ...], float],
                       after: dict[tuple[str, ...], float]) -> float:
    """The q-quantile of a histogram's observations between two scrapes (bucket upper bound,
    linear inside the bucket, as PromQL's histogram_quantile)."""
    buckets = sorted(((float(le[0]), after[le] - before.get(le, 0.0)) for le in after),
                     key=lambda b: b[0])
    count = buckets[-1][1] if buckets else 0.0
    if count <= 0:
        return float("nan")
    rank, lower, below = q * count, 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Scraper:
    def __init__(self, kube: RealKube) -> None:
        self.kube = kube
        self.ssl = ssl.create_default_context(cafile=str(kube.ca_file))
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def text(self, url: str, kube: bool = False) -> str:
        headers = {"Authorization": f"Bearer {self.kube.admin_token}"} if kube else AUTH
        async with self.session.get(url, headers=headers,
                                    ssl=self.ssl if kube else None) as resp:
            resp.raise_for_status()
            return await resp.text()

    async def metrics(self, url: str, kube: bool = False) -> list[tuple[str, dict[str, str],
                                                                          float]]:
        return parse_metrics(await self.text(url, kube))

    async def close(self) -> None:
        await self.session.close()


# ------------------------------------------------------------------------------ the run


class Daemon:
    """`canaryd serve` as its own process."""

    def __init__(self, work: Path, kubeconfig: Path, prometheus_url: str) -> None:
        self.work, self.kubeconfig, self.prometheus_url = work, kubeconfig, prometheus_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.runs = 0

    async def start(self, scraper: Scraper) -> float:
        """Start it; the seconds until its /readyz says the rollout cache is synced."""
        self.runs += 1
        log = (self.work / f"canaryd-{self.runs}.log").open("wb")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "canaryd", "serve", "--kubeconfig", str(self.kubeconfig),
             "--config", str(self.work / "canaryd.yaml"), "--prometheus-url",
             self.prometheus_url, "--host", "127.0.0.1", "--port", "0",
             "--tokens-file", str(self.work / "tokens.yaml"), "--log-level", "warning",
             "--identity", f"scale-{self.runs}"],
            stdout=subprocess.PIPE, stderr=log, env=env,
        )
        log.close()
        assert self.proc.stdout is not None
        line = await asyncio.to_thread(self.proc.stdout.readline)
        if not line:
            raise RuntimeError(f"canaryd exited: see {self.work}/canaryd-{self.runs}.log")
        self.url = json.loads(line)["url"]
        deadline = time.monotonic() + 600
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with scraper.session.get(f"{self.url}/readyz") as resp:
                    body = await resp.text()
                    if "not synced" not in body and resp.status in (200, 503):
                        # 503 may still mean Prometheus or a leader: only the cache counts.
                        return time.monotonic() - t0
            if time.monotonic() > deadline:
                raise RuntimeError("canaryd's cache did not sync in 600 s")
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


async def gather_bounded(n: int, coros: list[Any]) -> list[Any]:
    sem = asyncio.Semaphore(n)

    async def one(c: Any) -> Any:
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


async def create_apps(api: client.ApiClient, n: int) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    custom = client.CustomObjectsApi(api)

    async def one(kind: str, body: dict[str, Any]) -> None:
        if kind == "service":
            await core.create_namespaced_service(NS, body)
        elif kind == "deployment":
            await apps.create_namespaced_deployment(NS, body)
        else:
            await custom.create_namespaced_custom_object("networking.istio.io", "v1", NS,
                                                         kind, body)

    await gather_bounded(32, [one(k, b) for i in range(n) for k, b in app_objects(i)])


async def phases(custom: client.CustomObjectsApi, namespace: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    token = None
    while True:
        listed = await custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, "rollouts", limit=100, _continue=token)
        for item in listed["items"]:
            phase = (item.get("status") or {}).get("phase", "none")
            counts[phase] = counts.get(phase, 0) + 1
        token = listed["metadata"].get("continue")
        if not token:
            return counts


async def phases_or_why(custom: client.CustomObjectsApi, namespace: str) -> dict[str, Any]:
    """The phase counts, or why the API server could not list them (at 1,000 in flight on
    2 cores its watch cache lagged: 504 "Too large resource version")."""
    for attempt in range(5):
        try:
            return dict(await phases(custom, namespace))
        except Exception as exc:
            why = f"{type(exc).__name__} {getattr(exc, 'status', '')}".strip()
            await asyncio.sleep(1.0 + attempt)
    return {"unavailable": why}


async def api_latency(scraper: Scraper, url: str, names: list[str], seconds: float
                      ) -> dict[str, float]:
    """Bounded GETs of the HTTP API for `seconds` (one at a time, ~20/s): p50/p99 in ms."""
    lists: list[float] = []
    gets: list[float] = []
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline and i < 5000:
        i += 1
        path = ("/api/v1/rollouts?limit=100" if i % 2 else
                f"/api/v1/rollouts/{names[i % len(names)]}")
        t0 = time.monotonic()
        async with scraper.session.get(url + path, headers=AUTH) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET {path}: {resp.status}")
        (lists if i % 2 else gets).append((time.monotonic() - t0) * 1000)
        await asyncio.sleep(0.05)
    return {"list_p50": pct(lists, 0.5), "list_p99": pct(lists, 0.99),
            "get_p50": pct(gets, 0.5), "get_p99": pct(gets, 0.99), "requests": i}


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def breach_times(custom: client.CustomObjectsApi, names: list[str], at: float,
                       timeout: float) -> list[float]:
    """Seconds from `at` (the canaries made faulty) to each rollout's RolledBack (recorded
    once traffic is verified back on stable), waiting up to `timeout`."""
    out: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(out) < len(names) and time.monotonic() < deadline:
        for name in [x for x in names if x not in out]:
            try:
                item = await custom.get_namespaced_custom_object(GROUP, VERSION, NS,
                                                                 "rollouts", name)
            except Exception as exc:  # a loaded API server: try again on the next pass
                print(f"  (reading {name}: {type(exc).__name__}; again)")
                continue
            for h in (item.get("status") or {}).get("history") or []:
                if h.get("phase") == "RolledBack":
                    out[name] = parse_time(h["time"]) - at
        await asyncio.sleep(1.0)
    return list(out.values())


async def make_finished(api: client.ApiClient, n: int, status: dict[str, Any]) -> float:
    """N finished Rollouts in their own namespace, each with `status`; seconds taken."""
    custom = client.CustomObjectsApi(api)
    t0 = time.monotonic()

    async def one(i: int) -> None:
        name = f"old{i:06d}"
        created = await custom.create_namespaced_custom_object(
            GROUP, VERSION, OLD_NS, "rollouts", rollout(name, f"t{i % 5000:04d}", OLD_NS, "1h"))
        body = {"status": status}
        await custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, OLD_NS, "rollouts", created["metadata"]["name"], body,
            _content_type="application/merge-patch+json")

    await gather_bounded(48, [one(i) for i in range(n)])
    return time.monotonic() - t0


def seconds_of(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]]


async def measure(args: argparse.Namespace, kube: RealKube, api: client.ApiClient,
                  scraper: Scraper, daemon: Daemon, prom_url: str, names: list[str],
                  breach: list[str], finished: int, startup: float) -> dict[str, Any]:
    custom, apps = client.CustomObjectsApi(api), client.AppsV1Api(api)
    n = len(names)
    interval = seconds_of(args.interval)
    assert daemon.proc is not None
    pid = daemon.proc.pid
    q_names = ("/api/v1/query", "/api/v1/query_range")
    kube_before = await scraper.metrics(f"{kube.url}/metrics", kube=True)
    prom_before = await scraper.metrics(f"{prom_url}/metrics")
    mine_before = await scraper.metrics(f"{daemon.url}/metrics")
    cpu0, t0 = cpu_seconds(pid), time.monotonic()

    async def faulty_midway() -> float:
        await asyncio.sleep(args.seconds / 3)  # the measured window's own schedule
        at = time.time()

        async def one(name: str) -> None:
            target = name.removesuffix("-v2")
            await apps.patch_namespaced_deployment(
                f"{target}-canary", NS, {"metadata": {"annotations": {ERROR_ANNOTATION: "0.5"}}})

        await gather_bounded(16, [one(b) for b in breach])
        return at

    breach_task = asyncio.create_task(faulty_midway())
    latency = await api_latency(scraper, daemon.url, [f"{NS}/{x}" for x in names],
                                args.seconds)
    at = await breach_task
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    kube_after = await scraper.metrics(f"{kube.url}/metrics", kube=True)
    prom_after = await scraper.metrics(f"{prom_url}/metrics")
    mine_after = await scraper.metrics(f"{daemon.url}/metrics")
    times = await breach_times(custom, breach, at, timeout=max(60.0, 6 * interval))
    minutes = (t1 - t0) / 60

    def delta(name: str, **match: str) -> float:
        return total(mine_after, name, **match) - total(mine_before, name, **match)

    rounds = delta("canaryd_analysis_rounds_total")
    queries = delta("canaryd_prometheus_queries_total")
    served = sum(total(prom_after, "prometheus_http_requests_total", handler=h)
                 - total(prom_before, "prometheus_http_requests_total", handler=h)
                 for h in q_names)
    rec_b = by(mine_before, "canaryd_reconcile_seconds_bucket", ("le",))
    rec_a = by(mine_after, "canaryd_reconcile_seconds_bucket", ("le",))
    key = ("verb", "resource", "subresource")
    req_b = by(kube_before, "apiserver_request_total", key)
    req_a = by(kube_after, "apiserver_request_total", key)
    rollout_verbs = {f"{k[0]}{'/' + k[2] if k[2] else ''}": v - req_b.get(k, 0.0)
                     for k, v in req_a.items() if k[1] == "rollouts"}
    all_verbs: dict[str, float] = {}
    for k, v in req_a.items():
        all_verbs[k[0]] = all_verbs.get(k[0], 0.0) + v - req_b.get(k, 0.0)
    # Request body sizes have no subresource label; canaryd is the only client that patches
    # Rollouts here (the harness creates them), and it patches status, annotations aside.
    body_b = by(kube_before, "apiserver_request_body_size_bytes_sum", ("verb", "resource"))
    body_a = by(kube_after, "apiserver_request_body_size_bytes_sum", ("verb", "resource"))
    status_bytes = sum(v - body_b.get(k, 0.0) for k, v in body_a.items()
                       if k[1] == "rollouts" and k[0].lower() in ("patch", "update"))
    per = n * minutes
    return {
        "in_flight": n, "finished_in_cache": finished, "interval": args.interval,
        "window_s": round(t1 - t0, 1),
        "phases": await phases_or_why(custom, NS),
        "analysis_rounds": rounds,
        "queries_per_round_canaryd": queries / rounds if rounds else float("nan"),
        "queries_per_round_prometheus": served / rounds if rounds else float("nan"),
        "cpu_share_of_one_core": (cpu1 - cpu0) / (t1 - t0),
        "peak_rss_mib": peak_rss_mib(pid),
        "reconcile_p50_s": histogram_quantile(0.5, rec_b, rec_a),
        "reconcile_p99_s": histogram_quantile(0.99, rec_b, rec_a),
        "reconcile_rounds": delta("canaryd_reconcile_seconds_count"),
        "breached": len(breach), "rolled_back": len(times),
        "breach_to_stable_p50_s": pct(times, 0.5), "breach_to_stable_p99_s": pct(times, 0.99),
        "rollout_requests_per_rollout_minute": {v: c / per for v, c in
                                                sorted(rollout_verbs.items()) if c},
        "all_requests_per_rollout_minute": {v: c / per for v, c in sorted(all_verbs.items())
                                            if c},
        "status_bytes_per_rollout_minute": status_bytes / per,
        "status_writes_per_analysis": (rollout_verbs.get("PATCH/status", 0.0)
                                       / max(delta("canaryd_analysed_rollouts_total"), 1)),
        "api_ms": latency,
        "startup_to_synced_s": startup,
    }


def show(result: dict[str, Any]) -> None:
    def f(x: Any) -> str:
        if isinstance(x, float):
            return f"{x:.3g}"
        if isinstance(x, dict):
            return "{" + ", ".join(f"{k}: {f(v)}" for k, v in x.items()) + "}"
        return str(x)

    for k, v in result.items():
        print(f"  {k}: {f(v)}")
    sys.stdout.flush()


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="scale-", dir=args.workdir))
    (work / "canaryd.yaml").write_text(yaml.safe_dump(bench_config(args.interval)))
    (work / "tokens.yaml").write_text(yaml.safe_dump(
        [{"name": "bench", "role": "admin", "token": TOKEN}]))
    n = args.rollouts
    t = time.monotonic()
    async with RealKube(nodes=3) as kube:
        print(f"control plane ready in {kube.timings.total:.1f}s ({kube.url})")
        api = await config.new_client_from_config(config_file=str(kube.kubeconfig))
        scraper = Scraper(kube)
        mesh: subprocess.Popen[bytes] | None = None
        daemon = None
        try:
            await install_crds(api, real_crds.sandbox_crd_paths(crd_paths()), timeout=90)
            core = client.CoreV1Api(api)
            for ns in (NS, OLD_NS):
                await core.create_namespace({"metadata": {"name": ns}})
            await real_crds.wait_default_service_account(api, NS)
            t = time.monotonic()
            await create_apps(api, n)
            await real_crds.wait_deployments_available(api, NS, timeout=900)
            print(f"{n} applications ({5 * n} objects, {2 * n} Pods available) in "
                  f"{time.monotonic() - t:.1f}s")
            mesh_log = (work / "mesh.log").open("wb")
            mesh = subprocess.Popen(
                [sys.executable, "-m", "canaryd.sandbox.mesh", "--kubeconfig",
                 str(kube.kubeconfig), "--port", "0", "--tick", "0.5", "--sync-timeout", "300"],
                stdout=subprocess.PIPE, stderr=mesh_log, env={**os.environ,
                                                               "PYTHONPATH": str(ROOT)})
            mesh_log.close()
            assert mesh.stdout is not None
            mesh_url = json.loads(await asyncio.to_thread(mesh.stdout.readline))["metrics_url"]
            metrics = urlsplit(mesh_url)
            async with PrometheusServer([metrics.netloc], metrics_path=metrics.path,
                                        scrape_interval=args.scrape, evaluation_interval="5s",
                                        workdir=work) as prom:
                daemon = Daemon(work, kube.kubeconfig, prom.url)
                startup = await daemon.start(scraper)
                custom = client.CustomObjectsApi(api)
                hold = f"{int(args.seconds * 4 + 600)}s"
                names = [f"svc{i:04d}-v2" for i in range(n)]
                t = time.monotonic()
                await gather_bounded(32, [custom.create_namespaced_custom_object(
                    GROUP, VERSION, NS, "rollouts", rollout(x, x.removesuffix("-v2"), NS, hold))
                    for x in names])
                print(f"submitted {n} rollouts in {time.monotonic() - t:.1f}s; warming up "
                      f"{args.warmup}s")
                await asyncio.sleep(args.warmup)  # the schedule of the run, not a wait
                step = max(1, n // args.breach)
                breach = names[::step][: args.breach]
                result = await measure(args, kube, api, scraper, daemon, prom.url, names,
                                       breach, 0, startup)
                print(f"run: {n} in flight" + (" (before the finished ones)"
                                                if args.finished else ""))
                show(result)
                if args.finished:
                    template = None
                    listed = await custom.list_namespaced_custom_object(
                        GROUP, VERSION, NS, "rollouts")
                    for item in listed["items"]:
                        if (item.get("status") or {}).get("phase") == "RolledBack":
                            template = copy.deepcopy(item["status"])
                            break
                    if template is None:
                        raise RuntimeError("no rollout rolled back to copy a status from")
                    daemon.stop()
                    took = await make_finished(api, args.finished, template)
                    print(f"created {args.finished} finished Rollouts in {took:.1f}s "
                          f"({args.finished / took:.0f}/s), status of "
                          f"{len(json.dumps(template))} bytes each")
                    startup = await daemon.start(scraper)
                    print(f"canaryd restarted: cache synced in {startup:.1f}s")
                    await asyncio.sleep(args.warmup)
                    rest = [x for x in names if x not in breach]
                    breach2 = rest[:: max(1, len(rest) // args.breach)][: args.breach]
                    result = await measure(args, kube, api, scraper, daemon, prom.url,
                                           rest, breach2, args.finished, startup)
                    print(f"run: {len(rest)} in flight, {args.finished} finished")
                    show(result)
                if args.json:
                    Path(args.json).write_text(json.dumps(result, indent=1))
                daemon.stop()
        finally:
            if daemon is not None:
                daemon.stop()
            if mesh is not None and mesh.poll() is None:
                mesh.terminate()
                try:
                    mesh.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    mesh.kill()
                    mesh.wait(timeout=10)
            await scraper.close()
            await api.close()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rollouts", type=int, default=100, help="rollouts in flight")
    p.add_argument("--interval", default="10s", help="analysis interval (10s, 1m)")
    p.add_argument("--finished", type=int, default=0,
                   help="finished Rollouts to add, then restart canaryd and measure again")
    p.add_argument("--seconds", type=float, default=60, help="measured window")
    p.add_argument("--warmup", type=float, default=20, help="seconds before measuring")
    p.add_argument("--breach", type=int, default=20, help="canaries made faulty mid-run")
    p.add_argument("--scrape", default="2s", help="Prometheus scrape interval")
    p.add_argument("--workdir", default=None, help="parent of the run's files (logs)")
    p.add_argument("--json", default=None, help="write the last run's figures here")
    args = p.parse_args(argv)
    if not re.fullmatch(r"[0-9]+[smh]", args.interval):
        p.error("--interval: a number with s, m or h (10s)")
    args.breach = min(args.breach, args.rollouts)
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
