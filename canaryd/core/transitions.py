"""The whole life of a rollout as a table: `TRANSITIONS: {phase: {trigger: next_phase}}`,
its endings included, and the operator's actions as triggers of it. Pure.

A phase accepts an action when the table has a transition on the action's trigger from
there (`accepts`): the API refuses the rest with the reason, the CLI and the controller ask
the same question, and `canaryd.core.machine` moves only along these edges.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from canaryd.core.model import Phase


class Trigger(enum.StrEnum):
    READY = "CanaryReady"
    READY_TIMEOUT = "CanaryNotReady"
    INVALID = "Invalid"
    BLOCKED = "TargetBusy"
    ROUTER_BROKEN = "RouterError"
    STEP_PASSED = "StepPassed"
    LAST_STEP_PASSED = "AllStepsPassed"
    GATE = "ManualGate"
    ANALYSIS_FAILED = "AnalysisFailed"
    INCONCLUSIVE_PAUSE = "InconclusivePause"
    INCONCLUSIVE_ROLLBACK = "InconclusiveRollback"
    PAUSE = "PauseRequested"
    RESUME = "ResumeRequested"
    PROMOTE = "PromoteRequested"
    ABORT = "AbortRequested"
    SUPERSEDED = "Superseded"
    TRAFFIC_CONFIRMED = "TrafficConfirmed"
    ABORT_CONFIRMED = "AbortConfirmed"
    FAILURE_CONFIRMED = "FailureConfirmed"
    HOOK_FAILED = "HookFailed"
    # Releases (`canaryd.core.releasing`): the steady state before, the hand-over after.
    NOT_STEADY = "NotSteadyState"
    START_ABANDONED = "CanaryStartAbandoned"
    STABLE_UPDATED = "StableUpdated"
    CANARY_CHANGED = "CanaryChanged"


P, T = Phase, Trigger
TRANSITIONS: dict[Phase, dict[Trigger, Phase]] = {
    P.PENDING: {
        T.READY: P.PROGRESSING,
        T.READY_TIMEOUT: P.FAILED,
        T.INVALID: P.FAILED,
        T.BLOCKED: P.FAILED,
        T.ROUTER_BROKEN: P.FAILED,
        T.HOOK_FAILED: P.FAILED,
        T.ABORT: P.ABORTED,
        T.SUPERSEDED: P.ABORTED,
        T.NOT_STEADY: P.FAILED,  # router split or stable unavailable: nothing touched
        T.START_ABANDONED: P.ROLLING_BACK,  # the canary was scaled up: scale it back down
    },
    P.PROGRESSING: {
        T.STEP_PASSED: P.PROGRESSING,
        T.LAST_STEP_PASSED: P.PROMOTING,
        T.GATE: P.PAUSED,
        T.ANALYSIS_FAILED: P.ROLLING_BACK,
        T.INCONCLUSIVE_PAUSE: P.PAUSED,
        T.INCONCLUSIVE_ROLLBACK: P.ROLLING_BACK,
        T.ROUTER_BROKEN: P.ROLLING_BACK,
        T.HOOK_FAILED: P.ROLLING_BACK,
        T.PAUSE: P.PAUSED,
        T.PROMOTE: P.PROMOTING,
        T.ABORT: P.ROLLING_BACK,
        T.SUPERSEDED: P.ROLLING_BACK,
    },
    P.PAUSED: {
        T.RESUME: P.PROGRESSING,
        T.STEP_PASSED: P.PROGRESSING,
        T.LAST_STEP_PASSED: P.PROMOTING,
        T.PROMOTE: P.PROMOTING,
        T.ABORT: P.ROLLING_BACK,
        T.SUPERSEDED: P.ROLLING_BACK,
    },
    # Promotion: the analysed pod template onto stable, stable rolled out (StableUpdated),
    # then all traffic back on stable and the canary at zero (TrafficConfirmed). A canary
    # whose template changed after analysis is never copied (CanaryChanged).
    P.PROMOTING: {
        T.STABLE_UPDATED: P.PROMOTING,
        T.TRAFFIC_CONFIRMED: P.SUCCEEDED,
        T.CANARY_CHANGED: P.ROLLING_BACK,
    },
    # Traffic verified back on stable; which ending was chosen when the rollback began
    # (status.outcome): analysis, inconclusive or superseded / operator abort / broken router.
    P.ROLLING_BACK: {
        T.TRAFFIC_CONFIRMED: P.ROLLED_BACK,
        T.ABORT_CONFIRMED: P.ABORTED,
        T.FAILURE_CONFIRMED: P.FAILED,
    },
}

# The operator's actions (the canaryd.io/action annotation, POST .../{action}, `canaryd
# <action>`), each the trigger it fires.
ACTIONS: Mapping[str, Trigger] = {
    "pause": T.PAUSE, "resume": T.RESUME, "promote": T.PROMOTE, "abort": T.ABORT,
}


def accepts(action: str, phase: Phase) -> bool:
    """Whether a rollout in `phase` acts on `action` (anything else is dropped)."""
    trigger = ACTIONS.get(action)
    return trigger is not None and trigger in TRANSITIONS.get(phase, {})


def accepting(action: str) -> frozenset[Phase]:
    """The phases that accept `action`."""
    return frozenset(p for p in Phase if accepts(action, p))


def ending(outcome: Phase) -> Trigger:
    """The trigger that ends a rollback in `outcome` (from the table)."""
    return next(t for t, p in TRANSITIONS[P.ROLLING_BACK].items() if p is outcome)
