"""The Lease elector against the sandbox API server: client-go semantics, call by call.

A fake monotonic clock drives expiry wherever timing is the point, so these tests never
wait out a lease; the server's own timestamps are left to disagree with it on purpose.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from canaryd.runtime.leader import JITTER, LeaderElector, LeaseRef, LeaseTiming, micro_time
from canaryd.sandbox.apiserver import ApiServer
from canaryd.sandbox.testing import kube_client

MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
LEASE = LeaseRef("default", "canaryd-test")
TIMING = LeaseTiming(lease_duration=2, renew_deadline=1.5, retry_period=0.3)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def server() -> AsyncIterator[ApiServer]:
    async with ApiServer() as srv:
        yield srv


@pytest.fixture
async def api(server: ApiServer, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    async with kube_client(server, tmp_path) as c:
        yield c


def elector(api: client.ApiClient, identity: str, clock: FakeClock | None = None,
            **kwargs: Any) -> LeaderElector:
    if clock is not None:
        kwargs["monotonic"] = clock
    return LeaderElector(api=api, lease=LEASE, identity=identity, timing=TIMING, **kwargs)


async def read_lease(api: client.ApiClient) -> dict[str, Any]:
    result: dict[str, Any] = await client.CustomObjectsApi(api).get_namespaced_custom_object(
        "coordination.k8s.io", "v1", LEASE.namespace, "leases", LEASE.name)
    return result


async def put_spec(api: client.ApiClient, spec: dict[str, Any]) -> None:
    lease = await read_lease(api)
    lease["spec"] = spec
    await client.CustomObjectsApi(api).replace_namespaced_custom_object(
        "coordination.k8s.io", "v1", LEASE.namespace, "leases", LEASE.name, lease)


def test_timing_follows_client_go_rules() -> None:
    assert LeaseTiming() == LeaseTiming(15, 10, 2)
    with pytest.raises(ValueError, match="greater than the renew deadline"):
        LeaseTiming(lease_duration=10, renew_deadline=10, retry_period=2)
    with pytest.raises(ValueError, match=r"1\.2 x retry period"):
        LeaseTiming(lease_duration=15, renew_deadline=2.4, retry_period=2)
    assert LeaseTiming(2.5, 2, 1).lease_seconds == 3


def test_micro_time_is_real_utc_with_microseconds() -> None:
    at = datetime(2026, 1, 2, 5, 4, 5, 7, tzinfo=timezone(timedelta(hours=2)))
    assert micro_time(at) == "2026-01-02T03:04:05.000007Z"
    assert MICRO.match(micro_time(datetime.now(UTC)))


async def test_first_candidate_creates_the_lease(api: client.ApiClient) -> None:
    a = elector(api, "a")
    assert await a.acquire(asyncio.Event())
    assert a.is_leader()
    spec = (await read_lease(api))["spec"]
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 2
    assert spec["leaseTransitions"] == 0
    assert MICRO.match(spec["acquireTime"]) and MICRO.match(spec["renewTime"])
    written = datetime.strptime(spec["renewTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((written - datetime.now(UTC)).total_seconds()) < 5, "renewTime is not UTC"


async def test_renewal_keeps_acquire_time_and_bumps_renew_time(api: client.ApiClient) -> None:
    a = elector(api, "a")
    assert await a.try_acquire_or_renew()
    first = await read_lease(api)
    await asyncio.sleep(0.01)
    assert await a.try_acquire_or_renew()
    second = await read_lease(api)
    assert second["spec"]["acquireTime"] == first["spec"]["acquireTime"]
    assert second["spec"]["renewTime"] > first["spec"]["renewTime"]
    assert second["spec"]["leaseTransitions"] == 0
    assert second["metadata"]["resourceVersion"] != first["metadata"]["resourceVersion"]


async def test_takeover_waits_a_lease_duration_of_observed_silence(
    api: client.ApiClient,
) -> None:
    clock = FakeClock()
    a, b = elector(api, "a"), elector(api, "b", clock)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()  # first sight: the clock starts now
    clock.now += 1.9
    assert not await b.try_acquire_or_renew(), "taken before the lease ran out"
    # The holder renews: a changed record restarts b's observation.
    assert await a.try_acquire_or_renew()
    clock.now += 1.9
    assert not await b.try_acquire_or_renew()
    clock.now += 2.0
    assert await b.try_acquire_or_renew()
    spec = (await read_lease(api))["spec"]
    assert spec["holderIdentity"] == "b"
    assert spec["leaseTransitions"] == 1
    assert spec["acquireTime"] == spec["renewTime"]


async def test_server_timestamps_are_never_compared_with_the_local_clock(
    api: client.ApiClient,
) -> None:
    clock = FakeClock()
    a, b = elector(api, "a"), elector(api, "b", clock)
    assert await a.try_acquire_or_renew()
    # A holder whose clock is an hour behind: its renewTime looks long expired.
    stale = micro_time(datetime.now(UTC) - timedelta(hours=1))
    spec = {**(await read_lease(api))["spec"], "renewTime": stale, "acquireTime": stale}
    await put_spec(api, spec)
    assert not await b.try_acquire_or_renew(), "took a lease that was just renewed"
    # A holder whose clock is an hour ahead, then silent: still expires after 2 s observed.
    ahead = micro_time(datetime.now(UTC) + timedelta(hours=1))
    await put_spec(api, {**spec, "renewTime": ahead})
    assert not await b.try_acquire_or_renew()
    clock.now += 2.01
    assert await b.try_acquire_or_renew()


async def test_a_stale_resource_version_loses_the_race_without_raising(
    api: client.ApiClient,
) -> None:
    clock = FakeClock()
    a, b, c = elector(api, "a"), elector(api, "b", clock), elector(api, "c", clock)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    assert not await c.try_acquire_or_renew()
    clock.now += 3
    # Both saw the same expired record; both PUT with its resourceVersion: one gets 409.
    results = await asyncio.gather(b.try_acquire_or_renew(), c.try_acquire_or_renew())
    assert sorted(results) == [False, True]
    spec = (await read_lease(api))["spec"]
    assert spec["leaseTransitions"] == 1
    assert spec["holderIdentity"] == ("b" if results[0] else "c")


async def test_leader_stops_at_the_renew_deadline_when_it_cannot_renew(
    api: client.ApiClient, server: ApiServer
) -> None:
    changes: list[bool] = []
    a = elector(api, "a", on_change=changes.append)
    assert await a.acquire(asyncio.Event())
    acquired = time.monotonic()
    server.faults.fail_next(1000, 503, resource="leases")
    await asyncio.wait_for(a.hold(asyncio.Event()), timeout=5)
    stepped_down = time.monotonic() - acquired
    assert not a.is_leader()
    assert changes == [True, False]
    # Never past the deadline; not long before it either (renewals were retried).
    assert 1.2 <= stepped_down <= 1.5 + 0.15, stepped_down


async def test_is_leader_turns_false_at_the_deadline_even_while_a_call_hangs(
    api: client.ApiClient, server: ApiServer
) -> None:
    a = elector(api, "a")
    assert await a.acquire(asyncio.Event())
    server.faults.set_latency(30, resource="leases")
    renewing = asyncio.create_task(a.try_acquire_or_renew())
    deadline = time.monotonic() + 1.5
    while a.is_leader():
        await asyncio.sleep(0.01)
    assert time.monotonic() <= deadline + 0.05
    # The hung call itself is cut at the deadline too, and reports failure.
    assert await asyncio.wait_for(renewing, timeout=1) is False


async def test_seeing_another_holder_ends_leadership_at_once(api: client.ApiClient) -> None:
    a = elector(api, "a")
    assert await a.acquire(asyncio.Event())
    spec = (await read_lease(api))["spec"]
    await put_spec(api, {**spec, "holderIdentity": "intruder",
                         "leaseTransitions": spec["leaseTransitions"] + 1})
    started = time.monotonic()
    await asyncio.wait_for(a.hold(asyncio.Event()), timeout=3)
    assert not a.is_leader()
    assert time.monotonic() - started < 1.0, "waited for the deadline instead of yielding"
    assert (await read_lease(api))["spec"]["holderIdentity"] == "intruder"


async def test_release_hands_over_without_waiting_out_the_lease(api: client.ApiClient) -> None:
    clock = FakeClock()
    a, b = elector(api, "a"), elector(api, "b", clock)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    assert await a.release()
    spec = (await read_lease(api))["spec"]
    assert spec["holderIdentity"] == ""
    assert spec["leaseDurationSeconds"] == 1
    assert spec["leaseTransitions"] == 0
    assert not a.is_leader()
    assert await b.try_acquire_or_renew(), "a released lease is free at once"
    assert (await read_lease(api))["spec"]["leaseTransitions"] == 1
    assert await a.release(), "releasing a lease one does not hold is a no-op"
    assert (await read_lease(api))["spec"]["holderIdentity"] == "b"


async def test_a_restart_with_the_same_identity_renews_instead_of_taking_over(
    api: client.ApiClient,
) -> None:
    assert await elector(api, "a").try_acquire_or_renew()
    acquired = (await read_lease(api))["spec"]["acquireTime"]
    again = elector(api, "a")
    assert await again.try_acquire_or_renew()
    spec = (await read_lease(api))["spec"]
    assert spec["leaseTransitions"] == 0 and spec["acquireTime"] == acquired


async def test_no_exception_escapes_when_the_server_is_gone(
    api: client.ApiClient, server: ApiServer
) -> None:
    a = elector(api, "a")
    assert await a.acquire(asyncio.Event())
    await server.stop()
    assert await a.try_acquire_or_renew() is False
    await asyncio.wait_for(a.hold(asyncio.Event()), timeout=3)
    assert not a.is_leader()
    assert await a.release() is False
    stop = asyncio.Event()
    candidate = asyncio.create_task(elector(api, "b").acquire(stop))
    await asyncio.sleep(0.5)
    stop.set()
    assert await asyncio.wait_for(candidate, timeout=2) is False


async def test_candidate_wakes_when_the_observed_lease_expires(api: client.ApiClient) -> None:
    # On a virtual clock: far from expiry a candidate waits a retry period (jittered); near
    # it, it wakes just after the observed lease runs out, not up to a retry period later.
    clock = FakeClock()
    a, b = elector(api, "a"), elector(api, "b", clock)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()  # first sight: expiry 2 s from now
    assert TIMING.retry_period <= b._candidate_delay() <= TIMING.retry_period * JITTER
    clock.now += 1.9
    delay = b._candidate_delay()
    assert 0.1 < delay <= 0.1 + 0.002, delay
    clock.now += delay
    assert await b.try_acquire_or_renew(), "not taken when the lease ran out"
    # On the wall clock through acquire(): b holds and stays silent; c takes the lease, and
    # never before it has expired.
    started = time.monotonic()
    assert await asyncio.wait_for(elector(api, "c").acquire(asyncio.Event()), timeout=30)
    assert time.monotonic() - started >= TIMING.lease_duration
