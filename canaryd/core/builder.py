"""What one `decide` call builds: the status it moves along TRANSITIONS, the actions it asks
for and when to look again, and the moves every part of the machine shares. Pure.

`canaryd.core.machine` decides a rollout's phases with it; `canaryd.core.releasing` decides a
release's own stages (canary start, promotion onto stable, clean-up) with the same builder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from canaryd.core import conditions
from canaryd.core import hooks as hooking
from canaryd.core import release as rel
from canaryd.core.hooks import RunHook
from canaryd.core.hookspec import Hook, HookRun
from canaryd.core.model import REASON_WRITTEN, HistoryEntry, Phase, RolloutStatus, Step, Weights
from canaryd.core.transitions import TRANSITIONS, Trigger

HISTORY_KEPT = 100


@dataclass(frozen=True)
class SetWeights:
    """Route `canary`% to the canary destination, the rest to stable; read it back."""

    canary: int

    @property
    def weights(self) -> Weights:
        return Weights(stable=100 - self.canary, canary=self.canary)


@dataclass(frozen=True)
class ScaleDown:
    """Scale the old version's Deployment (blue) to zero replicas."""

    deployment: str


@dataclass(frozen=True)
class Transition:
    source: Phase
    target: Phase
    trigger: Trigger
    message: str


Action = SetWeights | ScaleDown | RunHook | rel.PrepareCanary | rel.CopyTemplate


class IllegalTransition(RuntimeError):
    pass


@dataclass
class Builder:
    now: datetime
    status: RolloutStatus
    transitions: list[Transition] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    finished: list[HookRun] = field(default_factory=list)  # hook runs that finished now
    requeue: float | None = None
    problem: conditions.Problem | None = None  # reported as Degraded=True

    def update(self, **changes: Any) -> None:
        for name in ("reason", "rollback_reason"):
            if isinstance(changes.get(name), str):
                changes[name] = changes[name][:REASON_WRITTEN]
        self.status = self.status.model_copy(update=changes)

    def move(self, trigger: Trigger, message: str, **changes: Any) -> None:
        source = self.status.phase
        target = TRANSITIONS.get(source, {}).get(trigger)
        if target is None:
            raise IllegalTransition(f"{source} has no transition on {trigger}")
        message = message[:REASON_WRITTEN]
        self.transitions.append(Transition(source, target, trigger, message))
        seq = self.status.sequence + 1
        entry = HistoryEntry(seq=seq, time=self.now, source=source, phase=target,
                             trigger=trigger.value, reason=message,
                             weights=changes.get("weights", self.status.weights))
        self.update(
            phase=target,
            reason=message,
            sequence=seq,
            history=[*self.status.history, entry][-HISTORY_KEPT:],
            **({"phase_started_at": self.now} if target is not source else {}),
            **changes,
        )

    def route(self, canary: int) -> None:
        weights = SetWeights(canary).weights
        history = self.status.history
        if history and history[-1].seq == self.status.sequence:
            # the transition that caused this move records the weights it set
            history = [*history[:-1], history[-1].model_copy(update={"weights": weights})]
        self.update(weights=weights, history=history)
        self.actions.append(SetWeights(canary))

    def wake_in(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        self.requeue = seconds if self.requeue is None else min(self.requeue, seconds)


def since(now: datetime, then: datetime | None) -> float:
    return (now - then).total_seconds() if then is not None else 0.0


def start_rollback(b: Builder, trigger: Trigger, message: str, outcome: Phase) -> None:
    b.move(trigger, message, outcome=outcome, rollback_reason=message, paused_by=None)
    b.route(0)


def start_step(
    b: Builder, steps: Sequence[Step], hooks: Sequence[Hook], index: int, trigger: Trigger,
    message: str,
) -> None:
    b.move(
        trigger,
        message,
        step_index=index,
        step_started_at=b.now,
        last_analysis_at=None,
        passed_runs_in_step=0,
        consecutive_inconclusive=0,
        paused_by=None,
    )
    b.route(steps[index].weight)
    hooking.start(b, hooks, "step", index)
