"""The controller: keeps a watch-fed cache of Rollouts and reconciles the ones that are due.

One round: gather observations for every due rollout (concurrently), run the analyses that
are due in one coalesced batch, call the pure `decide` for each, write the new status
(fenced by resourceVersion), then apply its router actions. Status first, actions second:
a crash in between leaves a recorded intent the next round converges to.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from kubernetes_asyncio import client
from pydantic import ValidationError

from canaryd.adapters.errors import Conflict, KubeError
from canaryd.adapters.kube import ObjectRef, RolloutStore, Workloads
from canaryd.adapters.prometheus import PrometheusClient
from canaryd.adapters.retry import kube_observer
from canaryd.adapters.routers import RouterError, make_router
from canaryd.config import Settings
from canaryd.core import conditions, machine, plan, reading, targets
from canaryd.core.model import (
    ACTION_ANNOTATION,
    RETIRED_STATUS_FIELDS,
    Phase,
    RolloutSpec,
    RolloutStatus,
)
from canaryd.core.transitions import Trigger
from canaryd.runtime.analysis import Analyzer, Job
from canaryd.runtime.cache import RolloutCache
from canaryd.runtime.metrics import RETENTION, DaemonMetrics

log = structlog.get_logger("canaryd.controller")
Listener = Callable[[str, dict[str, Any]], None]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _validation_message(exc: ValidationError) -> str:
    return "invalid rollout: " + reading.errors_text(exc, "spec")


@dataclass
class _Work:
    key: str
    raw: dict[str, Any]
    status: RolloutStatus
    ctx: machine.Context
    spec: RolloutSpec | None
    obs: dict[str, Any] = field(default_factory=dict)


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
        may_write: Callable[[], bool] = lambda: True,
    ) -> None:
        self.api = api
        self.settings = settings
        self.prometheus = prometheus
        self.metrics = metrics
        self.identity = identity
        self.clock = clock
        # Leadership gate, checked right before every write: a replica that lost (or cannot
        # renew) its lease stops acting at once, even in the middle of a round.
        self.may_write = may_write
        self.store = RolloutStore(api)
        self.workloads = Workloads(api)
        self.cache = RolloutCache()
        self.synced = asyncio.Event()
        self.listeners: list[Listener] = []
        self._due: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._step_started: dict[str, float] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._degraded: dict[str, str] = {}  # rollout -> the reason its gauge shows
        self._finished: dict[str, float] = {}  # rollout -> when it was first seen finished
        self._reported: dict[str, conditions.Problem] = {}

    # ------------------------------------------------------------------ cache (informer)

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        key = reading.key(obj)
        if kind == "DELETED":
            self.cache.drop(key)
            self._due.pop(key, None)
            self._reported.pop(key, None)
            self._finished.pop(key, None)
            self._set_degraded(key, None)
            self.metrics.forget(key)
        else:
            old = self.cache.get(key)
            self.cache.put(obj)
            read = self.cache.read(obj)
            spec = obj.get("spec")
            target = spec.get("target") if isinstance(spec, dict) else None
            self.metrics.set_info(key, target=str(target or "")[:63], phase=read.label,
                                  active=read.active)
            if old is None or old.get("spec") != obj.get("spec") or (
                old["metadata"].get("annotations") != obj["metadata"].get("annotations")
            ):
                self._due[key] = 0.0
                self._wake.set()
        for listener in self.listeners:
            listener(kind, obj)

    async def informer(self, stop: asyncio.Event) -> None:
        """List, then watch from the list's resourceVersion; re-list on 410 or any error."""
        self._observe()
        backoff = 0.2
        while not stop.is_set():
            try:
                items, rv = await self.store.list()
                seen = set()
                for obj in items:
                    seen.add(reading.key(obj))
                    self._apply("ADDED", obj)
                for gone in set(self.cache) - seen:
                    self._apply("DELETED", self.cache[gone])
                self.synced.set()
                backoff = 0.2
                while not stop.is_set():
                    async for kind, obj in self.store.watch(rv):
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if kind != "BOOKMARK":
                            self._apply(kind, obj)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: back off, then re-list
                status = getattr(exc, "status", None)
                log.info("rollout watch restarting", error=type(exc).__name__, status=status)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                backoff = min(backoff * 2, 5.0)

    # ------------------------------------------------------------------ reconcile loop

    def _observe(self) -> None:
        """Report every Kubernetes call this task (and its children) makes to /metrics."""
        kube_observer.set(self.metrics.observe_kube)

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
        synced = asyncio.create_task(self.synced.wait())
        halted = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({synced, halted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            synced.cancel()
            halted.cancel()
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
            self._wake.clear()
            soonest = min((d for d in self._due.values()), default=time.monotonic() + tick)
            delay = min(max(soonest - time.monotonic(), 0.05), tick)
            wake = asyncio.create_task(self._wake.wait())
            halt = asyncio.create_task(stop.wait())
            await asyncio.wait({wake, halt}, timeout=delay,
                               return_when=asyncio.FIRST_COMPLETED)
            for task in (wake, halt):
                task.cancel()

    def _entries(self) -> list[targets.Entry]:
        return [reading.entry(obj, self.cache.read(obj)) for obj in self.cache.values()]

    async def round(self) -> None:
        settings = self.settings()
        prom = settings.prometheus
        self.prometheus.reconfigure(prom.url, timeout=prom.timeout, retries=prom.retries)
        mono = time.monotonic()
        now = self.clock()
        due = [k for k, obj in self.cache.items()
               if self._due.get(k, 0.0) <= mono and self.cache.read(obj).active]
        self._update_phase_gauge()
        self._expire_series(mono)
        if not due:
            return
        arbitration = targets.arbitrate(self._entries())
        sem = asyncio.Semaphore(64)

        async def prepare(key: str) -> _Work | None:
            async with sem:
                try:
                    return await self._prepare(key, settings, arbitration.get(key))
                except Exception as exc:  # one broken rollout must not stall the others
                    log.exception("preparing rollout failed", rollout=key)
                    self._due[key] = time.monotonic() + 5.0
                    await self._report_error(key, exc)
                    return None

        works = [w for w in await asyncio.gather(*(prepare(k) for k in due)) if w is not None]
        jobs = []
        for w in works:
            if w.spec is not None and machine.analysis_due(w.ctx, w.status, now):
                assert w.ctx.analysis is not None
                weights = w.status.weights
                jobs.append(Job(rollout=w.key, namespace=w.raw["metadata"]["namespace"],
                                stable=w.spec.workloads.stable, canary=w.spec.workloads.canary,
                                analysis=w.ctx.analysis, step=w.status.step_index,
                                canary_share=weights.canary / 100 if weights else None,
                                evidence=tuple(w.status.evidence)))
        if jobs:
            analyzer = Analyzer(prometheus=self.prometheus, settings=settings)
            results = await analyzer.run(jobs, now)
            self.metrics.prometheus_queries_per_round.set(analyzer.queries_last_round)
            self.metrics.prometheus_queries.inc(analyzer.queries_last_round)
            self.metrics.analysis_rounds.inc()
            self.metrics.analysed_rollouts.inc(len(jobs))
            for w in works:
                if w.key in results:
                    w.obs["analysis"] = results[w.key]
                    w.obs["analysis_time"] = now

        async def finish(w: _Work) -> None:
            async with sem:
                try:
                    # Decide with the time the decision is made: the observations may have
                    # taken a while (a slow Prometheus), and a step starts when it starts.
                    await self._finish(w, self.clock())
                except Exception as exc:
                    log.exception("reconciling rollout failed", rollout=w.key)
                    self._due[w.key] = time.monotonic() + 1.0
                    await self._report_error(w.key, exc)

        await asyncio.gather(*(finish(w) for w in works))
        self._update_phase_gauge()

    async def claim(self) -> int:
        """Fence older writers: rewrite every active rollout's status under this identity.

        Called when this replica becomes leader. Each write bumps the resourceVersion, so a
        paused former leader's in-flight write (made from an older read) gets 409.
        """
        count = 0
        for key, obj in list(self.cache.items()):
            self._due[key] = 0.0
            read = self.cache.read(obj)
            # An unreadable status is not claimed: canaryd writes nothing of it but a report.
            if read.status is None or read.terminal or not self.may_write():
                continue
            try:
                meta = obj["metadata"]
                claimed = self.clock().isoformat()
                body = {**(obj.get("status") or {}), "controller": self.identity,
                        "claimedAt": claimed}
                self.cache.put(await self.store.write_status(
                    ObjectRef(meta["namespace"], meta["name"]), body, meta["resourceVersion"]
                ))
                count += 1
            except Exception as exc:  # one object never stops a new leader from leading
                log.info("claim skipped", rollout=key, error=type(exc).__name__)
        return count

    def _expire_series(self, mono: float) -> None:
        """A finished rollout's weight and check series go RETENTION seconds after it
        finished (a deleted one's at once, in `_apply`)."""
        for key in self.metrics.with_series():
            read = self.cache.read_key(key)
            if read is None:
                self.metrics.forget(key)
            elif read.terminal:
                if mono - self._finished.setdefault(key, mono) >= RETENTION:
                    self.metrics.forget(key)
                    self._finished.pop(key, None)
            else:
                self._finished.pop(key, None)

    def _update_phase_gauge(self) -> None:
        counts = dict.fromkeys([*(p.value for p in Phase), reading.UNKNOWN], 0)
        for obj in self.cache.values():
            counts[self.cache.read(obj).label] += 1
        for label, n in counts.items():
            self.metrics.rollouts.labels(phase=label).set(n)

    # ------------------------------------------------------------------ reporting

    def _set_degraded(self, key: str, problem: conditions.Problem | None) -> None:
        """canaryd_rollout_degraded{namespace, rollout, reason} is 1 while it stands."""
        old = self._degraded.pop(key, None)
        namespace, _, name = key.partition("/")
        if old is not None and (problem is None or problem[0] != old):
            with contextlib.suppress(KeyError):
                self.metrics.degraded.remove(namespace, name, old)
        if problem is not None:
            self._degraded[key] = problem[0]
            self.metrics.degraded.labels(namespace, name, problem[0]).set(1)

    def _emit(self, raw: dict[str, Any], reason: str, message: str, warning: bool) -> None:
        task = asyncio.get_running_loop().create_task(
            self.store.emit_event(raw, reason=reason, message=message, warning=warning)
        )
        self._background.add(task)  # keep a reference until done (the loop holds weak ones)
        task.add_done_callback(self._background.discard)

    async def _report(self, raw: dict[str, Any], problem: conditions.Problem) -> None:
        """Report, on the object itself, why canaryd cannot act on it: Degraded=True in its
        status.conditions (the only field written), a Warning Event, and /metrics. Once per
        problem; never raises."""
        key = reading.key(raw)
        self._set_degraded(key, problem)
        status = raw.get("status")
        try:
            if isinstance(status, dict):
                shown = conditions.degraded(conditions.readable(status.get("conditions")))
                if shown == problem or not self.may_write():
                    return
                meta = raw["metadata"]
                body = {"conditions": conditions.report(status, problem, self.clock())}
                self.cache.put(await self.store.write_status(
                    ObjectRef(meta["namespace"], meta["name"]), body, meta["resourceVersion"]))
            elif self._reported.get(key) == problem or not self.may_write():
                return
        except Exception as exc:  # reported again next time
            log.info("degraded condition not written yet", rollout=key,
                     error=f"{type(exc).__name__}: {exc}"[:200])
            return
        self._reported[key] = problem
        log.warning("rollout degraded", rollout=key, reason=problem[0], detail=problem[1][:500])
        self._emit(raw, problem[0], problem[1], warning=True)

    async def _report_error(self, key: str, exc: Exception) -> None:
        raw = self.cache.get(key)
        if raw is not None:
            await self._report(raw, ("ReconcileError", f"{type(exc).__name__}: {exc}"[:500]))

    async def _prepare(
        self, key: str, settings: Settings, arb: targets.Arbitration | None
    ) -> _Work | None:
        raw = self.cache.get(key)
        if raw is None:
            return None
        read = self.cache.read(raw)
        if read.status is None:
            await self._report(raw, ("InvalidStatus", f"{read.problem}; canaryd leaves this "
                                     "rollout alone until its status is fixed"))
            self._due[key] = time.monotonic() + 10
            return None
        status = read.status
        meta = raw["metadata"]
        ns = meta["namespace"]
        obs: dict[str, Any] = {}
        spec: RolloutSpec | None = None
        ctx = machine.Context(steps=(), analysis=None, ready_timeout=0.0,
                              generation=meta.get("generation"),
                              checks_kept=settings.controller.checks_kept)
        try:
            spec = RolloutSpec.model_validate(raw.get("spec") or {})
            bg = spec.blue_green
            ctx = machine.Context(
                steps=plan.steps(spec), analysis=plan.resolve_analysis(settings, spec),
                ready_timeout=spec.workloads.ready_timeout, generation=meta.get("generation"),
                checks_kept=settings.controller.checks_kept,
                scale_down=(spec.workloads.stable, bg.scale_down_delay)
                if bg is not None and bg.scale_down else None,
            )
        except ValidationError as exc:
            obs["invalid"] = _validation_message(exc)
            spec = None
        except plan.PlanError as exc:
            obs["invalid"] = f"invalid rollout: {exc}"
            spec = None
        if spec is None and status.phase is not Phase.PENDING:
            await self._report(raw, ("InvalidSpec", f"{obs['invalid']} (in phase "
                                     f"{status.phase.value}); canaryd leaves it until fixed"))
            self._due[key] = time.monotonic() + 10
            return None
        action = (meta.get("annotations") or {}).get(ACTION_ANNOTATION)
        if isinstance(action, str):
            obs["action"] = action
        if arb is not None:
            obs.update(blocking=arb.blocking, waiting_for=arb.waiting_for,
                       superseded_by=arb.superseded_by, shared=arb.shared)
        if spec is not None:
            router = make_router(self.api, ns, spec)
            try:
                if status.phase is Phase.PENDING:
                    obs["canary"] = await self.workloads.state(
                        ObjectRef(ns, spec.workloads.canary),
                        min_available=spec.workloads.min_available,
                    )
                obs["weights"] = await router.read()
                if status.phase is Phase.PROMOTING and ctx.scale_down is not None:
                    obs["stable_scaled_down"] = await self.workloads.scaled_to_zero(
                        ObjectRef(ns, ctx.scale_down[0])
                    )
            except RouterError as exc:
                obs["router_error"] = str(exc)
            except KubeError as exc:
                log.warning("observation failed; retrying next round", rollout=key,
                            error=f"{type(exc).__name__}: {exc}"[:300])
                self.metrics.kube_errors.labels(operation="observe").inc()
                self._due[key] = time.monotonic() + 1.0
                return None
        return _Work(key=key, raw=raw, status=status, ctx=ctx, spec=spec, obs=obs)

    async def _finish(self, w: _Work, now: datetime) -> None:
        meta = w.raw["metadata"]
        ref = ObjectRef(meta["namespace"], meta["name"])
        bound = log.bind(rollout=w.key, step=machine.step_progress(w.status))
        decision = machine.decide(w.ctx, w.status, machine.Observations(**w.obs), now)
        new_status = decision.status.model_copy(update={"controller": self.identity}).wire()
        rv = meta["resourceVersion"]
        tick = self.settings().controller.tick
        if not self.may_write():
            bound.info("not leading; decision dropped")
            return
        if new_status != (w.raw.get("status") or {}) and (
            decision.status.model_dump() != w.status.model_dump()
        ):
            # Merge-patch keeps keys the patch leaves out: send cleared fields as null.
            patch = decision.status.model_copy(update={"controller": self.identity}).model_dump(
                mode="json", by_alias=True
            )
            raw_status = w.raw.get("status") or {}
            patch.update({k: None for k in RETIRED_STATUS_FIELDS if k in raw_status})
            try:
                updated = await self.store.write_status(ref, patch, rv)
            except Conflict:
                bound.info("status write fenced (object changed); re-reading")
                self._due[w.key] = time.monotonic() + 0.2
                return
            except KubeError as exc:
                bound.warning("status write failed; actions held back", error=str(exc)[:300])
                self.metrics.kube_errors.labels(operation="write_status").inc()
                self._due[w.key] = time.monotonic() + 1.0
                return
            self.cache.put(updated)
            rv = updated["metadata"]["resourceVersion"]
        for result in w.obs.get("analysis") or ():
            self._record_check(ref, result, w)
            bound.info("check", metric=result.metric, value=result.value,
                       threshold=result.threshold, verdict=result.verdict.value,
                       reason=result.reason, query=result.query,
                       dry_run=bool(result.dry_run))
        for t in decision.transitions:
            self._record_transition(w, ref, t, decision.status)
        problem = conditions.degraded(decision.status.conditions)
        self._set_degraded(w.key, problem)
        if problem is not None and problem != conditions.degraded(w.status.conditions):
            bound.warning("rollout degraded", reason=problem[0], detail=problem[1][:500])
            self._emit(self.cache.get(w.key, w.raw), problem[0], problem[1], warning=True)
        assert w.spec is not None or not decision.actions
        for action in decision.actions:
            assert w.spec is not None
            if not self.may_write():
                bound.info("leadership lost before the router write; next leader converges")
                return
            try:
                if isinstance(action, machine.ScaleDown):
                    await self.workloads.scale_to_zero(ObjectRef(ref.namespace, action.deployment))
                    bound.info("scaled down", deployment=action.deployment)
                    continue
                seen = await make_router(self.api, ref.namespace, w.spec).write(action.weights)
                bound.info("weights set", stable=seen.stable, canary=seen.canary)
                self.metrics.of_rollout(self.metrics.weight, ref.namespace,
                                        ref.name).set(seen.canary)
            except (RouterError, KubeError) as exc:
                bound.warning("weights not set; will retry", error=str(exc)[:300])
                self.metrics.kube_errors.labels(operation="set_weights").inc()
                decision = machine.Decision(status=decision.status, requeue_after=1.0)
        if decision.clear_action:
            try:
                self.cache.put(await self.store.clear_action(ref, rv))
            except KubeError as exc:
                bound.info("action annotation not cleared yet", error=str(exc)[:200])
        wait = decision.requeue_after if decision.requeue_after is not None else tick
        self._due[w.key] = time.monotonic() + min(max(wait, 0.05), tick * 5)

    def _record_check(self, ref: ObjectRef, result: Any, w: _Work) -> None:
        m = self.metrics
        dry = "true" if result.dry_run else "false"
        m.check_outcomes.labels(result.metric, result.verdict.value, dry).inc()
        if result.value is not None:
            m.of_rollout(m.check_value, ref.namespace, ref.name, result.metric,
                         dry).set(result.value)
        for check in w.ctx.analysis.checks if w.ctx.analysis else ():
            if check.metric != result.metric or check.dry_run != bool(result.dry_run):
                continue
            for bound, value in (("min", check.min), ("max", check.max)):
                if value is not None:
                    m.of_rollout(m.check_threshold, ref.namespace, ref.name, check.metric,
                                 bound, dry).set(value)

    def _record_transition(
        self, w: _Work, ref: ObjectRef, t: machine.Transition, status: RolloutStatus
    ) -> None:
        self.metrics.transitions.labels(t.source.value, t.target.value, t.trigger.value).inc()
        mono = time.monotonic()
        if w.key in self._step_started and t.trigger in (
            Trigger.STEP_PASSED, Trigger.LAST_STEP_PASSED
        ):
            self.metrics.step_seconds.observe(mono - self._step_started[w.key])
        self._step_started[w.key] = mono
        warning = t.target in (Phase.ROLLING_BACK, Phase.FAILED, Phase.ROLLED_BACK)
        log.info("transition", rollout=w.key, source=t.source.value, target=t.target.value,
                 trigger=t.trigger.value, reason=t.message,
                 weight=status.weights.canary if status.weights else None)
        self._emit(self.cache.get(w.key, w.raw), t.trigger.value, t.message, warning)
