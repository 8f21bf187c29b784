"""Leader failover times of `canaryd serve` replicas against the sandbox API server.

    python bench/failover_bench.py [--runs 10] [--replicas 3]
                                   [--lease-duration 2 --renew-deadline 1.5 --retry-period 0.3]

Each run: find the leader from the Lease, kill it (SIGKILL, a crash: the others must wait
the lease out) or stop it (SIGTERM, a clean shutdown: it releases the Lease), and measure
the time until another replica holds the Lease, as seen by polling it every 20 ms. A fresh
replica replaces the old one, and settles, before the next run. Prints the median and the maximum of
each, next to client-go's bound for a crash (lease duration + a jittered retry period).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubernetes_asyncio import config  # noqa: E402 (after the path set-up)

from canaryd.sandbox.apiserver import ApiServer  # noqa: E402
from canaryd.sandbox.runner import install_crds  # noqa: E402
from tests.ha.cluster import Cluster, LeaseWatch, Replica, eventually  # noqa: E402


async def measure(cluster: Cluster, lease: LeaseWatch, sig: signal.Signals, *, serial: int,
                  limit: float) -> float:
    held = await lease.wait_holder(bool, timeout=limit, what="a leader")
    leader = cluster.replicas.pop(held.holder)
    leader.signal(sig)
    started = time.monotonic()
    after = await lease.wait_holder(lambda h: h not in ("", held.holder), timeout=limit,
                                    what="a new leader")
    elapsed = after.seen_at - started
    await leader.kill()
    await leader.door.stop()
    fresh = await cluster.add(f"r{serial}")
    # Let the newcomer settle into its retry rhythm, at a random phase: a candidate that
    # makes its very first attempt just after a release would flatter the handover time.
    retry = cluster.timing["retry_period"]
    await eventually(lambda: _tried(fresh), timeout=limit, what=f"{fresh.name} trying")
    await asyncio.sleep(retry * 1.2 + random.uniform(0, retry))
    return elapsed


async def _tried(replica: Replica) -> bool:
    return any(c.resource == "leases" for c in replica.calls())


def summary(name: str, values: list[float]) -> str:
    return (f"{name:<28} runs={len(values):<3} median={statistics.median(values):.2f}s "
            f"max={max(values):.2f}s min={min(values):.2f}s")


async def main(args: argparse.Namespace) -> None:
    timing = {"lease_duration": args.lease_duration, "renew_deadline": args.renew_deadline,
              "retry_period": args.retry_period}
    server = ApiServer()
    await server.start(host="127.0.0.1", port=0)
    workdir = Path(tempfile.mkdtemp(prefix="canaryd-failover-"))
    kubeconfig = workdir / "kubeconfig"
    server.write_kubeconfig(kubeconfig)
    api = await config.new_client_from_config(config_file=str(kubeconfig))
    await install_crds(api)
    # No analysis runs here; an unreachable Prometheus only makes /readyz say so.
    cluster = Cluster(server=server, workdir=workdir, prometheus_url="http://127.0.0.1:9",
                      lease_name="canaryd-bench", timing=timing)
    limit = args.lease_duration * 3 + 10
    crashes: list[float] = []
    shutdowns: list[float] = []
    try:
        async with LeaseWatch(api, cluster.lease_namespace, cluster.lease_name) as lease:
            await cluster.start(*(f"r{i}" for i in range(args.replicas)))
            serial = args.replicas
            for run in range(args.runs):
                crashes.append(await measure(cluster, lease, signal.SIGKILL, serial=serial,
                                             limit=limit))
                serial += 1
                shutdowns.append(await measure(cluster, lease, signal.SIGTERM, serial=serial,
                                               limit=limit))
                serial += 1
                print(f"run {run + 1}: SIGKILL {crashes[-1]:.2f}s, SIGTERM {shutdowns[-1]:.2f}s",
                      flush=True)
    finally:
        await cluster.close()
        await api.close()
        await server.stop()
    bound = args.lease_duration + 1.2 * args.retry_period
    print(f"lease duration {args.lease_duration}s, renew deadline {args.renew_deadline}s, "
          f"retry period {args.retry_period}s, {args.replicas} replicas")
    print(summary("failover after SIGKILL", crashes) + f"  (bound {bound:.2f}s)")
    print(summary("handover after SIGTERM", shutdowns))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--lease-duration", type=float, default=2.0)
    parser.add_argument("--renew-deadline", type=float, default=1.5)
    parser.add_argument("--retry-period", type=float, default=0.3)
    asyncio.run(main(parser.parse_args()))
