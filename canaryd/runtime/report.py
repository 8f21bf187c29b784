"""What the controller tells people: Kubernetes Events, the Degraded condition of a rollout it
cannot act on, and /metrics (transitions, checks, phases, degraded rollouts).

Everything here is best effort and never raises into a reconcile: a report that cannot be
written now is written the next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from canaryd.adapters.kube import ObjectRef, RolloutStore
from canaryd.core import conditions, reading
from canaryd.core.machine import Transition
from canaryd.core.model import CheckResult, Phase, RolloutStatus
from canaryd.core.plan import EffectiveAnalysis
from canaryd.core.transitions import Trigger
from canaryd.runtime.cache import RolloutCache
from canaryd.runtime.metrics import RETENTION, DaemonMetrics

log = structlog.get_logger("canaryd.controller")
WARNING_TARGETS = (Phase.ROLLING_BACK, Phase.FAILED, Phase.ROLLED_BACK)


class Reporter:
    def __init__(
        self, *, store: RolloutStore, cache: RolloutCache, metrics: DaemonMetrics,
        clock: Callable[[], datetime], may_write: Callable[[str], bool],
    ) -> None:
        self.store, self.cache, self.metrics = store, cache, metrics
        self.clock, self.may_write = clock, may_write
        self._background: set[asyncio.Task[None]] = set()
        self._degraded: dict[str, str] = {}  # rollout -> the reason its gauge shows
        self._reported: dict[str, conditions.Problem] = {}  # Events sent, status unwritable
        self._finished: dict[str, float] = {}  # rollout -> when first seen finished
        self._step_started: dict[str, float] = {}

    def forget(self, key: str) -> None:
        """A deleted rollout: its series and memories go at once."""
        self._reported.pop(key, None)
        self._finished.pop(key, None)
        self._step_started.pop(key, None)
        self.set_degraded(key, None)
        self.metrics.forget(key)

    # ------------------------------------------------------------------ events

    def emit(self, raw: dict[str, Any], reason: str, message: str, warning: bool) -> None:
        async def send() -> None:
            # Sent in the background: a replica that stopped leading in between (frozen,
            # partitioned) writes nothing after its successor took over, Events included.
            if not self.may_write(reading.key(raw)):
                log.info("event not sent: no longer leading", rollout=reading.key(raw),
                         reason=reason)
                return
            await self.store.emit_event(raw, reason=reason, message=message, warning=warning)

        task = asyncio.get_running_loop().create_task(send())
        self._background.add(task)  # keep a reference until done (the loop holds weak ones)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ degraded

    def set_degraded(self, key: str, problem: conditions.Problem | None) -> None:
        """canaryd_rollout_degraded{namespace, rollout, reason} is 1 while it stands."""
        old = self._degraded.pop(key, None)
        namespace, _, name = key.partition("/")
        if old is not None and (problem is None or problem[0] != old):
            with contextlib.suppress(KeyError):
                self.metrics.degraded.remove(namespace, name, old)
        if problem is not None:
            self._degraded[key] = problem[0]
            self.metrics.degraded.labels(namespace, name, problem[0]).set(1)

    def degraded_after(self, key: str, raw: dict[str, Any], before: RolloutStatus,
                       after: RolloutStatus) -> None:
        """A decided status: its Degraded condition in /metrics, and an Event when it
        newly says why canaryd cannot act."""
        problem = conditions.degraded(after.conditions)
        self.set_degraded(key, problem)
        if problem is not None and problem != conditions.degraded(before.conditions):
            log.warning("rollout degraded", rollout=key, reason=problem[0],
                        detail=problem[1][:500])
            self.emit(raw, problem[0], problem[1], warning=True)

    async def report(self, raw: dict[str, Any], problem: conditions.Problem) -> None:
        """Report, on the object itself, why canaryd cannot act on it: Degraded=True in its
        status.conditions (the only field written), a Warning Event, and /metrics. Once per
        problem; never raises."""
        key = reading.key(raw)
        self.set_degraded(key, problem)
        status = raw.get("status")
        try:
            if isinstance(status, dict):
                shown = conditions.degraded(conditions.readable(status.get("conditions")))
                if shown == problem or not self.may_write(key):
                    return
                meta = raw["metadata"]
                body = {"conditions": conditions.report(status, problem, self.clock())}
                self.cache.put(await self.store.write_status(
                    ObjectRef(meta["namespace"], meta["name"]), body, meta["resourceVersion"]))
            elif self._reported.get(key) == problem or not self.may_write(key):
                return
        except Exception as exc:  # reported again next time
            log.info("degraded condition not written yet", rollout=key,
                     error=f"{type(exc).__name__}: {exc}"[:200])
            return
        self._reported[key] = problem
        log.warning("rollout degraded", rollout=key, reason=problem[0], detail=problem[1][:500])
        self.emit(raw, problem[0], problem[1], warning=True)

    async def report_error(self, key: str, exc: Exception) -> None:
        raw = self.cache.get(key)
        if raw is not None and not self.cache.whole(key):
            # Finished since (its summary has no conditions to add to): nothing acts on it.
            log.warning("finished rollout's last round failed", rollout=key,
                        error=f"{type(exc).__name__}: {exc}"[:300])
        elif raw is not None:
            await self.report(raw, ("ReconcileError", f"{type(exc).__name__}: {exc}"[:500]))

    # ------------------------------------------------------------------ metrics

    def check(self, ref: ObjectRef, result: CheckResult,
              analysis: EffectiveAnalysis | None) -> None:
        m = self.metrics
        dry = "true" if result.dry_run else "false"
        m.check_outcomes.labels(result.metric, result.verdict.value, dry).inc()
        if result.value is not None:
            m.of_rollout(m.check_value, ref.namespace, ref.name, result.metric,
                         dry).set(result.value)
        for check in analysis.checks if analysis else ():
            if check.metric != result.metric or check.dry_run != bool(result.dry_run):
                continue
            for bound, value in (("min", check.min), ("max", check.max)):
                if value is not None:
                    m.of_rollout(m.check_threshold, ref.namespace, ref.name, check.metric,
                                 bound, dry).set(value)

    def transition(self, key: str, raw: dict[str, Any], t: Transition,
                   status: RolloutStatus) -> None:
        self.metrics.transitions.labels(t.source.value, t.target.value, t.trigger.value).inc()
        mono = time.monotonic()
        if key in self._step_started and t.trigger in (
            Trigger.STEP_PASSED, Trigger.LAST_STEP_PASSED
        ):
            self.metrics.step_seconds.observe(mono - self._step_started[key])
        self._step_started[key] = mono
        history = status.history
        if t.target.terminal and history and history[0].source is Phase.PENDING:
            self.metrics.rollout_seconds.labels(t.target.value).observe(
                max(0.0, (history[-1].time - history[0].time).total_seconds()))
        log.info("transition", rollout=key, source=t.source.value, target=t.target.value,
                 trigger=t.trigger.value, reason=t.message,
                 weight=status.weights.canary if status.weights else None)
        self.emit(raw, t.trigger.value, t.message, t.target in WARNING_TARGETS)

    def phases(self) -> None:
        counts = dict.fromkeys([*(p.value for p in Phase), reading.UNKNOWN], 0)
        for obj in self.cache.values():
            counts[self.cache.read(obj).label] += 1
        for label, n in counts.items():
            self.metrics.rollouts.labels(phase=label).set(n)

    def expire(self, mono: float) -> None:
        """A finished rollout's weight and check series go RETENTION seconds after it
        finished (a deleted one's at once, in `forget`)."""
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
