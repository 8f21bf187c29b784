"""API latency under load, and how many event-stream followers one daemon holds.

Three processes on loopback: the sandbox API server, the daemon under test (an API replica:
informer-fed cache + HTTP API, as every replica runs it; the bench plays the leader by
writing rollout status itself), and this process, which generates the load.

Latency is measured open-loop: requests are scheduled at a fixed rate and each one's
latency runs from its scheduled start, so a server that falls behind shows it (no
coordinated omission).

    .venv/bin/python bench/api_bench.py [--rollouts 300] [--seconds 10]
        [--get-rps 500] [--list-rps 50] [--post-rps 50] [--followers 250,1000,2000,4000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from kubernetes_asyncio import client, config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NS = "bench"
TOKEN = "bench-admin-token-0123456789"  # noqa: S105 (a throwaway local token)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GROUP, VERSION, PLURAL = "canaryd.io", "v1alpha1", "rollouts"


def manifest(name: str, target: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((ROOT / "config/examples/canary.yaml").read_text())
    body["metadata"] = {"name": name, "namespace": NS}
    body["spec"]["target"] = target
    # Objects of its own: one active rollout per router object and Deployment.
    body["spec"]["router"]["istio"]["virtualService"] = target
    body["spec"]["workloads"].update(stable=f"{target}-stable", canary=f"{target}-canary")
    return body


# ------------------------------------------------------------------ the daemon under test


async def replica(kubeconfig: str, tokens: str) -> None:
    """The daemon as every replica runs it, minus leadership: informer + HTTP API."""
    from canaryd import log
    from canaryd.daemon import Daemon, DaemonOptions

    log.configure(level="warning", json=True)
    daemon = Daemon(DaemonOptions(
        config=ROOT / "config/canaryd.yaml", kubeconfig=kubeconfig, host="127.0.0.1", port=0,
        prometheus_url="http://127.0.0.1:9", tokens_file=tokens, identity="bench",
        leader_election=False,
    ))
    runner = await daemon.start()
    assert daemon.controller is not None
    informer = asyncio.create_task(daemon.controller.informer(daemon.stop))
    await daemon.controller.synced.wait()
    print(json.dumps({"url": daemon.url}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
    daemon.stop.set()
    informer.cancel()
    await runner.cleanup()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# ------------------------------------------------------------------ load


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def fixed_rate(
    name: str, rps: float, seconds: float, call: Callable[[int], Awaitable[int]],
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    total = int(rps * seconds)

    async def one(i: int) -> None:
        scheduled = start + i / rps
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        try:
            status = await call(i)
        except (aiohttp.ClientError, TimeoutError):
            status = -1
        latencies.append((loop.time() - scheduled) * 1000)
        statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(one(i) for i in range(total)))
    elapsed = loop.time() - start
    return {"scenario": name, "rate": rps, "requests": total,
            "achieved_rps": round(total / elapsed, 1), "statuses": statuses,
            "p50_ms": round(pct(latencies, 0.50), 2), "p99_ms": round(pct(latencies, 0.99), 2),
            "max_ms": round(max(latencies), 2)}


async def latency(http: aiohttp.ClientSession, url: str, args: argparse.Namespace) -> list[Any]:
    async def get_one(i: int) -> int:
        async with http.get(f"{url}/api/v1/rollouts/{NS}/r{i % args.rollouts:04d}",
                            headers=AUTH) as resp:
            await resp.read()
            return resp.status

    async def list_page(_i: int) -> int:
        async with http.get(f"{url}/api/v1/rollouts", params={"namespace": NS, "limit": "50"},
                            headers=AUTH) as resp:
            await resp.read()
            return resp.status

    async def post_one(i: int) -> int:
        body = json.dumps(manifest(f"p{i:05d}", f"t{i:05d}")).encode()
        async with http.post(f"{url}/api/v1/rollouts", data=body, headers={
                **AUTH, "Content-Type": "application/json", "Idempotency-Key": f"bench-{i}"},
        ) as resp:
            await resp.read()
            return resp.status

    return [
        await fixed_rate("GET one rollout", args.get_rps, args.seconds, get_one),
        await fixed_rate("GET list (50 per page)", args.list_rps, args.seconds, list_page),
        await fixed_rate("POST a rollout", args.post_rps, args.seconds, post_one),
    ]


# ------------------------------------------------------------------ followers


async def followers(url: str, kube: client.ApiClient, steps: list[int],
                    pid: int) -> list[dict[str, Any]]:
    custom = client.CustomObjectsApi(kube)
    await custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL,
                                                 manifest("followed", "followed"))
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    session = aiohttp.ClientSession(connector=connector, timeout=timeout)
    got: dict[int, asyncio.Queue[float]] = {}
    tasks: list[asyncio.Task[None]] = []
    history: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []

    async def follow(i: int, connected: asyncio.Event) -> None:
        queue = got[i] = asyncio.Queue()
        async with session.get(f"{url}/api/v1/rollouts/{NS}/followed/events",
                               headers=AUTH) as resp:
            async for raw in resp.content:
                if raw.startswith(b"event: state"):
                    connected.set()
                elif raw.startswith(b"event: transition"):
                    queue.put_nowait(time.perf_counter())

    try:
        for target in steps:
            opened = time.perf_counter()
            events = []
            for i in range(len(tasks), target):
                connected = asyncio.Event()
                events.append(connected)
                tasks.append(asyncio.create_task(follow(i, connected)))
            try:
                await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 60)
            except TimeoutError:
                out.append({"followers": target, "error": "not all connected within 60s"})
                break
            connect_s = time.perf_counter() - opened
            for q in got.values():
                while not q.empty():
                    q.get_nowait()
            seq = len(history) + 1
            history.append({"seq": seq, "time": "2026-01-01T00:00:00Z", "source": "Pending",
                            "phase": "Pending", "trigger": "Bench", "reason": f"step {seq}"})
            sent = time.perf_counter()
            await custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, NS, PLURAL, "followed",
                {"status": {"phase": "Pending", "sequence": seq, "history": history}},
                _content_type="application/merge-patch+json")
            arrivals = await asyncio.wait_for(
                asyncio.gather(*(q.get() for q in got.values())), timeout=60)
            fanout = [(a - sent) * 1000 for a in arrivals]
            out.append({"followers": target, "connect_all_s": round(connect_s, 2),
                        "fanout_p50_ms": round(statistics.median(fanout), 1),
                        "fanout_p99_ms": round(pct(fanout, 0.99), 1),
                        "fanout_max_ms": round(max(fanout), 1),
                        "daemon_rss_mib": round(rss_mib(pid), 1)})
            print(json.dumps(out[-1]), flush=True)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await session.close()
    return out


# ------------------------------------------------------------------ orchestration


async def seed(kube: client.ApiClient, count: int) -> None:
    from canaryd.sandbox.runner import install_crds

    await install_crds(kube, [ROOT / "canaryd/data/crds/canaryd-rollout.yaml"])
    await client.CoreV1Api(kube).create_namespace({"metadata": {"name": NS}})
    custom = client.CustomObjectsApi(kube)
    sem = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        async with sem:
            name = f"r{i:04d}"
            await custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL,
                                                         manifest(name, f"seed{i}"))
            await custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, NS, PLURAL, name, {"status": {"phase": "Succeeded"}},
                _content_type="application/merge-patch+json")

    await asyncio.gather(*(one(i) for i in range(count)))


async def _stop(proc: asyncio.subprocess.Process | None) -> None:
    if proc is None or proc.returncode is not None:
        return
    if proc.stdin is not None:
        proc.stdin.close()
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout=10)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def bench(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="canaryd-api-bench-"))
    kubeconfig, tokens = work / "kubeconfig", work / "tokens.yaml"
    tokens.write_text(yaml.safe_dump([{"name": "bench", "role": "admin", "token": TOKEN}]))
    pipe = asyncio.subprocess.PIPE
    apiserver = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "canaryd.sandbox.apiserver", "--kubeconfig", str(kubeconfig),
        stdout=pipe)
    daemon = None
    try:
        assert apiserver.stdout is not None
        await asyncio.wait_for(apiserver.stdout.readline(), timeout=30)
        kube = await config.new_client_from_config(config_file=str(kubeconfig))
        await seed(kube, args.rollouts)
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--replica", str(kubeconfig), str(tokens),
            stdin=pipe, stdout=pipe)
        assert daemon.stdout is not None
        url = json.loads(await asyncio.wait_for(daemon.stdout.readline(), timeout=60))["url"]
        print(f"daemon (API replica, pid {daemon.pid}) at {url}; {args.rollouts} rollouts "
              f"in its cache; {os.cpu_count()} CPUs", flush=True)
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=30)) as http:
            for row in await latency(http, url, args):
                print(json.dumps(row), flush=True)
        print(f"daemon RSS after the latency runs: {rss_mib(daemon.pid):.1f} MiB", flush=True)
        steps = [int(s) for s in args.followers.split(",")]
        await followers(url, kube, steps, daemon.pid)
        await kube.close()
    finally:
        await _stop(daemon)
        await _stop(apiserver)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--replica", nargs=2, metavar=("KUBECONFIG", "TOKENS"), help=argparse.SUPPRESS)
    p.add_argument("--rollouts", type=int, default=300)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--get-rps", type=float, default=500.0)
    p.add_argument("--list-rps", type=float, default=50.0)
    p.add_argument("--post-rps", type=float, default=50.0)
    p.add_argument("--followers", default="250,1000,2000,4000")
    args = p.parse_args()
    if args.replica:
        asyncio.run(replica(*args.replica))
    else:
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
