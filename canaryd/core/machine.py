"""The rollout state machine: `decide(context, status, observations, now) -> Decision`.

Pure: no I/O, no clock reads. The runtime gathers observations, calls `decide`, writes the
returned status first (a write-ahead record, fenced by resourceVersion) and only then
performs the returned actions. Whatever the runtime crashes between, the next `decide`
sees the recorded intent and converges the world to it.

Every phase change goes through TRANSITIONS (`canaryd.core.transitions`): the table is the
whole life of a rollout, its endings included, and the operator's actions are its triggers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from canaryd.core import conditions, releasing
from canaryd.core import hooks as hooking
from canaryd.core import release as rel
from canaryd.core import verdict as verdicts
from canaryd.core.builder import (
    Action,
    Builder,
    IllegalTransition,
    ScaleDown,
    SetWeights,
    Transition,
    since,
    start_rollback,
    start_step,
)
from canaryd.core.hooks import HookReport
from canaryd.core.hookspec import Hook, HookRun
from canaryd.core.model import (
    ACTION_ANNOTATION,
    REASON_WRITTEN,
    CheckResult,
    Evidence,
    Phase,
    RolloutStatus,
    Step,
    Verdict,
    Weights,
)
from canaryd.core.plan import EffectiveAnalysis
from canaryd.core.transitions import ACTIONS, TRANSITIONS, Trigger, accepts, ending

P, T = Phase, Trigger


@dataclass(frozen=True)
class WorkloadState:
    exists: bool
    available: bool
    detail: str = ""


@dataclass(frozen=True)
class Observations:
    canary: WorkloadState | None = None
    weights: Weights | None = None
    router_error: str | None = None
    analysis: tuple[CheckResult, ...] | None = None
    # When the analysis' queries were evaluated (their `time=`): the run is recorded at that
    # time, so windows line up however late the answers arrived. Default: now.
    analysis_time: datetime | None = None
    blocking: str | None = None
    waiting_for: str | None = None
    superseded_by: str | None = None
    shared: str | None = None  # what the blocking / waited-for / superseding rollout holds
    action: str | None = None  # the canaryd.io/action annotation, as written
    invalid: str | None = None
    stable_scaled_down: bool | None = None
    hooks: tuple[HookReport, ...] = ()  # what hook calls came back with
    release: rel.ReleaseObservation | None = None  # both Deployments, for a release
    # What the last round asked for and could not do (the API refused or failed the write):
    # asked for again while the world differs from the status, and shown as Degraded.
    action_error: str | None = None


@dataclass(frozen=True)
class Context:
    """What decide needs besides status: the plan and analysis, already resolved."""

    steps: tuple[Step, ...]
    analysis: EffectiveAnalysis | None
    ready_timeout: float
    generation: int | None = None
    checks_kept: int = 20
    scale_down: tuple[str, float] | None = None  # (deployment, delay): blue-green clean-up
    hooks: tuple[Hook, ...] = ()  # the profile's and the rollout's (canaryd.core.hooks)
    release: rel.ReleasePlan | None = None  # a release: canaryd moves both Deployments


@dataclass(frozen=True)
class Decision:
    status: RolloutStatus
    actions: tuple[Action, ...] = ()
    transitions: tuple[Transition, ...] = ()
    clear_action: bool = False
    requeue_after: float | None = None


def _start_step(b: Builder, ctx: Context, index: int, trigger: Trigger, message: str) -> None:
    start_step(b, ctx.steps, ctx.hooks, index, trigger, message)


def _promote(b: Builder, ctx: Context, trigger: Trigger, message: str) -> None:
    if releasing.promote(b, ctx.release, trigger, message):
        return
    b.move(trigger, message, outcome=None, paused_by=None)
    b.route(100)


def _operator(b: Builder, ctx: Context, obs: Observations) -> bool:
    """Operator actions and supersession. True when they decided this tick."""
    phase = b.status.phase
    if obs.superseded_by is not None and T.SUPERSEDED in TRANSITIONS[phase]:
        message = f"superseded by rollout {obs.superseded_by}" + (
            f" (on {obs.shared})" if obs.shared else "")
        if phase is P.PENDING and b.status.release is not None:
            releasing.abandon(b, f"{message}; scaling the canary back down", P.ABORTED)
        elif phase is P.PENDING:
            b.move(T.SUPERSEDED, message)
        else:
            start_rollback(b, T.SUPERSEDED, message, Phase.ROLLED_BACK)
        return True
    action = obs.action
    if action is None or not accepts(action, phase):
        return False  # an action that makes no sense in this phase is dropped, not queued
    trigger = ACTIONS[action]
    if trigger is T.ABORT and phase is P.PENDING and b.status.release is not None:
        releasing.abandon(b, "aborted by operator before any traffic moved; scaling the "
                          "canary back down", P.ABORTED)
    elif trigger is T.ABORT and phase is P.PENDING:
        b.move(T.ABORT, "aborted by operator before any traffic moved")
    elif trigger is T.ABORT:
        start_rollback(b, T.ABORT, "aborted by operator", Phase.ABORTED)
    elif trigger is T.PROMOTE:
        _promote(b, ctx, T.PROMOTE, "promoted by operator (remaining steps skipped)")
    elif trigger is T.PAUSE:
        b.move(T.PAUSE, "paused by operator", paused_by="operator")
    elif b.status.paused_by == "gate":
        _advance(b, ctx, "manual gate approved")
    else:
        _start_step(b, ctx, b.status.step_index, T.RESUME, "resumed; step restarted")
    return True


def _confirmed(b: Builder, ctx: Context, message: str) -> bool:
    """Whether the confirmPromotion gates said yes (a no rolls back)."""
    return hooking.confirmed(
        b, ctx.hooks, message, resume=lambda why: b.move(T.RESUME, why, paused_by=None),
        fail=lambda why: start_rollback(b, T.HOOK_FAILED, why, Phase.ROLLED_BACK))


def _advance(b: Builder, ctx: Context, message: str) -> None:
    nxt = b.status.step_index + 1
    if nxt == hooking.confirm_index(ctx.steps) and not _confirmed(b, ctx, message):
        return
    if nxt >= len(ctx.steps):
        _promote(b, ctx, T.LAST_STEP_PASSED, f"{message}; all {len(ctx.steps)} steps passed")
    else:
        _start_step(
            b, ctx, nxt, T.STEP_PASSED,
            f"{message}; step {nxt + 1}/{len(ctx.steps)} at {ctx.steps[nxt].weight}%",
        )


def _pending(b: Builder, ctx: Context, obs: Observations) -> None:
    if b.status.phase_started_at is None:
        b.update(phase_started_at=b.now, step_count=len(ctx.steps))
    if obs.invalid is not None:
        b.move(T.INVALID, obs.invalid)
    elif obs.blocking is not None:
        b.move(T.BLOCKED, f"target busy: rollout {obs.blocking} is active on "
                          f"{obs.shared or 'the same target'}")
    elif obs.waiting_for is not None:
        b.update(reason=f"waiting for superseded rollout {obs.waiting_for} to roll back")
        b.wake_in(1.0)
    elif obs.router_error is not None:
        b.move(T.ROUTER_BROKEN, f"routing not touched: {obs.router_error}")
    elif ctx.release is not None:
        ready = releasing.pending(b, ctx.release, ctx.ready_timeout, obs.weights,
                                  obs.release)
        if ready is not None:
            _ready(b, ctx, ready)
    elif (obs.canary is not None and obs.canary.available) or any(
            r.stage == "preRollout" for r in b.status.hooks):
        _ready(b, ctx, "canary available")
    elif since(b.now, b.status.phase_started_at) >= ctx.ready_timeout:
        detail = obs.canary.detail if obs.canary is not None else "not observed"
        b.move(
            T.READY_TIMEOUT,
            f"canary not available after {ctx.ready_timeout:g}s ({detail}); routing not touched",
        )
    else:
        b.wake_in(1.0)


def _ready(b: Builder, ctx: Context, what: str) -> None:
    """The canary is available: the preRollout gates, then step 1."""
    pre = hooking.gate(b, ctx.hooks, "preRollout")
    if isinstance(pre, HookRun):
        b.move(T.HOOK_FAILED, f"{hooking.describe(pre)}; routing not touched")
    elif pre == hooking.RUNNING:
        b.update(reason=f"{what}; running preRollout hooks")
    elif hooking.confirm_index(ctx.steps) > 0 or _confirmed(b, ctx, what):
        _start_step(b, ctx, 0, T.READY,
                    f"{what}; step 1/{len(ctx.steps)} at {ctx.steps[0].weight}%")


def _merge_evidence(old: list[Evidence], results: tuple[CheckResult, ...]) -> list[Evidence]:
    """Each sequential result carries its evidence after this run; a dry-run check on the
    same metric carries the same numbers, so replacing is idempotent."""
    merged = {e.key: e for e in old}
    for r in results:
        for e in r.evidence or ():
            merged[e.key] = e
    return [merged[k] for k in sorted(merged)]


def _record_run(
    b: Builder, ctx: Context, results: tuple[CheckResult, ...], at: datetime | None
) -> None:
    assert ctx.analysis is not None
    limits = ctx.analysis.limits
    outcome = verdicts.overall(results)
    counted = verdicts.considered(results)
    s = b.status
    seq = s.sequence + 1
    # The evidence goes to status.evidence (merged below); the stored results keep the totals.
    numbered = [r.model_copy(update={"seq": seq, "evidence": None}) for r in results]
    checks = [*s.checks, *numbered][-ctx.checks_kept :]
    b.update(checks=checks, last_analysis_at=at or b.now, sequence=seq,
             evidence=_merge_evidence(s.evidence, results),
             settled=all(bool(r.settled) for r in counted if r.decisive))
    decisive = [r for r in counted if r.decisive and r.verdict is Verdict.FAIL]
    if decisive:
        b.update(failures=s.failures + 1, consecutive_failures=s.consecutive_failures + 1,
                 consecutive_inconclusive=0)
        failing = "; ".join(f"{r.metric}: {r.reason}" for r in decisive)
        start_rollback(b, T.ANALYSIS_FAILED,
                        f"analysis failed (anytime-valid check, decisive at once): {failing}",
                        Phase.ROLLED_BACK)
        return
    if outcome is Verdict.PASS:
        b.update(
            consecutive_failures=0,
            consecutive_inconclusive=0,
            passed_runs_in_step=s.passed_runs_in_step + 1,
        )
        return
    if outcome is Verdict.FAIL:
        b.update(
            failures=s.failures + 1,
            consecutive_failures=s.consecutive_failures + 1,
            consecutive_inconclusive=0,
        )
        s = b.status
        failing = "; ".join(f"{r.metric}: {r.reason}" for r in counted if r.verdict is Verdict.FAIL)
        if s.failures >= limits.failures or s.consecutive_failures >= limits.consecutive_failures:
            start_rollback(
                b, T.ANALYSIS_FAILED,
                f"analysis failed ({s.failures} failed runs, {s.consecutive_failures} in a row): "
                f"{failing}",
                Phase.ROLLED_BACK,
            )
        return
    if all(r.close for r in counted if r.verdict is Verdict.INCONCLUSIVE):
        return  # too close to call: the step holds and looks again; nothing is counted
    b.update(consecutive_inconclusive=s.consecutive_inconclusive + 1)
    s = b.status
    if s.consecutive_inconclusive >= limits.consecutive_inconclusive:
        why = "; ".join(
            f"{r.metric}: {r.reason}" for r in counted if r.verdict is Verdict.INCONCLUSIVE
        )
        message = f"{s.consecutive_inconclusive} inconclusive analysis runs in a row: {why}"
        if limits.on_inconclusive == "rollback":
            start_rollback(b, T.INCONCLUSIVE_ROLLBACK, message, Phase.ROLLED_BACK)
        else:
            b.move(T.INCONCLUSIVE_PAUSE, message, paused_by="analysis")


def analysis_due(ctx: Context, status: RolloutStatus, now: datetime) -> bool:
    """Whether the runtime should run analysis before calling decide this tick."""
    if status.phase is not Phase.PROGRESSING or ctx.analysis is None:
        return False
    if status.step_index < len(ctx.steps) and not ctx.steps[status.step_index].analysis:
        return False
    if hooking.running_step_hooks(status):
        return False  # a step's hooks run before its analysis
    anchor = status.last_analysis_at or status.step_started_at
    return anchor is not None and since(now, anchor) >= analysis_wait(ctx.analysis)


def analysis_wait(analysis: EffectiveAnalysis) -> float:
    """From a step's start or the last run's evaluation time to the next run: the interval,
    and the query offset by which the run waits for its window's last scrape to settle (it
    is evaluated at now - offset, so consecutive windows still follow each other)."""
    return analysis.interval + analysis.query_offset


def evaluation_time(analysis: EffectiveAnalysis, now: datetime) -> datetime:
    """The `time=` a run due at `now` evaluates its queries at (and is recorded with)."""
    return now - timedelta(seconds=analysis.query_offset)


def _progressing(b: Builder, ctx: Context, obs: Observations) -> None:
    assert ctx.analysis is not None
    if obs.router_error is not None:
        start_rollback(b, T.ROUTER_BROKEN, f"routing error: {obs.router_error}", Phase.FAILED)
        return
    for run in b.finished:  # a failed step hook counts as a failed analysis run
        if (why := hooking.failed_run(b, ctx.analysis.limits, run)) is not None:
            start_rollback(b, T.ANALYSIS_FAILED, why, Phase.ROLLED_BACK)
            return
    if obs.analysis is not None:
        _record_run(b, ctx, obs.analysis, obs.analysis_time)
        if b.status.phase is not P.PROGRESSING:
            return
    if hooking.running_step_hooks(b.status):
        return  # the step's hooks first (they wake it when they answer)
    s = b.status
    step = ctx.steps[s.step_index]
    # An analysed step's time is counted in evaluation time: its pause ends once the runs
    # have judged the windows up to its end, `query_offset` after the wall clock does.
    elapsed = since(b.now, s.step_started_at) - (
        ctx.analysis.query_offset if step.analysis else 0.0)
    analysed = (
        s.passed_runs_in_step >= ctx.analysis.min_passed_runs
        and s.consecutive_failures == 0
        and s.consecutive_inconclusive == 0
    )
    # A step that may wait (maxPause) waits for the sequential checks' evidence to settle.
    waiting = (step.analysis and step.max_pause is not None and s.settled is not True
               and elapsed < step.max_pause)
    done = (analysed or not step.analysis) and elapsed >= step.pause and not waiting
    if done:
        label = f"step {s.step_index + 1}/{len(ctx.steps)} passed"
        if step.gate == "manual" and not hooking.confirming(b.status):
            b.move(T.GATE, f"{label}; waiting for manual approval (resume or promote)",
                   paused_by="gate")
        else:
            _advance(b, ctx, label)
        return
    anchor = s.last_analysis_at or s.step_started_at
    if step.analysis:
        b.wake_in(analysis_wait(ctx.analysis) - since(b.now, anchor))
    if (analysed or not step.analysis) and elapsed < step.pause:
        b.wake_in(step.pause - elapsed)  # (a step past its pause waits for evidence: no spin)
    if waiting and step.max_pause is not None:
        b.wake_in(step.max_pause - elapsed)


def _converging(b: Builder, ctx: Context, obs: Observations) -> None:
    """Promoting / RollingBack: done once the router reads back the recorded weights (and,
    for blue-green with scale-down, once blue is observed at zero replicas)."""
    want = b.status.weights
    if obs.router_error is None and releasing.converging(
            b, ctx.release, obs.weights, obs.release):
        return
    if obs.router_error is not None:
        # Keep trying, and say why in status (kubectl get shows it) rather than wait silently.
        stuck = f"cannot verify traffic yet, retrying: {obs.router_error}"[:REASON_WRITTEN]
        if b.status.reason != stuck:
            b.update(reason=stuck)
        b.problem = ("RouterError", obs.router_error)
        b.wake_in(1.0)
        return
    if obs.weights is not None and want is not None and obs.weights == want:
        if b.status.phase is P.PROMOTING and ctx.scale_down is not None:
            deployment, delay = ctx.scale_down
            waited = since(b.now, b.status.phase_started_at)
            if waited < delay:
                b.wake_in(delay - waited)
            elif obs.stable_scaled_down:
                b.move(T.TRAFFIC_CONFIRMED,
                       f"promoted: all traffic on the new version; {deployment} scaled to zero")
            else:
                b.actions.append(ScaleDown(deployment))
                b.wake_in(1.0)
        elif b.status.phase is P.PROMOTING:
            b.move(T.TRAFFIC_CONFIRMED, "promoted: 100% of traffic on the canary")
        else:
            reason = b.status.rollback_reason or "rolled back"
            b.move(ending(b.status.outcome or P.ROLLED_BACK),
                   f"{reason}; traffic verified back on stable")
    else:
        b.wake_in(1.0)


def _reconverge(b: Builder, obs: Observations) -> None:
    """If the router drifted from the recorded weights (crash mid-write, someone edited the
    VirtualService), put the recorded weights back before anything else."""
    want = b.status.weights
    if want is not None and obs.weights is not None and obs.weights != want:
        b.actions.append(SetWeights(want.canary))


def _hold(b: Builder, ctx: Context, obs: Observations) -> bool:
    """Whether this tick must not move the rollout, with the reason as Degraded: an action
    annotation that is no action (it may be a typo of abort), or a step beyond the plan."""
    phase = b.status.phase
    if obs.action is not None and obs.action not in ACTIONS:
        b.problem = ("UnknownAction", (
            f"{ACTION_ANNOTATION}={obs.action[:60]!r} is not an action "
            f"({', '.join(ACTIONS)}); nothing moves until it is removed or replaced"))
    elif phase in (P.PROGRESSING, P.PAUSED) and b.status.step_index >= len(ctx.steps):
        b.problem = ("InvalidStatus", (
            f"status.stepIndex {b.status.step_index} is beyond the plan's {len(ctx.steps)} "
            "steps (did spec.plan change mid-flight?); nothing moves until it is fixed"))
    else:
        return False
    b.wake_in(10.0)
    return True


def step_progress(status: RolloutStatus) -> str | None:
    """The step as people count it ("2/3"); "0/3" until the first step starts."""
    if not status.step_count:
        return None
    started = status.step_started_at is not None
    return f"{status.step_index + 1 if started else 0}/{status.step_count}"


def decide(ctx: Context, status: RolloutStatus, obs: Observations, now: datetime) -> Decision:
    b = Builder(now=now, status=status)
    if ctx.generation is not None and status.observed_generation != ctx.generation:
        b.update(observed_generation=ctx.generation)
    phase = status.phase
    if status.hooks or obs.hooks:
        b.finished = hooking.absorb(b, ctx.hooks, obs.hooks)
    if not phase.terminal:
        if phase in (P.PROGRESSING, P.PAUSED, P.PROMOTING, P.ROLLING_BACK):
            _reconverge(b, obs)
        if _hold(b, ctx, obs):
            pass
        elif not _operator(b, ctx, obs):
            if phase is P.PENDING:
                _pending(b, ctx, obs)
            elif phase is P.PROGRESSING:
                _progressing(b, ctx, obs)
            elif phase in (P.PROMOTING, P.ROLLING_BACK):
                _converging(b, ctx, obs)
    if obs.action_error is not None and b.problem is None and not b.status.phase.terminal:
        b.problem = ("ActionFailed", f"retrying: {obs.action_error}"[:REASON_WRITTEN])
    if b.status.phase not in (P.PROGRESSING, P.PAUSED):
        hooking.cancel_gates(b)
    if b.status.phase is P.ROLLING_BACK and phase is not P.ROLLING_BACK:
        hooking.start(b, ctx.hooks, "rollback")
    if b.status.phase.terminal and not phase.terminal:
        hooking.start(b, ctx.hooks, "postRollout")
    new = b.status
    progress = step_progress(new)
    if progress != new.step_progress:
        new = new.model_copy(update={"step_progress": progress})
    wanted = conditions.of(new, b.problem, b.now)
    if wanted != list(new.conditions):
        new = new.model_copy(update={"conditions": wanted})
    if b.actions and new.phase in (P.PROMOTING, P.ROLLING_BACK):
        b.wake_in(0.0)
    return Decision(
        status=new,
        actions=tuple(dict.fromkeys(b.actions)),
        transitions=tuple(b.transitions),
        clear_action=obs.action in ACTIONS,
        requeue_after=b.requeue,
    )


__all__ = [
    "Action",
    "Context",
    "Decision",
    "IllegalTransition",
    "Observations",
    "ScaleDown",
    "SetWeights",
    "Transition",
    "WorkloadState",
    "analysis_due",
    "decide",
]
