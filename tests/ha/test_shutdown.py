"""SIGTERM on the leader: no new round starts, the round in flight finishes its writes,
then the Lease is released and the daemon returns, all within the grace period."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from canaryd.daemon import Daemon, DaemonOptions
from canaryd.runtime.leader import LeaseTiming
from canaryd.sandbox.apiserver import ApiServer
from tests.ha.cluster import CONFIG, FAST_LEASE, Call, Door, Rollouts, rollout_manifest


@pytest.fixture
async def server() -> AsyncIterator[ApiServer]:
    async with ApiServer(deployment_ready_delay=0.1) as srv:
        yield srv


async def test_sigterm_lets_the_round_in_flight_finish_then_releases_the_lease(
    server: ApiServer, api: client.ApiClient, tmp_path: Path
) -> None:
    calls: list[Call] = []
    door = Door(server, "leader", calls)
    await door.start()
    daemon = Daemon(DaemonOptions(
        config=CONFIG, kubeconfig=str(door.write_kubeconfig(tmp_path / "kc")),
        host="127.0.0.1", port=0, prometheus_url="http://127.0.0.1:9", identity="leader",
        lease_name="canaryd-test", lease_timing=LeaseTiming(**FAST_LEASE), drain_timeout=5,
    ))
    # The first traffic change of the rollout takes a while; SIGTERM arrives meanwhile.
    server.faults.set_latency(1.0, verb="patch", resource="virtualservices")
    stopped_at: list[float] = []

    def on_request(verb: str, resource: str) -> None:
        if (verb, resource) == ("patch", "virtualservices") and not stopped_at:
            stopped_at.append(time.monotonic())
            daemon.stop.set()  # what the SIGTERM handler does

    door.on_request = on_request
    task = asyncio.create_task(daemon.run(embedded=True))
    try:
        await Rollouts(api).create(rollout_manifest())
        await asyncio.wait_for(task, timeout=15)
    finally:
        daemon.stop.set()
        await asyncio.gather(task, return_exceptions=True)
        await door.stop()
    assert stopped_at, "the rollout never reached its first traffic change"
    exited = time.monotonic() - stopped_at[0]
    patch = next(c for c in calls if (c.verb, c.resource) == ("patch", "virtualservices"))
    assert patch.status == 200, "the write in flight was abandoned"
    release = [c for c in calls if c.resource == "leases" and c.verb == "update"
               and c.landed and c.started >= patch.finished]
    assert release, "the lease was not released after the round"
    lease = await client.CustomObjectsApi(api).get_namespaced_custom_object(
        "coordination.k8s.io", "v1", "default", "leases", "canaryd-test")
    assert lease["spec"]["holderIdentity"] == "" and lease["spec"]["leaseDurationSeconds"] == 1
    # No round started after the stop: nothing but the release was written afterwards.
    after = [c for c in calls if c.landed and c.started > patch.finished
             and c.resource not in ("leases", "events")]
    assert not after, after
    assert 1.0 <= exited < 1.0 + 3.0, exited  # waited for the write, then left promptly
