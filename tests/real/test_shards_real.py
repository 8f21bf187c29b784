"""Shards on real Leases: `canaryd serve --shards 8` processes against the real control plane.

Eight targets (one per shard) each get an application and a rollout of three paused steps.
Observed through the API only (the shard Leases' holderIdentity, the rollouts' status) and
the replicas' own logs:

- three replicas spread the eight shards 3/3/2, every rollout is driven by the holder of
  its shard; a fourth joining makes it 2/2/2/2 while the rollouts go on; SIGKILL of one
  hands its shards to the others within the lease duration, and every rollout still
  finishes with every step exactly once (and every transition logged by one replica);
- SIGSTOP of one past its lease: its shards are retaken and claimed by the others; once it
  is resumed, no rollout status it writes lands before it holds that rollout's shard
  again (its renew deadline has passed: it stops at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd.core import shards as core
from canaryd.runtime.leader import JITTER
from canaryd.sandbox.realkube import RealKube
from canaryd.sandbox.runner import Sandbox
from canaryd.sandbox.testing import eventually
from tests.ha.cluster import NS, TERMINAL, Cluster, Rollouts, assert_history_single

SHARDS = 8
TIMING = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.5}
LEASE, RETRY = TIMING["lease_duration"], TIMING["retry_period"]
SLACK = 1.5  # process scheduling and request latency on a loaded two-core machine
STEPS = 3


def targets(prefix: str) -> list[str]:
    """One target per shard: the first name <prefix><i> that lands on it."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < SHARDS:
        found.setdefault(core.shard_of(NS, f"{prefix}{i}", SHARDS), f"{prefix}{i}")
        i += 1
    return [found[s] for s in range(SHARDS)]


async def create_app(api: client.ApiClient, name: str) -> None:
    core_api, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), \
        client.CustomObjectsApi(api)
    labels = {"app": name}

    def deployment(track: str) -> dict[str, Any]:
        return {"metadata": {"name": f"{name}-{track}", "namespace": NS},
                "spec": {"replicas": 1, "selector": {"matchLabels": {**labels, "track": track}},
                         "template": {"metadata": {"labels": {**labels, "track": track}},
                                      "spec": {"containers": [{"name": "app", "image": "x"}]}}}}

    await core_api.create_namespaced_service(NS, {
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": labels, "ports": [{"port": 80}]}})
    for track in ("stable", "canary"):
        await apps.create_namespaced_deployment(NS, deployment(track))
    await custom.create_namespaced_custom_object(
        "networking.istio.io", "v1", NS, "destinationrules",
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
         "metadata": {"name": name, "namespace": NS},
         "spec": {"host": name, "subsets": [{"name": "stable", "labels": {"track": "stable"}},
                                            {"name": "canary", "labels": {"track": "canary"}}]}})
    await custom.create_namespaced_custom_object(
        "networking.istio.io", "v1", NS, "virtualservices",
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": name, "namespace": NS},
         "spec": {"hosts": [name], "http": [{"name": "primary", "route": [
             {"destination": {"host": name, "subset": "stable"}, "weight": 100},
             {"destination": {"host": name, "subset": "canary"}, "weight": 0}]}]}})


def rollout(target: str, pause: str) -> dict[str, Any]:
    return {
        "apiVersion": "canaryd.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": f"{target}-v2", "namespace": NS},
        "spec": {
            "target": target, "version": "v2",
            "router": {"istio": {"virtualService": target, "route": "primary",
                                 "stable": {"host": target, "subset": "stable"},
                                 "canary": {"host": target, "subset": "canary"}}},
            "workloads": {"stable": f"{target}-stable", "canary": f"{target}-canary"},
            "plan": {"steps": [{"weight": w, "pause": pause, "analysis": False}
                               for w in (10, 30, 60)]},
        },
    }


