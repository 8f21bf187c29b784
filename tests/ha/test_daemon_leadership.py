"""Two daemons in one process against the sandbox API server (no Prometheus needed):
only the leader acts, its gauge says so, a clean stop hands over at once, and a leader
that cannot renew stops acting within the renew deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from kubernetes_asyncio import client

from canaryd.daemon import Daemon, DaemonOptions
from canaryd.runtime.leader import LeaseTiming
from canaryd.sandbox.apiserver import ApiServer
from tests.ha.cluster import (
    CONFIG,
    FAST_LEASE,
    Call,
    Door,
    LeaseWatch,
    Rollouts,
    eventually,
    rollout_manifest,
)


@pytest.fixture
async def server() -> AsyncIterator[ApiServer]:
    # Deployments never become available: a rollout stays Pending (only claims write).
    async with ApiServer(deployment_ready_delay=3600) as srv:
        yield srv


class Replica:
    def __init__(self, daemon: Daemon, door: Door) -> None:
        self.daemon = daemon
        self.door = door
        self.task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.daemon.options.identity

    async def gauge(self) -> float:
        assert self.daemon.url is not None
        async with aiohttp.ClientSession() as s, s.get(f"{self.daemon.url}/metrics") as r:
            text = await r.text()
        line = next(ln for ln in text.splitlines() if ln.startswith("canaryd_leader "))
        return float(line.split()[1])


@pytest.fixture
async def replicas(server: ApiServer, api: client.ApiClient,
                   tmp_path: Path) -> AsyncIterator[dict[str, Replica]]:
    calls: list[Call] = []
    out: dict[str, Replica] = {}
    for name in ("r1", "r2"):
        door = Door(server, name, calls)
        await door.start()
        daemon = Daemon(DaemonOptions(
            config=CONFIG, kubeconfig=str(door.write_kubeconfig(tmp_path / f"kc-{name}")),
            host="127.0.0.1", port=0, prometheus_url="http://127.0.0.1:9", identity=name,
            lease_name="canaryd-test", lease_timing=LeaseTiming(**FAST_LEASE),
        ))
        out[name] = Replica(daemon, door)
    try:
        yield out
    finally:
        for r in out.values():
            r.daemon.stop.set()
        await asyncio.gather(*(r.task for r in out.values() if r.task), return_exceptions=True)
        for r in out.values():
            await r.door.stop()


async def start(replica: Replica) -> None:
    replica.task = asyncio.create_task(replica.daemon.run(embedded=True))

    async def up() -> bool:
        assert replica.task is not None
        if replica.task.done():
            replica.task.result()
        c = replica.daemon.controller
        return c is not None and c.synced.is_set() and replica.daemon.url is not None

    await eventually(up, timeout=10, what=f"{replica.name} synced")


async def test_one_leader_acts_and_a_clean_stop_hands_over_at_once(
    api: client.ApiClient, replicas: dict[str, Replica]
) -> None:
    rollouts = Rollouts(api)
    body = rollout_manifest()
    await rollouts.create(body)
    async with LeaseWatch(api, "default", "canaryd-test") as lease:
        await start(replicas["r1"])
        await lease.wait_holder(lambda h: h == "r1", timeout=5, what="r1 leading")
        await start(replicas["r2"])
        r1, r2 = replicas["r1"], replicas["r2"]
        assert r1.daemon.may_write() and not r2.daemon.may_write()
        assert await r1.gauge() == 1.0 and await r2.gauge() == 0.0
        await rollouts.wait(body["metadata"]["name"], lambda s: s.get("controller") == "r1",
                            timeout=5, what="r1's claim")

        r1.daemon.stop.set()
        stopped = time.monotonic()
        assert r1.task is not None
        await asyncio.wait_for(r1.task, timeout=5)
        held = await lease.wait_holder(lambda h: h == "r2", timeout=3, what="r2 leading")
        # Released, so r2 took it on its next retry instead of waiting out the lease.
        assert held.seen_at - stopped < FAST_LEASE["retry_period"] * 1.2 + 0.3
        assert "" in [h.holder for h in lease.history], "r1 did not release the lease"
        assert held.transitions == 1
        await rollouts.wait(body["metadata"]["name"], lambda s: s.get("controller") == "r2",
                            timeout=5, what="r2's claim")
        assert await r2.gauge() == 1.0
        # While r1 led, r2 (a follower) wrote nothing but its lease attempts.
        r2_calls = [c for c in r2.door.calls if c.client == "r2"]
        acquired = min(c.finished for c in r2_calls if c.landed and c.resource == "leases")
        assert not [c for c in r2_calls if c.landed and c.resource != "leases"
                    and c.started < acquired]


async def test_a_leader_cut_off_from_the_lease_stops_within_the_renew_deadline(
    api: client.ApiClient, replicas: dict[str, Replica]
) -> None:
    r1, r2 = replicas["r1"], replicas["r2"]
    async with LeaseWatch(api, "default", "canaryd-test") as lease:
        await start(r1)
        await lease.wait_holder(lambda h: h == "r1", timeout=5, what="r1 leading")
        await start(r2)
        r1.door.unavailable.add("leases")
        cut = time.monotonic()

        async def r1_stopped() -> bool:
            return not r1.daemon.may_write()

        await eventually(r1_stopped, timeout=3, what="r1 to stop acting", every=0.01)
        assert time.monotonic() - cut <= FAST_LEASE["renew_deadline"] + 0.1
        assert await r1.gauge() == 0.0
        held = await lease.wait_holder(lambda h: h == "r2", timeout=5, what="r2 leading")
        # r2 waits for the lease to run out after the last renewal it saw (at most one
        # jittered retry period after the cut).
        bound = FAST_LEASE["lease_duration"] + 1.2 * FAST_LEASE["retry_period"] + 0.7
        assert held.seen_at - cut <= bound
        assert r2.daemon.may_write()
        # Back on the network, r1 stays a follower.
        r1.door.unavailable.clear()
        await asyncio.sleep(FAST_LEASE["retry_period"] * 3)
        assert not r1.daemon.may_write() and lease.holder == "r2"
