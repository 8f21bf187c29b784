"""Leader election with real Leases: three `canaryd serve` processes against the real
control plane; the leader is SIGKILLed mid-rollout, another replica takes the Lease within
the lease duration plus a retry, and the rollout completes with every step exactly once."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import config

from canaryd.sandbox.realkube import RealKube
from canaryd.sandbox.runner import Sandbox
from tests.ha.cluster import (
    FAST_LEASE,
    TERMINAL,
    Cluster,
    LeaseWatch,
    Rollouts,
    assert_history_single,
    rollout_manifest,
)

NAME = "podinfo-v2"
LEASE, RETRY = FAST_LEASE["lease_duration"], FAST_LEASE["retry_period"]
SLACK = 1.0  # process scheduling and request latency on a loaded two-core machine


@pytest.fixture
async def sandbox(real_kube: RealKube) -> AsyncIterator[Sandbox]:
    async with Sandbox(rps=200, kube=real_kube) as sb:
        yield sb


async def test_sigkill_of_the_leader_fails_over_on_a_real_lease(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    cluster = Cluster(server=None, kubeconfig=sandbox.kubeconfig, workdir=tmp_path,
                      prometheus_url=sandbox.prometheus_url, lease_name="failover-real")
    rollouts = Rollouts(api)
    try:
        async with LeaseWatch(api, cluster.lease_namespace, cluster.lease_name) as lease:
            await cluster.start("r1", "r2", "r3")
            first = await lease.wait_holder(bool, timeout=20, what="a leader")
            await rollouts.create(rollout_manifest(NAME))
            await rollouts.wait(
                NAME, lambda s: s.get("phase") == "Progressing" and s.get("stepIndex", 0) >= 1,
                timeout=120, what="step 2 in progress",
            )
            cluster.replicas[first.holder].signal(signal.SIGKILL)
            killed = time.monotonic()
            new = await lease.wait_holder(lambda h: h not in ("", first.holder),
                                          timeout=LEASE + 10, what="a new leader")
            failover = new.seen_at - killed
            print(f"failover after SIGKILL on a real Lease: {failover:.2f}s")
            assert failover <= LEASE + RETRY * 1.2 + SLACK, failover
            assert new.transitions == first.transitions + 1
            status = await rollouts.wait_phase(NAME, TERMINAL, timeout=120)
        assert status["phase"] == "Succeeded", status["reason"]
        assert_history_single(status, 3)
        assert status["controller"] == new.holder
    finally:
        await cluster.close()
        await api.close()
