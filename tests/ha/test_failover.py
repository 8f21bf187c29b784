"""Several `canaryd serve` processes against one sandbox, a canary rollout in flight:
the leader is killed, frozen, or every replica is restarted, and the rollout still completes
with every step taken exactly once.

Lease timings are short (2 s / 1.5 s / 0.3 s), so a crashed leader is replaced within
lease duration + one (jittered) retry period: the candidate wakes when the lease it
watches expires.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.ha.cluster import (
    FAST_LEASE,
    TERMINAL,
    assert_history_single,
    eventually,
    rollout_manifest,
)
from tests.ha.conftest import HA

pytestmark = pytest.mark.prometheus

NAME = "podinfo-v2"
STEPS = 3  # config/examples/canary.yaml: 10%, 30%, 60%
LEASE = FAST_LEASE["lease_duration"]
RETRY = FAST_LEASE["retry_period"]
# Room for process scheduling and request latency on a loaded two-core CI machine.
SLACK = 0.7


async def start_rollout_and_reach_step(ha: HA, step: int) -> None:
    await ha.rollouts.create(rollout_manifest(NAME))
    await ha.rollouts.wait(
        NAME, lambda s: s.get("phase") == "Progressing" and s.get("stepIndex", 0) >= step,
        timeout=40, what=f"step {step + 1} in progress",
    )


async def test_sigkill_of_the_leader_mid_rollout_fails_over_and_completes(ha: HA) -> None:
    await ha.cluster.start("r1", "r2", "r3")
    first = await ha.lease.wait_holder(bool, timeout=10, what="a leader")
    await start_rollout_and_reach_step(ha, 1)

    ha.cluster.replicas[first.holder].signal(signal.SIGKILL)
    killed = time.monotonic()
    new = await ha.lease.wait_holder(lambda h: h not in ("", first.holder),
                                     timeout=LEASE + 5, what="a new leader")
    failover = new.seen_at - killed
    print(f"failover after SIGKILL: {failover:.2f}s")
    assert failover <= LEASE + RETRY * 1.2 + SLACK, failover
    assert new.transitions == first.transitions + 1

    status = await ha.rollouts.wait_phase(NAME, TERMINAL, timeout=60)
    assert status["phase"] == "Succeeded", status["reason"]
    assert_history_single(status, STEPS)
    assert status["controller"] == new.holder
    follower = next(n for n in ha.cluster.replicas if n not in (first.holder, new.holder))
    assert not [c for c in ha.cluster.replicas[follower].calls()
                if c.landed and c.resource != "leases"], "a follower wrote"


async def test_a_frozen_leader_that_wakes_after_takeover_writes_nothing(ha: HA) -> None:
    await ha.cluster.start("r1", "r2")
    first = await ha.lease.wait_holder(bool, timeout=10, what="a leader")
    old = ha.cluster.replicas[first.holder]
    await start_rollout_and_reach_step(ha, 0)

    old.signal(signal.SIGSTOP)
    frozen = time.monotonic()
    new = await ha.lease.wait_holder(lambda h: h not in ("", first.holder),
                                     timeout=LEASE + 5, what="a new leader")
    successor = ha.cluster.replicas[new.holder]
    took_over = min(c.finished for c in successor.calls()
                    if c.landed and c.resource == "leases" and c.started > frozen)
    # The new leader fences first: its claim rewrites the rollout under its name.
    await ha.rollouts.wait(NAME, lambda s: s.get("controller") == new.holder, timeout=5,
                           what="the new leader's claim")
    old.signal(signal.SIGCONT)
    woke = time.monotonic()

    async def old_is_back() -> bool:
        return any(c.started > woke for c in old.calls())

    await eventually(old_is_back, timeout=5, what="the old leader talking to the API again")

    async def old_is_follower() -> bool:
        return await old.metric("canaryd_leader") == 0.0

    await eventually(old_is_follower, timeout=5, what="the old leader's gauge at 0")

    status = await ha.rollouts.wait_phase(NAME, TERMINAL, timeout=60)
    assert status["phase"] == "Succeeded", status["reason"]
    assert_history_single(status, STEPS)
    late = [c for c in old.calls() if c.landed and c.finished > took_over]
    assert not late, f"writes from the old leader landed after the takeover: {late}"
    assert ha.lease.holder == new.holder


async def test_rolling_restart_of_every_replica_mid_rollout_completes(ha: HA) -> None:
    await ha.cluster.start("r1", "r2")
    first = await ha.lease.wait_holder(bool, timeout=10, what="a leader")
    await start_rollout_and_reach_step(ha, 0)
    # Held while every replica is replaced, so the restarts land mid-rollout however slow
    # the machine is (a fast rollout could otherwise finish under the first replicas).
    await ha.rollouts.act(NAME, "pause")
    await ha.rollouts.wait(NAME, lambda s: s.get("phase") == "Paused", timeout=20,
                           what="the rollout paused")

    # Like a Deployment rollout with maxSurge 1, maxUnavailable 0: new pod first.
    handovers = []
    for old_name, new_name in (("r1", "r3"), ("r2", "r4")):
        await ha.cluster.add(new_name)
        old = ha.cluster.replicas[old_name]
        was_leader = ha.lease.holder == old_name
        old.signal(signal.SIGTERM)
        terminated = time.monotonic()
        assert await old.wait_exit(timeout=20) == 0
        assert old.exited_at is not None and old.exited_at - terminated < 20
        if was_leader:
            # It gave the Lease up on its way out (the next leader need not wait it out).
            assert '"lease released"' in old.log_path.read_text(errors="replace"), old_name
            held = await ha.lease.wait_holder(lambda h, n=old_name: h not in ("", n),
                                              timeout=LEASE + 5, what="the next leader")
            handovers.append(held.seen_at - terminated)
    print(f"handovers after SIGTERM of the leader: {[round(h, 2) for h in handovers]}")
    # r1 or r2 led first; if r2 took over from r1, it hands over a second time.
    assert first.holder in ("r1", "r2") and 1 <= len(handovers) <= 2

    await ha.rollouts.act(NAME, "resume")
    status = await ha.rollouts.wait_phase(NAME, TERMINAL, timeout=60)
    assert status["phase"] == "Succeeded", status["reason"]
    assert [h["trigger"] for h in status["history"]][1:3] == ["PauseRequested", "ResumeRequested"]
    assert_history_single(status, STEPS, held=True)
    assert status["controller"] in ("r3", "r4")
