"""What hooks do to a rollout, as pure functions of its status, its hooks and the time.

The machine asks `gate(b, hooks, stage, step)` at each stage: hooks of that stage not yet
called are recorded as Running in status (and a `RunHook` action asks the runtime to call
them), and the answer is whether the stage may go on (`PASSED`), must wait (`RUNNING`) or
failed (the failed run). What a call came back with reaches the machine as data
(`HookReport`, an observation) and is folded into status by `absorb`, which also times out
calls whose answer never came (a daemon restarted mid-call; a gate past its maxWait).
No I/O, no clock: `now` is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from canaryd.core.durations import format_duration
from canaryd.core.hookspec import GATING, Hook, HookRun, Outcome, Stage, run_id
from canaryd.core.model import REASON_WRITTEN, Phase, RolloutStatus

if TYPE_CHECKING:
    from canaryd.core.settings import Limits

PASSED = "passed"
RUNNING = "running"
HOOK_RUNS_KEPT = 256


@dataclass(frozen=True)
class RunHook:
    """Call `hook` for the run recorded in status as `run` (the runtime does the I/O)."""

    run: HookRun
    hook: Hook

    def __hash__(self) -> int:  # a Job template holds dicts (labels, open fields)
        return hash(self.run.id)


@dataclass(frozen=True)
class HookReport:
    """What a call came back with: Passed or Failed (final), or Waiting (a gate's not yet)."""

    id: str
    outcome: Outcome
    reason: str
    at: datetime
    asks: int = 1


class Builder(Protocol):
    """The part of the machine's decision builder hooks use."""

    now: datetime
    status: RolloutStatus
    actions: Any

    def update(self, **changes: Any) -> None: ...

    def wake_in(self, seconds: float) -> None: ...


def resolve(defaults: Sequence[Hook], own: Sequence[Hook]) -> tuple[Hook, ...]:
    """A profile's hooks, replaced by the rollout's hooks of the same name, then the rest of
    the rollout's."""
    mine = {h.name: h for h in own}
    merged = [mine.pop(h.name, h) for h in defaults]
    return (*merged, *mine.values())


def _deadline(hook: Hook) -> float | None:
    if hook.stage == "confirmPromotion" and hook.job is None:
        return hook.max_wait
    return hook.timeout


def _finish(run: HookRun, outcome: Outcome, reason: str, at: datetime, seq: int) -> HookRun:
    return run.model_copy(update={"outcome": outcome, "reason": reason[:2048],
                                  "finished": at, "finished_seq": seq})


def absorb(b: Builder, hooks: Sequence[Hook], reports: Iterable[HookReport]) -> list[HookRun]:
    """Fold the calls' answers into status, and time out those past their deadline. Returns
    the runs that finished now (each finishes once: a later report of it is ignored)."""
    by_id = {r.id: r for r in reports}
    by_name = {h.name: h for h in hooks}
    finished: list[HookRun] = []
    runs = list(b.status.hooks)
    seq = b.status.sequence
    for i, run in enumerate(runs):
        if run.done:
            continue
        report = by_id.get(run.id)
        hook = by_name.get(run.name)
        if report is not None and report.outcome in ("Passed", "Failed"):
            seq += 1
            runs[i] = _finish(run, report.outcome, report.reason, report.at, seq)
        elif hook is None or hook.stage != run.stage:
            seq += 1
            runs[i] = _finish(run, "Failed", "the hook was removed from the spec", b.now, seq)
        elif (limit := _deadline(hook)) is not None and (
            (b.now - run.started).total_seconds() >= limit
        ):
            what = ("its Job did not finish within its timeout" if hook.job is not None
                    else "no yes within maxWait" if hook.stage == "confirmPromotion"
                    else "no answer within its timeout")
            seq += 1
            runs[i] = _finish(run, "Failed", f"{what} ({format_duration(limit)})", b.now, seq)
        else:
            if report is not None and (report.reason != run.reason or report.asks != run.asks):
                runs[i] = run.model_copy(update={"outcome": report.outcome,
                                                 "reason": report.reason[:2048],
                                                 "asks": report.asks})
            if limit is not None:
                b.wake_in(limit - (b.now - run.started).total_seconds())
            continue
        finished.append(runs[i])
    if runs != list(b.status.hooks):
        b.update(hooks=runs, sequence=seq)
    return finished


def start(b: Builder, hooks: Sequence[Hook], stage: Stage, step: int | None = None) -> None:
    """Record and call every hook of `stage` not yet called (for this step)."""
    have = {r.id for r in b.status.hooks}
    for hook in hooks:
        if hook.stage != stage:
            continue
        rid = run_id(stage, hook.name, step if stage == "step" else None)
        if rid in have:
            continue
        seq = b.status.sequence + 1
        run = HookRun(id=rid, name=hook.name, stage=stage,
                      step=step if stage == "step" else None, outcome="Running",
                      started=b.now, seq=seq)
        b.update(hooks=[*b.status.hooks, run][-HOOK_RUNS_KEPT:], sequence=seq)
        b.actions.append(RunHook(run=run, hook=hook))


def gate(
    b: Builder, hooks: Sequence[Hook], stage: Stage, step: int | None = None
) -> str | HookRun:
    """Whether `stage` may go on: PASSED, RUNNING (calls started or in flight), or the first
    failed run."""
    assert stage in GATING
    if not any(h.stage == stage for h in hooks):
        return PASSED
    start(b, hooks, stage, step)
    wanted = {run_id(stage, h.name, step if stage == "step" else None)
              for h in hooks if h.stage == stage}
    runs = [r for r in b.status.hooks if r.id in wanted]
    failed = next((r for r in runs if r.outcome == "Failed"), None)
    if failed is not None:
        return failed
    if all(r.outcome == "Passed" for r in runs):
        return PASSED
    b.wake_in(1.0)
    return RUNNING


def pending(status: RolloutStatus) -> bool:
    """A call still out (the controller keeps a finished rollout due until it is answered)."""
    return any(not r.done for r in status.hooks)


def running_step_hooks(status: RolloutStatus) -> bool:
    """The current step's hooks are still out: its analysis waits for them."""
    return any(r.stage == "step" and r.step == status.step_index and not r.done
               for r in status.hooks)


def describe(run: HookRun) -> str:
    where = f" (step {run.step + 1})" if run.step is not None else ""
    return f"{run.stage} hook {run.name}{where} failed: {run.reason}"


def confirm_index(steps: Sequence[Any]) -> int:
    """confirmPromotion gates the step reaching 100% (blue-green: the switch), or the
    promotion after the last step."""
    return next((i for i, s in enumerate(steps) if s.weight == 100), len(steps))


def confirmed(
    b: Builder, hooks: Sequence[Hook], message: str, *,
    resume: Callable[[str], None], fail: Callable[[str], None],
) -> bool:
    """Whether the confirmPromotion gates said yes. A no (or no yes within maxWait) calls
    `fail`; while they wait the rollout stays Progressing (from Paused: `resume`), so its
    analysis goes on and a breach still rolls back."""
    got = gate(b, hooks, "confirmPromotion")
    if isinstance(got, HookRun):
        fail(describe(got))
        return False
    if got == PASSED:
        return True
    waiting = "; ".join(f"{r.name}: {r.reason or 'asked'}" for r in b.status.hooks
                        if r.stage == "confirmPromotion" and not r.done)
    wait = f"{message}; waiting for confirmPromotion ({waiting}); analysis goes on"
    if b.status.phase is Phase.PAUSED:
        resume(wait)
    elif b.status.reason != wait[:REASON_WRITTEN]:
        b.update(reason=wait)
    return False


def failed_run(b: Builder, limits: Limits, run: HookRun) -> str | None:
    """Count a step hook of the current step that failed now as a failed analysis run;
    the rollback's reason when that reaches the profile's limits."""
    s = b.status
    if run.stage != "step" or run.outcome != "Failed" or run.step != s.step_index:
        return None
    b.update(failures=s.failures + 1, consecutive_failures=s.consecutive_failures + 1,
             consecutive_inconclusive=0)
    s = b.status
    if s.failures >= limits.failures or s.consecutive_failures >= limits.consecutive_failures:
        return (f"analysis failed ({s.failures} failed runs, {s.consecutive_failures} in a "
                f"row): {describe(run)}")
    return None


def confirming(status: RolloutStatus) -> bool:
    """The confirmPromotion gates were asked (the step before them is approved already)."""
    return any(r.stage == "confirmPromotion" for r in status.hooks)


def cancel_gates(b: Builder) -> None:
    """A gate still asked when the rollout moved on (rolling back, promoted by the
    operator, finished) is no longer needed: Cancelled, and no longer asked."""
    if not any(r.stage == "confirmPromotion" and not r.done for r in b.status.hooks):
        return
    seq = b.status.sequence
    runs = list(b.status.hooks)
    for i, run in enumerate(runs):
        if run.stage == "confirmPromotion" and not run.done:
            seq += 1
            runs[i] = _finish(run, "Cancelled", f"no longer asked: the rollout is "
                              f"{b.status.phase.value}", b.now, seq)
    b.update(hooks=runs, sequence=seq)
