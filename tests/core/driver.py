"""The one state-machine driver of the core tests.

`Driver` feeds observations to `machine.decide` at a virtual time and applies the actions
to a pretend world the way the runtime does: SetWeights moves the router, RunHook calls are
collected (a test answers them with `answer`, fed back on every later tick), ScaleDown is
recorded. Test modules subclass it for what their world adds (a release's Deployments, a
profile's real checks) and build its `machine.Context` from their own specs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from canaryd.core import machine
from canaryd.core.hooks import HookReport, RunHook
from canaryd.core.model import CheckResult, RolloutStatus, Weights

T0 = datetime(2026, 1, 1, tzinfo=UTC)
READY = machine.WorkloadState(exists=True, available=True)


class Driver:
    def __init__(self, ctx: machine.Context, *, now: datetime = T0) -> None:
        self.ctx = ctx
        self.status = RolloutStatus()
        self.now = now
        self.router = Weights(stable=100, canary=0)
        self.transitions: list[machine.Transition] = []
        self.calls: list[RunHook] = []  # hook calls the runtime would make
        self.answers: list[HookReport] = []  # their answers, observed on every tick
        self.scaled: list[str] = []  # Deployments scaled down

    def observe(self, obs: dict[str, Any]) -> None:
        """What this world shows a round, beside what the tick was given."""
        obs.setdefault("weights", self.router)
        obs.setdefault("hooks", tuple(self.answers))

    def apply(self, action: object) -> None:
        """Carry one action out, as the runtime would."""
        if isinstance(action, machine.SetWeights):
            self.router = action.weights
        elif isinstance(action, RunHook):
            self.calls.append(action)
        elif isinstance(action, machine.ScaleDown):
            self.scaled.append(action.deployment)

    def tick(self, seconds: float = 0.0, **obs: Any) -> machine.Decision:
        self.now += timedelta(seconds=seconds)
        self.observe(obs)
        decision = machine.decide(self.ctx, self.status, machine.Observations(**obs), self.now)
        self.status = decision.status
        self.transitions.extend(decision.transitions)
        for action in decision.actions:
            self.apply(action)
        return decision

    def analysis(self, seconds: float, results: tuple[CheckResult, ...],
                 **obs: Any) -> machine.Decision:
        """An analysis round `seconds` on (it must be due), with these results."""
        self.now += timedelta(seconds=seconds)
        assert machine.analysis_due(self.ctx, self.status, self.now)
        return self.tick(analysis=results, **obs)

    def answer(self, run_id: str, outcome: str, reason: str = "HTTP 200") -> None:
        self.answers.append(HookReport(id=run_id, outcome=outcome,  # type: ignore[arg-type]
                                       reason=reason, at=self.now))
