"""Shard leadership: this replica's part of the rollouts, with `--shards N` (N > 1).

Targets are split over N shards (`canaryd.core.shards.shard_of`), each led through its own
Lease `<lease>-shard-<i>` by a `LeaderElector` (client-go semantics, as the single leader).
Every replica also holds a member Lease `<lease>-member-<hash of identity>` of its own, so
the others count it before it holds any shard. All of them carry the label
`canaryd.io/lease-group=<lease>`.

Every retry period (jittered) the manager renews its member Lease, lists the group's Leases
(one request), records them in `core.shards.Observations` (judged on the local clock, as the
election does) and asks `core.shards.plan` what to take and what to give up. A shard it
takes is renewed by the elector's own `hold` loop from then on, independent of the listing;
a shard it gives up is released (holder "", leaseDurationSeconds 1) so its new owner takes
it at its next try. A shard becomes writable only after `on_acquired` (the controller's
claim, fencing a former owner's writes) has run for it.

`may_write(namespace, target)`: the elector of the target's shard leads now (within its
renew deadline) and the claim is done. Nothing raises out of `run` but cancellation; a
failed listing is logged and the shards held are kept (renewed by their own loops).
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from kubernetes_asyncio import client

from canaryd import aio
from canaryd.adapters.errors import KubeError, NotFound, translated
from canaryd.core import shards as core
from canaryd.runtime.leader import (
    GROUP,
    JITTER,
    PLURAL,
    VERSION,
    LeaderElector,
    LeaseRef,
    LeaseTiming,
)
from canaryd.runtime.metrics import DaemonMetrics

log = structlog.get_logger("canaryd.shards")


@dataclass
class _Held:
    stop: asyncio.Event
    renew: asyncio.Task[None]
    claim: asyncio.Task[None] | None = None


class ShardManager:
    def __init__(
        self,
        *,
        api: client.ApiClient,
        namespace: str,
        lease_name: str,
        identity: str,
        shards: int,
        timing: LeaseTiming | None = None,
        metrics: DaemonMetrics | None = None,
        on_acquired: Callable[[int], Awaitable[object]] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if not identity:
            raise ValueError("a shard member identity must not be empty")
        self.shards = core.check_shards(shards)
        self.group = core.check_group(lease_name)
        self.namespace, self.identity = namespace, identity
        self.timing = timing or LeaseTiming()
        self.metrics, self.on_acquired = metrics, on_acquired
        self.monotonic = monotonic
        self.rng = rng or random.Random()  # noqa: S311 (jitter only spreads retries out)
        self.custom = client.CustomObjectsApi(api)
        self.observations = core.Observations()
        self.member = LeaderElector(
            api=api, lease=LeaseRef(namespace, core.member_lease_name(lease_name, identity)),
            identity=identity, timing=self.timing, monotonic=monotonic,
            labels=self._labels("member"))
        self.electors = [
            LeaderElector(api=api, lease=LeaseRef(namespace, core.shard_lease_name(lease_name, i)),
                          identity=identity, timing=self.timing, monotonic=monotonic,
                          labels=self._labels("shard"),
                          on_change=functools.partial(self._changed, i))
            for i in range(self.shards)
        ]
        self._held: dict[int, _Held] = {}
        self._ready: set[int] = set()  # held and claimed: writable
        self._releasing: set[int] = set()
        self.last_plan: core.Plan | None = None
        self._listings = 0  # successful listings so far
        self.log = log.bind(identity=identity, lease_group=lease_name, shards=self.shards)
        if metrics is not None:
            metrics.shards_held.set_function(lambda: float(len(self.held())))

    def _labels(self, role: str) -> dict[str, str]:
        return {core.GROUP_LABEL: self.group, core.ROLE_LABEL: role}

    # ------------------------------------------------------------------ the gate

    def shard(self, namespace: str, target: str) -> int:
        return core.shard_of(namespace, target, self.shards)

    def holds(self, namespace: str, target: str) -> bool:
        """This replica leads the target's shard now (the claim may not be done yet)."""
        return self.electors[self.shard(namespace, target)].is_leader()

    def may_write(self, namespace: str, target: str) -> bool:
        """This replica leads the target's shard now and has claimed its rollouts."""
        shard = self.shard(namespace, target)
        return shard in self._ready and self.electors[shard].is_leader()

    def held(self) -> list[int]:
        """The shards this replica leads now."""
        return [i for i, e in enumerate(self.electors) if e.is_leader()]

    def leading_any(self) -> bool:
        return any(e.is_leader() for e in self.electors)

    def _changed(self, shard: int, leading: bool) -> None:
        if leading:
            change = "acquired"
        else:
            self._ready.discard(shard)
            change = "released" if shard in self._releasing else "lost"
        self.log.info(f"shard {change}", shard=shard)
        if self.metrics is not None:
            self.metrics.shard_transitions.labels(change=change).inc()

    # ------------------------------------------------------------------ the loop

    async def run(self, stop: asyncio.Event) -> None:
        """Take, keep and give up shards until `stop`; then release every one held."""
        try:
            while not stop.is_set():
                try:
                    await self.step()
                except asyncio.CancelledError:
                    raise
                except Exception:  # one bad answer never ends the membership
                    self.log.exception("shard planning failed")
                if await aio.sleep_or_stop(stop, self._delay()):
                    break
        finally:
            await asyncio.shield(asyncio.ensure_future(self.release_all()))

    def _delay(self) -> float:
        """A retry period (jittered), or less: just past the soonest expiry of a shard
        Lease someone else holds as observed (a dead replica's shards are looked at as soon
        as they are free, not up to a retry later)."""
        delay = self.timing.retry_period * self.rng.uniform(1.0, JITTER)
        now = self.monotonic()
        for i in range(self.shards):
            if i in self._held:
                continue
            until = self.observations.expiry(core.shard_lease_name(self.group, i)) - now
            if 0 < until < delay:
                delay = until + 0.001
        return delay

    async def step(self) -> core.Plan | None:
        """One look at the group's Leases, and what it implies: the plan acted on (None when
        the listing failed: nothing taken or given up then)."""
        self._reap()
        _, listed = await asyncio.gather(self.member.try_acquire(), self._list())
        if listed is None:
            return None
        now = self.monotonic()
        names = []
        for item in listed:
            name = str((item.get("metadata") or {}).get("name", ""))
            names.append(name)
            self.observations.observe(name, item.get("spec") or {}, now)
            shard = core.lease_shard(self.group, name, self.shards)
            if shard is not None and shard not in self._held:
                self.electors[shard].observe(item, now)
        self.observations.forget_missing(names)
        mine = set(self._held)
        holders: dict[int, str] = {}
        for i in range(self.shards):
            holder = self.observations.holder(core.shard_lease_name(self.group, i), now)
            # A record naming this identity that it does not hold (a previous process with
            # the same name) counts as free: its elector renews it as its own.
            holders[i] = self.identity if i in mine else (
                "" if holder == self.identity else holder)
        members = [self.observations.holder(n, now) for n in self.observations.seen
                   if core.is_member_lease(self.group, n)]
        decided = core.plan(me=self.identity, shards=self.shards, holders=holders,
                            members=members, mine=mine)
        self._listings += 1
        if self._listings == 1:
            # The first look only registers this member: replicas started together then
            # count each other before any takes a share (fewer lost races, no surplus to
            # give back a moment later).
            decided = core.Plan(take=(), release=(), replicas=decided.replicas,
                                share=decided.share)
        self.last_plan = decided
        for shard in decided.release:
            await self._release(shard)
        await asyncio.gather(*(self._take(s) for s in decided.take))
        return decided

    async def _list(self) -> list[dict[str, Any]] | None:
        budget = self.timing.renew_deadline / 2
        try:
            async with asyncio.timeout(budget):
                result: dict[str, Any] = await translated(
                    f"list leases {self.namespace} {core.GROUP_LABEL}={self.group}",
                    self.custom.list_namespaced_custom_object(
                        GROUP, VERSION, self.namespace, PLURAL,
                        label_selector=f"{core.GROUP_LABEL}={self.group}",
                        _request_timeout=budget,
                    ),
                )
        except KubeError as exc:
            self.log.warning("shard leases not listed", status=exc.status,
                             reason=f"{exc.reason}"[:200])
            return None
        except Exception as exc:  # a timeout, a reset, a bad answer: next period
            self.log.warning("shard leases not listed",
                             error=f"{type(exc).__name__}: {exc}"[:200])
            return None
        items = result.get("items")
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []

    def _reap(self) -> None:
        """Forget the shards whose renewal loop ended (leadership lost)."""
        for shard, held in list(self._held.items()):
            if held.renew.done():
                del self._held[shard]
                if held.claim is not None:
                    held.claim.cancel()
                self._ready.discard(shard)

    async def _take(self, shard: int) -> None:
        elector = self.electors[shard]
        if not await elector.try_acquire():
            return
        stop = asyncio.Event()
        held = _Held(stop, asyncio.create_task(elector.hold(stop), name=f"shard-{shard}"))
        self._held[shard] = held
        held.claim = asyncio.create_task(self._claim(shard), name=f"claim-shard-{shard}")

    async def _claim(self, shard: int) -> None:
        try:
            if self.on_acquired is not None:
                await self.on_acquired(shard)
        except asyncio.CancelledError:
            raise
        except Exception:  # the claim is per object and best effort; the shard is held
            self.log.exception("claim after taking a shard failed", shard=shard)
        if self.electors[shard].is_leader():
            self._ready.add(shard)
            self.log.info("shard writable", shard=shard)

    async def _release(self, shard: int) -> None:
        held = self._held.pop(shard, None)
        self._ready.discard(shard)
        if held is None:
            return
        held.stop.set()
        if held.claim is not None:
            held.claim.cancel()
        await asyncio.gather(held.renew, *([held.claim] if held.claim else []),
                             return_exceptions=True)
        self._releasing.add(shard)
        try:
            await self.electors[shard].release()
        finally:
            self._releasing.discard(shard)

    async def release_all(self) -> None:
        """Leave the group and give up every shard (clean shutdown). Leaving first: the
        others, no longer counting this replica, take every released shard at their next
        try instead of stopping at a share that still counted it."""
        self._ready.clear()
        await self._leave()
        await asyncio.gather(*(self._release(s) for s in list(self._held)),
                             return_exceptions=True)

    async def _leave(self) -> None:
        """Delete the member Lease: a replica that is gone is not counted any more (and its
        Lease does not pile up under a new pod name on every restart)."""
        budget = self.timing.renew_deadline / 2
        name = self.member.lease.name
        try:
            async with asyncio.timeout(budget):
                await translated(f"delete lease {self.member.lease}",
                                 self.custom.delete_namespaced_custom_object(
                                     GROUP, VERSION, self.namespace, PLURAL, name,
                                     _request_timeout=budget))
        except NotFound:
            pass
        except Exception as exc:  # shutting down: report, never raise
            self.log.info("member lease not deleted", error=f"{type(exc).__name__}: {exc}"[:200])
            return
        self.log.info("left the shard group")
