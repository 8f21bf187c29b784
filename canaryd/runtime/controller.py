"""The controller: an informer keeping the watch-fed cache, a queue of what is due when, and
rounds that reconcile the due rollouts.

One round: observe every due rollout (concurrently), run the analyses that are due in one
coalesced batch, then for each decide, write the status (fenced by resourceVersion) and act
(`canaryd.runtime.reconcile`). One rollout's trouble is reported on it and never stops the
round (`canaryd.runtime.report`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from kubernetes_asyncio import client

from canaryd import aio
from canaryd.adapters.kube import ObjectRef, RolloutStore
from canaryd.adapters.prometheus import PrometheusClient
from canaryd.adapters.retry import kube_observer
from canaryd.core import reading, shards, targets
from canaryd.core.hooks import pending as hooks_pending
from canaryd.core.settings import Settings
from canaryd.runtime.analysis import Analyzer
from canaryd.runtime.cache import RolloutCache
from canaryd.runtime.hooks import HookRunner
from canaryd.runtime.informer import Informer, Listener
from canaryd.runtime.metrics import DaemonMetrics
from canaryd.runtime.notifier import Notifier
from canaryd.runtime.policies import Policies
from canaryd.runtime.queue import DueQueue
from canaryd.runtime.reconcile import Observed, Reconciler
from canaryd.runtime.report import Reporter
from canaryd.runtime.retention import Retention

log = structlog.get_logger("canaryd.controller")
PARALLEL = 64  # rollouts observed / finished at once in a round
# The write gate: (namespace, target) -> this replica may write for that target now.
Gate = Callable[[str, str], bool]
__all__ = ["Controller", "Gate", "Listener"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Controller:
    def __init__(
        self,
        *,
        api: client.ApiClient,
        settings: Callable[[], Settings],
        prometheus: PrometheusClient,
        metrics: DaemonMetrics,
        identity: str,
        clock: Callable[[], datetime] = utcnow,
        may_write: Gate = lambda _namespace, _target: True,
        sharded: bool = False,
    ) -> None:
        self.settings = settings
        self.prometheus = prometheus
        self.metrics = metrics
        self.identity = identity
        self.clock = clock
        # Leadership gate, checked right before every write: a replica that lost (or cannot
        # renew) its lease stops acting at once, even in the middle of a round. One leader:
        # it ignores the key. Sharded: the lease of the target's shard (`owner`), and each
        # round reconciles only the rollouts this replica may write for.
        self.gate = may_write
        self.sharded = sharded
        # Sharded: a rollout another one blocks, or that waits for one it supersedes, is
        # decided by the owner of that other rollout's shard (one replica decides for every
        # rollout sharing a router object; each replica arbitrates over the same cache).
        self._deferred: dict[str, str] = {}
        self._unowned: set[str] = set()  # live rollouts left to other replicas last round
        self.store = RolloutStore(api)
        self.cache = RolloutCache()
        self.queue = DueQueue()
        self.reporter = Reporter(store=self.store, cache=self.cache, metrics=metrics,
                                 clock=clock, may_write=self.may_write)
        self.hooks = HookRunner(settings=settings, api=api, wake=self.queue.touch,
                                registry=metrics.registry, clock=clock)
        self.reconciler = Reconciler(api=api, store=self.store, cache=self.cache,
                                     reporter=self.reporter, metrics=metrics,
                                     identity=identity, may_write=self.may_write,
                                     hooks=self.hooks)
        self.retention = Retention(store=self.store, cache=self.cache, may_write=self.may_write,
                                   keep=lambda: self.settings().controller.keep_finished)
        self.policies = Policies(api=api, rollouts=self.store, cache=self.cache,
                                 identity=identity, clock=clock, may_write=may_write,
                                 settings=settings, metrics=metrics)
        self._informer = Informer(self.store, self.cache, self._changed)
        self.notifier = Notifier(settings=settings, cache=self.cache, store=self.store,
                                 may_write=self.may_write, registry=metrics.registry,
                                 clock=clock)
        self.listeners.append(self.notifier.changed)
        # A finished rollout is cached as its summary once no notice of it is owed.
        self.cache.keep_whole = self.notifier.owes

    def owner(self, key: str) -> tuple[str, str]:
        """(namespace, target) whose shard decides for rollout `key`."""
        key = self._deferred.get(key, key)
        obj = self.cache.get(key)
        if obj is None:
            namespace, _, name = key.partition("/")
            return namespace, f"rollout:{name}"
        return shards.owner_key(obj)

    def may_write(self, key: str) -> bool:
        """This replica may write for rollout `key` now."""
        return self.gate(*self.owner(key))

    @property
    def synced(self) -> asyncio.Event:
        return self._informer.synced

    @property
    def listeners(self) -> list[Listener]:
        return self._informer.listeners

    def _changed(self, kind: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        """The informer's hook: a new or edited rollout is due now; a deleted one forgotten."""
        key = reading.key(obj)
        if kind == "DELETED":
            self.queue.forget(key)
            self.reporter.forget(key)
            self.reconciler.action_errors.pop(key, None)
            self.hooks.settle(key, None)
            return
        self.retention.changed(kind, obj)
        read = self.cache.read(obj)
        spec = obj.get("spec")
        target = spec.get("target") if isinstance(spec, dict) else None
        self.metrics.set_info(key, target=str(target or "")[:63], phase=read.label,
                              active=read.active)
        if old is None or old.get("spec") != obj.get("spec") or (
            old["metadata"].get("annotations") != obj["metadata"].get("annotations")
        ):
            self.queue.touch(key)

    def _observe(self) -> None:
        """Report every Kubernetes call this task (and its children) makes to /metrics."""
        kube_observer.set(self.metrics.observe_kube)

    # ------------------------------------------------------------------ loops

    async def informer(self, stop: asyncio.Event) -> None:
        """List, then watch; re-list on any error (every replica runs this): the Rollouts,
        and beside them the RolloutPolicies."""
        self._observe()
        policies = asyncio.create_task(self.policies.run(stop), name="policy-informer")
        try:
            await self._informer.run(stop)
        finally:
            policies.cancel()
            await asyncio.gather(policies, return_exceptions=True)

    async def run(self, stop: asyncio.Event) -> None:
        """A single replica's whole job: the informer plus the reconcile loop."""
        informer = asyncio.create_task(self.informer(stop), name="rollout-informer")
        try:
            await self.reconcile_loop(stop)
        finally:
            informer.cancel()
            await asyncio.gather(informer, return_exceptions=True)

    async def reconcile_loop(self, stop: asyncio.Event) -> None:
        """Reconcile rounds until `stop` is set; a round already started runs to its end.

        Needs the informer running beside it (with leader election, every replica runs the
        informer and only the leader runs this loop).
        """
        self._observe()
        await aio.first(self.synced.wait(), stop.wait())
        notifier = asyncio.create_task(self.notifier.run(stop), name="notifier")
        try:
            await self._rounds(stop)
        finally:
            notifier.cancel()
            await asyncio.gather(notifier, return_exceptions=True)

    async def _rounds(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            tick = self.settings().controller.tick
            started = time.monotonic()
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconcile round failed")
            self.metrics.reconcile_seconds.observe(time.monotonic() - started)
            await self.queue.wait(stop, max(self.queue.soonest(tick), 0.05))

    # ------------------------------------------------------------------ one round

    async def round(self) -> None:
        settings = self.settings()
        prom = settings.prometheus
        self.prometheus.reconfigure(prom.url, timeout=prom.timeout, retries=prom.retries)
        self.reporter.phases()
        self.reporter.expire(time.monotonic())
        await self.retention.sweep()
        await self.policies.sweep()
        arbitration = self._arbitrate() if self.sharded else None
        live = []
        for key, obj in self.cache.items():
            if not self._live(obj):  # finished: not due until it changes (else the loop
                self.queue.forget(key)  # would never wait)
            elif arbitration is None:
                live.append(key)
            elif self.may_write(key):
                if key in self._unowned:  # a shard taken, or another rollout's done: now
                    self._unowned.discard(key)
                    self.queue.touch(key)
                live.append(key)
            else:  # another replica's: looked at again when it is this one's
                self._unowned.add(key)
                self.queue.forget(key)
        self._unowned.intersection_update(self.cache)
        due = self.queue.take(live)
        if not due:
            return
        try:
            await self._reconcile(due, settings, arbitration)
        finally:  # whatever happened to the round, nothing stays taken
            for key in due:
                if self.queue.busy(key):
                    self.queue.done(key, 1.0)
        self.reporter.phases()

    def _live(self, obj: dict[str, Any]) -> bool:
        """Active, or finished with a hook call still out (postRollout, rollback)."""
        read = self.cache.read(obj)
        return read.active or (read.status is not None and hooks_pending(read.status))

    def _arbitrate(self) -> dict[str, targets.Arbitration]:
        arbitration = targets.arbitrate(self.cache.entry(obj) for obj in self.cache.values())
        if self.sharded:
            self._deferred = {key: other for key, a in arbitration.items()
                              if (other := a.blocking or a.waiting_for) is not None}
        return arbitration

    async def _reconcile(self, due: list[str], settings: Settings,
                         arbitration: dict[str, targets.Arbitration] | None = None) -> None:
        if arbitration is None:
            arbitration = self._arbitrate()
        sem = asyncio.Semaphore(PARALLEL)
        tick = settings.controller.tick

        async def observe(key: str) -> Observed | None:
            async with sem:
                try:
                    seen = await self.reconciler.observe(key, settings, arbitration.get(key))
                except Exception as exc:  # one broken rollout must not stall the others
                    log.exception("preparing rollout failed", rollout=key)
                    await self.reporter.report_error(key, exc)
                    seen = 5.0
                if isinstance(seen, float):
                    self.queue.done(key, seen)
                    return None
                return seen

        works = [w for w in await asyncio.gather(*(observe(k) for k in due)) if w is not None]
        works = await self._analyse(works, settings)

        async def finish(w: Observed) -> None:
            async with sem:
                try:
                    # Decide with the time the decision is made: the observations may have
                    # taken a while (a slow Prometheus), and a step starts when it starts.
                    after = await self.reconciler.finish(w, self.clock(), tick)
                except Exception as exc:
                    log.exception("reconciling rollout failed", rollout=w.key)
                    await self.reporter.report_error(w.key, exc)
                    after = 1.0
                self.queue.done(w.key, after)

        await asyncio.gather(*(finish(w) for w in works))

    async def _analyse(self, works: list[Observed], settings: Settings) -> list[Observed]:
        """The analyses due now, in one batch of coalesced queries."""
        now = self.clock()
        jobs = [job for w in works if (job := w.job(now)) is not None]
        if not jobs:
            return works
        analyzer = Analyzer(prometheus=self.prometheus, settings=settings)
        # On settled data: the last scrape before `now` may still be under way.
        at = now - timedelta(seconds=settings.prometheus.query_offset)
        results = await analyzer.run(jobs, at)
        self.metrics.prometheus_queries_per_round.set(analyzer.queries_last_round)
        self.metrics.prometheus_queries.inc(analyzer.queries_last_round)
        self.metrics.analysis_rounds.inc()
        self.metrics.analysed_rollouts.inc(len(jobs))
        return [w.analysed(results[w.key], at) if w.key in results else w for w in works]

    # ------------------------------------------------------------------ leadership

    async def claim(self, select: Gate | None = None) -> int:
        """Fence older writers: rewrite every active rollout's status under this identity.

        Called when this replica becomes leader, or (`select`: the targets of one shard,
        while this replica holds it) when it takes a shard. Each write bumps the
        resourceVersion, so a paused former leader's in-flight write (made from an older
        read) gets 409.
        """
        count = 0
        self.retention.due = True
        for key, obj in list(self.cache.items()):
            if select is not None and not select(*self.owner(key)):
                continue
            self.queue.touch(key)
            read = self.cache.read(obj)
            allowed = select(*self.owner(key)) if select is not None else self.may_write(key)
            # An unreadable status is not claimed: canaryd writes nothing of it but a report.
            if read.status is None or read.terminal or not allowed:
                continue
            try:
                meta = obj["metadata"]
                body = {**(obj.get("status") or {}), "controller": self.identity,
                        "claimedAt": self.clock().isoformat()}
                self.cache.put(await self.store.write_status(
                    ObjectRef(meta["namespace"], meta["name"]), body, meta["resourceVersion"]
                ))
                count += 1
            except Exception as exc:  # one object never stops a new leader from leading
                log.info("claim skipped", rollout=key, error=type(exc).__name__)
        return count

