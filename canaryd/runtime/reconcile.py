"""One rollout's reconcile, as named steps: observe, (analyse, in the round's batch), decide,
write status, act.

Status first, actions second: the status is a write-ahead record fenced by resourceVersion,
so a crash in between leaves an intent the next round converges to, and a stale writer does
nothing. Each step says when the rollout is next due (seconds); none raises for a problem
of one object (the round turns anything else into a ReconcileError report on it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from kubernetes_asyncio import client
from pydantic import ValidationError

from canaryd.adapters.errors import Conflict, KubeError
from canaryd.adapters.kube import ObjectRef, RolloutStore, Workloads
from canaryd.adapters.routers import Router, RouterError, make_router
from canaryd.adapters.workloads import ReleaseError, Releases, plan_for
from canaryd.core import machine, plan, reading, targets
from canaryd.core.hooks import RunHook
from canaryd.core.model import (
    ACTION_ANNOTATION,
    RETIRED_STATUS_FIELDS,
    CheckResult,
    Phase,
    RolloutSpec,
    RolloutStatus,
)
from canaryd.core.queryplan import Job
from canaryd.core.release import CopyTemplate, PrepareCanary, to_idle_colour
from canaryd.core.settings import Settings
from canaryd.runtime.cache import RolloutCache
from canaryd.runtime.hooks import HookRunner, hooks_of
from canaryd.runtime.metrics import DaemonMetrics
from canaryd.runtime.report import Reporter

log = structlog.get_logger("canaryd.controller")
RELEASE_PHASES = (Phase.PENDING, Phase.PROMOTING, Phase.ROLLING_BACK)  # both Deployments read
UNREADABLE_RECHECK = 10.0  # seconds: a rollout left alone is looked at again this often
ACTION_FAILED_ROUNDS = 2  # rounds in a row an action failed before the rollout says so


@dataclass(frozen=True)
class Observed:
    """What one round saw of one rollout, ready for `decide`."""

    key: str
    ref: ObjectRef
    raw: dict[str, Any]
    status: RolloutStatus
    ctx: machine.Context
    spec: RolloutSpec | None  # None: invalid (only ever decided while Pending)
    router: Router | None  # built once per rollout and round
    obs: machine.Observations

    def job(self, now: datetime) -> Job | None:
        """The analysis this rollout is due for at `now`, as a query-plan job."""
        if (self.spec is None or self.ctx.analysis is None
                or not machine.analysis_due(self.ctx, self.status, now)):
            return None
        weights = self.status.weights
        return Job(rollout=self.key, namespace=self.ref.namespace,
                   stable=self.spec.workloads.stable, canary=self.spec.workloads.canary,
                   analysis=self.ctx.analysis, step=self.status.step_index,
                   canary_share=weights.canary / 100 if weights else None,
                   evidence=tuple(self.status.evidence))

    def analysed(self, results: tuple[CheckResult, ...], at: datetime) -> Observed:
        obs = dataclasses.replace(self.obs, analysis=results, analysis_time=at)
        return dataclasses.replace(self, obs=obs)


def _spec(raw: dict[str, Any], settings: Settings, ctx: machine.Context, status: RolloutStatus,
          ) -> tuple[RolloutSpec | None, machine.Context, str | None]:
    """The spec as this release runs it (blue-green: to the idle colour), the machine's
    context for it, or why it is invalid."""
    try:
        spec = to_idle_colour(RolloutSpec.model_validate(raw.get("spec") or {}), status)
        bg = spec.blue_green
        analysis = plan.resolve_analysis(settings, spec)
        return spec, dataclasses.replace(
            ctx, steps=plan.steps(spec), analysis=analysis,
            hooks=hooks_of(settings, spec, analysis.profile),
            ready_timeout=spec.workloads.ready_timeout,
            scale_down=(spec.workloads.stable, bg.scale_down_delay)
            if bg is not None and bg.scale_down else None,
            release=plan_for(spec),
        ), None
    except ValidationError as exc:
        return None, ctx, "invalid rollout: " + reading.errors_text(exc, "spec")
    except plan.PlanError as exc:
        return None, ctx, f"invalid rollout: {exc}"


def _persistent(failed: tuple[str, int] | None) -> str | None:
    return failed[0] if failed is not None and failed[1] >= ACTION_FAILED_ROUNDS else None


def _action_text(action: object) -> str:
    """An action as the Degraded condition names it."""
    if isinstance(action, PrepareCanary):
        return f"starting the canary {action.deployment}"
    if isinstance(action, CopyTemplate):
        return f"copying the pod template of {action.source} to {action.target}"
    if isinstance(action, machine.ScaleDown):
        return f"scaling {action.deployment} to zero"
    if isinstance(action, machine.SetWeights):
        weights = action.weights
        return f"setting the router to {weights.stable}/{weights.canary}"
    return type(action).__name__


class Reconciler:
    def __init__(
        self, *, api: client.ApiClient, store: RolloutStore, cache: RolloutCache,
        reporter: Reporter, metrics: DaemonMetrics, identity: str,
        may_write: Callable[[str], bool], hooks: HookRunner | None = None,
    ) -> None:
        self.api, self.store, self.cache = api, store, cache
        self.workloads = Workloads(api)
        self.releases = Releases(api)
        self.reporter, self.metrics = reporter, metrics
        self.identity, self.may_write = identity, may_write
        self.hooks = hooks
        # Per rollout: the action the last rounds could not do, and in how many rounds in a
        # row (Observations.action_error from the second on: one lost race is no news).
        self.action_errors: dict[str, tuple[str, int]] = {}

    # ------------------------------------------------------------------ observe

    async def observe(self, key: str, settings: Settings, arb: targets.Arbitration | None
                      ) -> Observed | float:
        """The rollout as seen now, or when to look again (it is left alone until then)."""
        raw = self.cache.get(key)
        if raw is None or not self.cache.whole(key):  # gone, or finished since it was due
            return settings.controller.tick
        read = self.cache.read(raw)
        if read.status is None:
            await self.reporter.report(raw, ("InvalidStatus", f"{read.problem}; canaryd leaves "
                                             "this rollout alone until its status is fixed"))
            return UNREADABLE_RECHECK
        status, meta = read.status, raw["metadata"]
        ref = ObjectRef(meta["namespace"], meta["name"])
        base = machine.Context(steps=(), analysis=None, ready_timeout=0.0,
                               generation=meta.get("generation"),
                               checks_kept=settings.controller.checks_kept)
        spec, ctx, invalid = _spec(raw, settings, base, status)
        if spec is None and status.phase is not Phase.PENDING:
            await self.reporter.report(raw, ("InvalidSpec", f"{invalid} (in phase "
                                             f"{status.phase.value}); canaryd leaves it "
                                             "until fixed"))
            return UNREADABLE_RECHECK
        action = (meta.get("annotations") or {}).get(ACTION_ANNOTATION)
        obs = machine.Observations(
            invalid=invalid, action=action if isinstance(action, str) else None,
            blocking=arb.blocking if arb else None, waiting_for=arb.waiting_for if arb else None,
            superseded_by=arb.superseded_by if arb else None, shared=arb.shared if arb else None,
            hooks=self.hooks.reports(key) if self.hooks is not None else (),
            action_error=_persistent(self.action_errors.get(key)),
        )
        router = make_router(self.api, ref.namespace, spec) if spec is not None else None
        if spec is not None and router is not None:
            try:
                obs = await self._world(ref, spec, ctx, status, router, obs)
            except KubeError as exc:
                log.warning("observation failed; retrying next round", rollout=key,
                            error=f"{type(exc).__name__}: {exc}"[:300])
                self.metrics.kube_errors.labels(operation="observe").inc()
                return 1.0
        return Observed(key, ref, raw, status, ctx, spec, router, obs)

    async def _world(self, ref: ObjectRef, spec: RolloutSpec, ctx: machine.Context,
                     status: RolloutStatus, router: Router, obs: machine.Observations,
                     ) -> machine.Observations:
        """The canary's readiness (while Pending), the router's weights, blue's scale."""
        try:
            canary = release = None
            if ctx.release is not None and status.phase in RELEASE_PHASES:
                release = await self.releases.observe(
                    ref.namespace, ctx.release, autoscalers=status.phase is Phase.PENDING)
            elif status.phase is Phase.PENDING:
                canary = await self.workloads.state(
                    ObjectRef(ref.namespace, spec.workloads.canary),
                    min_available=spec.workloads.min_available)
            weights = await router.read()
            scaled = None
            if status.phase is Phase.PROMOTING and ctx.scale_down is not None:
                scaled = await self.workloads.scaled_to_zero(
                    ObjectRef(ref.namespace, ctx.scale_down[0]))
        except RouterError as exc:
            return dataclasses.replace(obs, canary=canary, release=release,
                                       router_error=str(exc))
        return dataclasses.replace(obs, canary=canary, release=release, weights=weights,
                                   stable_scaled_down=scaled)

    # ------------------------------------------------------------------ decide, write, act

    async def finish(self, w: Observed, now: datetime, tick: float) -> float:
        """Decide, write the status, report, act. Seconds until the rollout is due again."""
        bound = log.bind(rollout=w.key, step=machine.step_progress(w.status))
        decision = machine.decide(w.ctx, w.status, w.obs, now)
        if not self.may_write(w.key):
            bound.info("not leading; decision dropped")
            return tick
        rv = await self.write_status(w, decision, bound)
        if isinstance(rv, float):
            return rv
        self.record(w, decision, bound)
        requeue = await self.act(w, decision, rv, bound)
        wait = requeue if requeue is not None else tick
        return min(max(wait, 0.05), tick * 5)

    async def write_status(self, w: Observed, decision: machine.Decision,
                           bound: Any) -> str | float:
        """The decided status, fenced by the resourceVersion it was decided from: the new
        resourceVersion, or seconds until trying again."""
        rv: str = w.raw["metadata"]["resourceVersion"]
        mine = decision.status.model_copy(update={"controller": self.identity})
        if mine.wire() == (w.raw.get("status") or {}) or (
            decision.status.model_dump() == w.status.model_dump()
        ):
            return rv
        # Merge-patch keeps keys the patch leaves out: send cleared fields as null.
        patch = mine.model_dump(mode="json", by_alias=True)
        raw_status = w.raw.get("status") or {}
        patch.update({k: None for k in RETIRED_STATUS_FIELDS if k in raw_status})
        try:
            updated = await self.store.write_status(w.ref, patch, rv)
        except Conflict:
            bound.info("status write fenced (object changed); re-reading")
            return 0.2
        except KubeError as exc:
            bound.warning("status write failed; actions held back", error=str(exc)[:300])
            self.metrics.kube_errors.labels(operation="write_status").inc()
            return 1.0
        self.cache.put(updated)
        return str(updated["metadata"]["resourceVersion"])

    def record(self, w: Observed, decision: machine.Decision, bound: Any) -> None:
        """What happened, in logs, /metrics and Events."""
        for result in w.obs.analysis or ():
            self.reporter.check(w.ref, result, w.ctx.analysis)
            bound.info("check", metric=result.metric, value=result.value,
                       threshold=result.threshold, verdict=result.verdict.value,
                       reason=result.reason, query=result.query, dry_run=bool(result.dry_run))
        raw = self.cache.get(w.key, w.raw)
        for t in decision.transitions:
            self.reporter.transition(w.key, raw, t, decision.status)
        self.reporter.degraded_after(w.key, raw, w.status, decision.status)

    async def act(self, w: Observed, decision: machine.Decision, rv: str,
                  bound: Any) -> float | None:
        """The decision's router writes and scale-down, then the consumed action cleared.
        The requeue the decision asked for (1 s, and the action kept, when a write failed)."""
        requeue, failed, failure = decision.requeue_after, False, ""
        if self.hooks is not None and w.spec is not None:
            self.hooks.act(w.key, w.raw, w.spec, decision.status, decision.actions, w.ctx.hooks)
        for action in decision.actions:
            if isinstance(action, RunHook):
                continue
            if not self.may_write(w.key):
                bound.info("leadership lost before the router write; next leader converges")
                return requeue
            try:
                if isinstance(action, PrepareCanary | CopyTemplate):
                    await self.releases.apply(w.ref.namespace, action)
                    continue
                if isinstance(action, machine.ScaleDown):
                    await self.workloads.scale_to_zero(ObjectRef(w.ref.namespace,
                                                                 action.deployment))
                    bound.info("scaled down", deployment=action.deployment)
                    continue
                assert w.router is not None, "only a valid spec has actions"
                seen = await w.router.write(action.weights)
                bound.info("weights set", stable=seen.stable, canary=seen.canary)
                self.metrics.of_rollout(self.metrics.weight, w.ref.namespace,
                                        w.ref.name).set(seen.canary)
            except (RouterError, ReleaseError, KubeError) as exc:
                bound.warning("action not done; will retry", action=type(action).__name__,
                              error=str(exc)[:300])
                self.metrics.kube_errors.labels(operation="set_weights").inc()
                requeue, failed = 1.0, True
                failure = f"{_action_text(action)} failed: {exc}"[:300]
        if failed:
            rounds = self.action_errors.get(w.key, ("", 0))[1] + 1
            self.action_errors[w.key] = (failure, rounds)
        else:
            self.action_errors.pop(w.key, None)
        if decision.clear_action and not failed:
            try:
                self.cache.put(await self.store.clear_action(w.ref, rv))
            except KubeError as exc:
                bound.info("action annotation not cleared yet", error=str(exc)[:200])
        return requeue