@dataclass
class ShardWatch:
    """Lists the group's Leases by label every 50 ms; keeps each change of a shard's holder
    with the time it was seen (the test process's monotonic clock)."""

    api: client.ApiClient
    group: str
    changes: list[tuple[float, int, str]] = field(default_factory=list)
    now: dict[int, str] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ShardWatch:
        self._task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _poll(self) -> None:
        custom = client.CustomObjectsApi(self.api)
        while True:
            with contextlib.suppress(ApiException, aiohttp.ClientError, TimeoutError):
                listed = await custom.list_namespaced_custom_object(
                    "coordination.k8s.io", "v1", "default", "leases",
                    label_selector=f"{core.GROUP_LABEL}={self.group}", _request_timeout=2)
                seen = time.monotonic()
                for item in listed["items"]:
                    shard = core.lease_shard(self.group, item["metadata"]["name"], SHARDS)
                    if shard is None:
                        continue
                    holder = str(item["spec"].get("holderIdentity") or "")
                    if self.now.get(shard) != holder:
                        self.now[shard] = holder
                        self.changes.append((seen, shard, holder))
            await asyncio.sleep(0.05)

    def spread(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for holder in self.now.values():
            if holder:
                out[holder] = out.get(holder, 0) + 1
        return out

    async def wait_spread(self, expected: list[int], *, among: set[str],
                          timeout: float) -> dict[str, int]:
        async def probe() -> dict[str, int] | None:
            spread = self.spread()
            ok = sorted(spread.values()) == expected and set(spread) == among
            return spread if ok and len(self.now) == SHARDS else None

        return await eventually(probe, timeout=timeout, what=f"shards spread {expected} "
                                f"over {sorted(among)}", every=0.05)

    def shards_of(self, holder: str) -> list[int]:
        return sorted(s for s, h in self.now.items() if h == holder)


@pytest.fixture
async def sandbox(real_kube: RealKube) -> AsyncIterator[Sandbox]:
    async with Sandbox(rps=50, kube=real_kube) as sb:
        yield sb


@dataclass
class Env:
    api: client.ApiClient
    cluster: Cluster
    rollouts: Rollouts
    leases: ShardWatch
    targets: list[str]


@contextlib.asynccontextmanager
async def environment(sandbox: Sandbox, workdir: Path, name: str) -> AsyncIterator[Env]:
    """Replicas sharing the Leases of group `name`, and one application per shard (targets
    named after it: each test has its own, on the module's control plane)."""
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    cluster = Cluster(server=None, kubeconfig=sandbox.kubeconfig, workdir=workdir,
                      prometheus_url=sandbox.prometheus_url, lease_name=name,
                      timing=dict(TIMING), extra_args=["--shards", str(SHARDS)])
    chosen = targets(name.replace("-", ""))
    try:
        await asyncio.gather(*(create_app(api, t) for t in chosen))
        async with ShardWatch(api, name) as watch:
            yield Env(api, cluster, Rollouts(api), watch, chosen)
    finally:
        await cluster.close()
        await api.close()


def transitions_logged(cluster: Cluster) -> list[tuple[str, str, str, Any]]:
    """(replica, rollout, trigger, weight) of every transition each replica logged."""
    out = []
    for replica in cluster.replicas.values():
        for line in replica.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and event.get("event") == "transition":
                    out.append((replica.name, str(event.get("rollout")),
                                str(event.get("trigger")), event.get("weight")))
    return out


def assert_one_writer_per_transition(cluster: Cluster) -> None:
    logged = transitions_logged(cluster)
    assert logged, "no transition logged"
    seen: dict[tuple[str, str, Any], str] = {}
    for replica, key, trigger, weight in logged:
        other = seen.setdefault((key, trigger, weight), replica)
        assert other == replica, f"{key} {trigger} (weight {weight}) by {other} and {replica}"
    assert len(logged) == len(seen), "a replica logged a transition twice"


async def wait_all_progressing(env: Env, timeout: float) -> None:
    async def probe() -> bool:
        states = [await env.rollouts.status(f"{t}-v2") for t in env.targets]
        return all(s.get("phase") == "Progressing" for s in states)

    await eventually(probe, timeout=timeout, what="every rollout progressing", every=0.2)


async def test_shards_spread_rebalance_and_fail_over_on_real_leases(
    sandbox: Sandbox, tmp_path: Path,
) -> None:
    async with environment(sandbox, tmp_path, "shards-a") as env:
        await spread_join_and_kill(env)


async def spread_join_and_kill(env: Env) -> None:
    await env.cluster.start("r1", "r2", "r3")
    spread = await env.leases.wait_spread([2, 3, 3], among={"r1", "r2", "r3"}, timeout=30)
    print(f"3 replicas, {SHARDS} shards: {dict(sorted(spread.items()))}")
    for t in env.targets:
        await env.rollouts.create(rollout(t, "6s"))
    await wait_all_progressing(env, timeout=60)
    # Each rollout is claimed and driven by its shard's holder.
    for t in env.targets:
        status = await env.rollouts.status(f"{t}-v2")
        assert status["controller"] == env.leases.now[core.shard_of(NS, t, SHARDS)], t

    joined = time.monotonic()
    await env.cluster.add("r4")
    spread = await env.leases.wait_spread([2, 2, 2, 2], among={"r1", "r2", "r3", "r4"},
                                          timeout=30)
    print(f"a 4th joined: {dict(sorted(spread.items()))} after {time.monotonic() - joined:.1f}s")

    victim = "r2"
    lost = env.leases.shards_of(victim)
    env.cluster.replicas[victim].signal(signal.SIGKILL)
    killed = time.monotonic()

    async def retaken() -> float | None:
        if any(env.leases.now.get(s) in ("", victim) for s in lost):
            return None
        return max(t for t, s, h in env.leases.changes if s in lost and h != victim)

    at = await eventually(retaken, timeout=LEASE + 15, what="the killed replica's shards "
                          "retaken", every=0.05)
    failover = at - killed
    print(f"shards {lost} of a SIGKILLed replica retaken after {failover:.2f}s")
    assert failover <= LEASE + 2 * RETRY * JITTER + SLACK, failover
    assert set(env.leases.spread()) == {"r1", "r3", "r4"}

    for t in env.targets:
        status = await env.rollouts.wait_phase(f"{t}-v2", TERMINAL, timeout=120)
        assert status["phase"] == "Succeeded", (t, status.get("reason"))
        assert_history_single(status, STEPS)
        holder = env.leases.now[core.shard_of(NS, t, SHARDS)]
        if core.shard_of(NS, t, SHARDS) in lost:
            assert status["controller"] == holder, (t, status["controller"], holder)
    assert_one_writer_per_transition(env.cluster)


@dataclass
class RolloutWatch:
    """Lists the rollouts every 50 ms; keeps each change of status.controller and
    status.claimedAt seen."""

    api: client.ApiClient
    changes: list[tuple[float, str, str, str]] = field(default_factory=list)
    now: dict[str, str] = field(default_factory=dict)
    claims: dict[str, str] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RolloutWatch:
        self._task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _poll(self) -> None:
        custom = client.CustomObjectsApi(self.api)
        while True:
            with contextlib.suppress(ApiException, aiohttp.ClientError, TimeoutError):
                listed = await custom.list_namespaced_custom_object(
                    "canaryd.io", "v1alpha1", NS, "rollouts", _request_timeout=2)
                seen = time.monotonic()
                for item in listed["items"]:
                    name = item["metadata"]["name"]
                    status = item.get("status") or {}
                    writer = str(status.get("controller") or "")
                    claimed = str(status.get("claimedAt") or "")
                    if (self.now.get(name), self.claims.get(name)) != (writer, claimed):
                        self.now[name], self.claims[name] = writer, claimed
                        self.changes.append((seen, name, writer, claimed))
            await asyncio.sleep(0.05)


async def test_a_stopped_replica_that_resumes_writes_nothing_before_it_leads_again(
    sandbox: Sandbox, tmp_path: Path,
) -> None:
    async with environment(sandbox, tmp_path, "shards-b") as env:
        await stop_and_resume(env)


async def stop_and_resume(env: Env) -> None:
    await env.cluster.start("r1", "r2", "r3")
    await env.leases.wait_spread([2, 3, 3], among={"r1", "r2", "r3"}, timeout=30)
    for t in env.targets:
        await env.rollouts.create(rollout(t, "5s"))
    await wait_all_progressing(env, timeout=60)
    victim = "r1"
    lost = env.leases.shards_of(victim)
    theirs = [t for t in env.targets if core.shard_of(NS, t, SHARDS) in lost]
    async with RolloutWatch(env.api) as writes:
        env.cluster.replicas[victim].signal(signal.SIGSTOP)
        stopped = time.monotonic()

        async def claimed_by_others() -> bool:
            return all(env.leases.now.get(core.shard_of(NS, t, SHARDS)) not in ("", victim)
                       and writes.now.get(f"{t}-v2") not in ("", victim) for t in theirs)

        await eventually(claimed_by_others, timeout=LEASE + 15,
                         what="its shards retaken and their rollouts claimed", every=0.05)
        print(f"shards {lost} of a SIGSTOPped replica retaken and claimed after "
              f"{time.monotonic() - stopped:.2f}s")
        env.cluster.replicas[victim].signal(signal.SIGCONT)
        resumed, resumed_wall = time.monotonic(), datetime.now(UTC)
        # Back as a member, it gets a fair share again.
        await env.leases.wait_spread([2, 3, 3], among={"r1", "r2", "r3"}, timeout=30)
        for t in env.targets:
            status = await env.rollouts.wait_phase(f"{t}-v2", TERMINAL, timeout=120)
            assert status["phase"] == "Succeeded", (t, status.get("reason"))
            assert_history_single(status, STEPS)
    # Once resumed it takes shards back (a fair share again) and claims their rollouts
    # first, but no status it decided before it was stopped lands: every status seen with
    # its name after the resume carries a claim it made after the resume (a stale write
    # would carry the claim it had made before; same machine, same clock).
    mine = [(seen, name, claimed) for seen, name, writer, claimed in writes.changes
            if writer == victim and seen >= resumed]
    print(f"after resuming, {victim} wrote {len(mine)} statuses, each under a new claim")
    for seen, name, claimed in mine:
        assert claimed and datetime.fromisoformat(claimed) >= resumed_wall, (
            f"{name}: a status of {victim} landed {seen - resumed:.2f}s after it resumed "
            f"under its claim of {claimed} (resumed {resumed_wall.isoformat()})")
        shard = core.shard_of(NS, name.removesuffix("-v2"), SHARDS)
        assert any(s == shard and h == victim and t >= resumed
                   for t, s, h in env.leases.changes), f"{name}: its shard not retaken"
    assert_one_writer_per_transition(env.cluster)
