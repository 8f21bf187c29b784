"""Shard spread, failover and rebalancing of `canaryd serve --shards N` replicas against the
sandbox API server.

    python bench/shards_bench.py [--runs 5] [--replicas 3] [--shards 8]
                                 [--lease-duration 2 --renew-deadline 1.5 --retry-period 0.3]

Each run: the replica holding the most shards is killed (SIGKILL: the others must wait its
leases out) or stopped (SIGTERM: it releases them), alternately; measured is the time until
every one of its shards is held by another replica, as seen by listing the shard Leases
every 20 ms. A fresh replica then joins, and the time until the shards are spread evenly
again (each holds floor or ceil of shards / replicas) is measured too. Prints the spread
and the median and maximum of each, next to the bound for a crash (lease duration + two
jittered retry periods: the last renewal is seen up to a listing late).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402 (after the path set-up)
from kubernetes_asyncio import client, config  # noqa: E402
from kubernetes_asyncio.client.exceptions import ApiException  # noqa: E402

from canaryd.core import shards as core  # noqa: E402
from canaryd.runtime.leader import JITTER  # noqa: E402
from canaryd.sandbox.apiserver import ApiServer  # noqa: E402
from canaryd.sandbox.runner import install_crds  # noqa: E402
from tests.ha.cluster import Cluster, eventually  # noqa: E402

GROUP = "bench-shards"


class Holders:
    """The shard Leases' holders, listed every 20 ms."""

    def __init__(self, api: client.ApiClient, shards: int) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.shards = shards
        self.now: dict[int, str] = {}

    async def poll(self) -> None:
        while True:
            with contextlib.suppress(ApiException, aiohttp.ClientError, TimeoutError):
                listed = await self.custom.list_namespaced_custom_object(
                    "coordination.k8s.io", "v1", "default", "leases",
                    label_selector=f"{core.GROUP_LABEL}={GROUP}", _request_timeout=2)
                now = {}
                for item in listed["items"]:
                    shard = core.lease_shard(GROUP, item["metadata"]["name"], self.shards)
                    if shard is not None:
                        now[shard] = str(item["spec"].get("holderIdentity") or "")
                self.now = now
            await asyncio.sleep(0.02)

    def spread(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for holder in self.now.values():
            if holder:
                out[holder] = out.get(holder, 0) + 1
        return out

    async def wait_even(self, among: set[str], timeout: float) -> dict[str, int]:
        low, high = self.shards // len(among), -(-self.shards // len(among))

        async def probe() -> dict[str, int] | None:
            spread = self.spread()
            ok = (set(spread) == among and sum(spread.values()) == self.shards
                  and all(low <= n <= high for n in spread.values()))
            return spread if ok else None

        return await eventually(probe, timeout=timeout, what=f"shards even over {among}",
                                every=0.01)


def summary(name: str, values: list[float]) -> str:
    return (f"{name:<34} runs={len(values):<3} median={statistics.median(values):.2f}s "
            f"max={max(values):.2f}s")


async def main(args: argparse.Namespace) -> None:
    timing = {"lease_duration": args.lease_duration, "renew_deadline": args.renew_deadline,
              "retry_period": args.retry_period}
    server = ApiServer()
    await server.start(host="127.0.0.1", port=0)
    with tempfile.TemporaryDirectory(prefix="canaryd-shards-bench-") as tmp:
        work = Path(tmp)
        server.write_kubeconfig(work / "kubeconfig")
        api = await config.new_client_from_config(config_file=str(work / "kubeconfig"))
        await install_crds(api)
        cluster = Cluster(server=server, workdir=work, prometheus_url="http://127.0.0.1:9",
                          lease_name=GROUP, timing=timing,
                          extra_args=["--shards", str(args.shards)])
        holders = Holders(api, args.shards)
        poller = asyncio.create_task(holders.poll())
        limit = args.lease_duration * 4 + 20
        kills: list[float] = []
        terms: list[float] = []
        joins: list[float] = []
        try:
            names = [f"r{i}" for i in range(1, args.replicas + 1)]
            await cluster.start(*names)
            spread = await holders.wait_even(set(names), limit)
            print(f"{args.replicas} replicas, {args.shards} shards: "
                  f"{dict(sorted(spread.items()))}")
            serial = args.replicas
            for run in range(args.runs * 2):
                sig = signal.SIGKILL if run % 2 == 0 else signal.SIGTERM
                victim = max(holders.spread().items(), key=lambda kv: kv[1])[0]
                lost = sorted(s for s, h in holders.now.items() if h == victim)
                replica = cluster.replicas.pop(victim)
                replica.signal(sig)
                started = time.monotonic()

                async def retaken(lost: list[int] = lost, victim: str = victim) -> bool:
                    return all(holders.now.get(s) not in ("", victim) for s in lost)

                await eventually(retaken, timeout=limit, what="its shards retaken", every=0.01)
                (kills if sig is signal.SIGKILL else terms).append(time.monotonic() - started)
                await replica.kill()
                if replica.door is not None:
                    await replica.door.stop()
                serial += 1
                fresh = f"r{serial}"
                joined = time.monotonic()
                await cluster.add(fresh)
                await holders.wait_even(set(cluster.replicas), limit)
                joins.append(time.monotonic() - joined)
        finally:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)
            await cluster.close()
            await api.close()
            await server.stop()
    bound = args.lease_duration + 2 * args.retry_period * JITTER
    print(f"timings: lease {args.lease_duration}s, renew deadline {args.renew_deadline}s, "
          f"retry {args.retry_period}s")
    print(summary("SIGKILL: its shards retaken", kills) + f" bound~{bound:.2f}s")
    print(summary("SIGTERM: its shards retaken", terms))
    print(summary("a replica joins: even again", joins) + " (its start-up included)")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="runs of each signal")
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--lease-duration", type=float, default=2.0)
    p.add_argument("--renew-deadline", type=float, default=1.5)
    p.add_argument("--retry-period", type=float, default=0.3)
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
