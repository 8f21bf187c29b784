"""The state machine, driven tick by tick with a virtual clock: no I/O, no sleeping."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta

import pytest

from canaryd.core import machine, transitions
from canaryd.core.hooks import HookReport
from canaryd.core.hookspec import Hook
from canaryd.core.model import CheckResult, Phase, RolloutSpec, RolloutStatus, Verdict, Weights
from canaryd.core.plan import PlanError, resolve_analysis, steps
from canaryd.core.settings import parse_settings
from tests.core import driver

T0 = driver.T0

SETTINGS = parse_settings(
    {
        "profiles": {
            "p": {
                "interval": "10s",
                "minInterval": "1s",
                "minRequests": 10,
                "checks": [{"metric": "istio-success-rate", "min": 99}],
                "limits": {"failures": 2, "consecutiveFailures": 2, "consecutiveInconclusive": 2},
            },
            "strict": {
                "interval": "10s",
                "checks": [{"metric": "istio-success-rate", "min": 99}],
                "limits": {"consecutiveFailures": 1, "onInconclusive": "rollback",
                           "consecutiveInconclusive": 1},
            },
        }
    }
)


def make_spec(**plan: object) -> RolloutSpec:
    return RolloutSpec.model_validate(
        {
            "target": "podinfo",
            "version": "v2",
            "router": {"istio": {"virtualService": "podinfo",
                                 "stable": {"host": "podinfo", "subset": "stable"},
                                 "canary": {"host": "podinfo", "subset": "canary"}}},
            "workloads": {"stable": "podinfo-stable", "canary": "podinfo-canary",
                          "readyTimeout": "60s"},
            "plan": plan or {"steps": [{"weight": 10}, {"weight": 50, "pause": "30s"}]},
            "analysis": {"profile": "p"},
        }
    )


def context(spec: RolloutSpec, settings=SETTINGS) -> machine.Context:  # type: ignore[no-untyped-def]
    return machine.Context(
        steps=steps(spec), analysis=resolve_analysis(settings, spec),
        ready_timeout=spec.workloads.ready_timeout, hooks=tuple(spec.hooks),
    )


def run(verdict: Verdict, now: datetime, value: float = 100.0) -> tuple[CheckResult, ...]:
    return (
        CheckResult(metric="istio-success-rate", query="q", value=value, threshold=">= 99",
                    verdict=verdict, reason="r", time=now, step=0),
    )


READY = driver.READY


class Driver(driver.Driver):
    """The core tests' driver on a spec, with analysis rounds of one verdict."""

    def __init__(self, spec: RolloutSpec) -> None:
        super().__init__(context(spec))

    def analyse(self, seconds: float, verdict: Verdict, value: float = 100.0,
                ) -> machine.Decision:
        return self.analysis(seconds, run(verdict, self.now + timedelta(seconds=seconds),
                                          value))


def test_healthy_canary_walks_every_step_then_promotes() -> None:
    d = Driver(make_spec())
    d.tick(canary=READY)
    assert d.status.phase is Phase.PROGRESSING and d.router.canary == 10
    assert not machine.analysis_due(d.ctx, d.status, d.now + timedelta(seconds=9))
    d.analyse(10, Verdict.PASS)
    assert d.status.step_index == 1 and d.router.canary == 50
    d.analyse(10, Verdict.PASS)
    assert d.status.phase is Phase.PROGRESSING, "the 30s pause is not over"
    decision = d.tick(5)
    assert decision.requeue_after == pytest.approx(5.0), "next analysis is the next deadline"
    d.analyse(5, Verdict.PASS)
    decision = d.tick(9)
    assert decision.requeue_after == pytest.approx(1.0)
    assert d.status.phase is Phase.PROGRESSING
    d.analyse(1, Verdict.PASS)
    assert d.status.phase is Phase.PROMOTING and d.router.canary == 100
    d.tick(1)
    assert d.status.phase is Phase.SUCCEEDED
    completed = {c.type: c.status for c in d.status.conditions}
    assert completed == {"Completed": "True", "Promoted": "True", "Paused": "False"}


def test_failed_runs_roll_back_at_the_consecutive_limit_and_verify_traffic() -> None:
    d = Driver(make_spec())
    d.tick(canary=READY)
    d.analyse(10, Verdict.FAIL)
    assert d.status.phase is Phase.PROGRESSING and d.status.consecutive_failures == 1
    d.analyse(10, Verdict.FAIL)
    assert d.status.phase is Phase.ROLLING_BACK and d.router.canary == 0
    d.tick(0, weights=Weights(stable=90, canary=10))  # router not yet showing the rollback
    assert d.status.phase is Phase.ROLLING_BACK
    d.tick(1)
    assert d.status.phase is Phase.ROLLED_BACK
    assert "analysis failed" in d.status.reason and "traffic verified" in d.status.reason


def test_a_failure_between_passes_does_not_advance_the_step() -> None:
    d = Driver(make_spec())
    d.tick(canary=READY)
    d.analyse(10, Verdict.FAIL)
    assert d.status.step_index == 0
    d.analyse(10, Verdict.PASS)
    assert d.status.step_index == 1 and d.status.failures == 1


def test_idle_canary_pauses_instead_of_failing() -> None:
    d = Driver(make_spec())
    d.tick(canary=READY)
    d.analyse(10, Verdict.INCONCLUSIVE)
    d.analyse(10, Verdict.INCONCLUSIVE)
    assert d.status.phase is Phase.PAUSED and d.status.paused_by == "analysis"
    assert d.router.canary == 10, "traffic split stays as it was while paused"
    d.tick(5, action="resume")
    assert d.status.phase is Phase.PROGRESSING and d.status.consecutive_inconclusive == 0


def test_strict_profile_rolls_back_on_first_failure_and_on_inconclusive() -> None:
    spec = make_spec().model_copy(update={"analysis": make_spec().analysis.model_copy(
        update={"profile": "strict"})})
    for verdict in (Verdict.FAIL, Verdict.INCONCLUSIVE):
        d = Driver(spec)
        d.tick(canary=READY)
        d.analyse(10, verdict)
        assert d.status.phase is Phase.ROLLING_BACK


def test_canary_never_ready_fails_without_touching_routing() -> None:
    d = Driver(make_spec())
    not_ready = machine.WorkloadState(exists=True, available=False, detail="0/2 available")
    d.tick(canary=not_ready)
    decision = d.tick(59, canary=not_ready)
    assert d.status.phase is Phase.PENDING and not decision.actions
    d.tick(1, canary=not_ready)
    assert d.status.phase is Phase.FAILED and "0/2 available" in d.status.reason
    assert d.router.canary == 0 and not any(t.target is Phase.PROGRESSING for t in d.transitions)


def test_second_rollout_for_a_busy_target_fails_naming_the_running_one() -> None:
    d = Driver(make_spec())
    d.tick(canary=READY, blocking="demo/first")
    assert d.status.phase is Phase.FAILED and "demo/first" in d.status.reason


def test_superseded_rollout_rolls_back() -> None:
    d = Driver(make_spec())
    d.tick(canary=READY)
    d.tick(1, superseded_by="demo/newer")
    assert d.status.phase is Phase.ROLLING_BACK and d.router.canary == 0
    d.tick(1)
    assert d.status.phase is Phase.ROLLED_BACK and "demo/newer" in d.status.reason


def test_operator_pause_resume_promote_abort() -> None:
    d = Driver(make_spec())
    d.tick(canary=READY)
    d.tick(3, action="pause")
    assert d.status.phase is Phase.PAUSED and d.status.paused_by == "operator"
    assert not machine.analysis_due(d.ctx, d.status, d.now + timedelta(hours=1))
    d.tick(100, action="resume")
    assert d.status.phase is Phase.PROGRESSING and d.status.step_started_at == d.now
    d.tick(1, action="promote")
    assert d.status.phase is Phase.PROMOTING and d.router.canary == 100
    d.tick(1)
    assert d.status.phase is Phase.SUCCEEDED

    d = Driver(make_spec())
    d.tick(canary=READY)
    d.tick(1, action="abort")
    d.tick(1)
    assert d.status.phase is Phase.ABORTED and d.router.canary == 0


def test_manual_gate_waits_for_approval() -> None:
    d = Driver(make_spec(steps=[{"weight": 20, "gate": "manual"}, {"weight": 60}]))
    d.tick(canary=READY)
    d.analyse(10, Verdict.PASS)
    assert d.status.phase is Phase.PAUSED and d.status.paused_by == "gate"
    d.tick(500)
    assert d.status.phase is Phase.PAUSED
    d.tick(1, action="resume")
    assert d.status.phase is Phase.PROGRESSING and d.status.step_index == 1
    assert d.router.canary == 60


def test_recorded_weights_are_restored_after_a_crash_between_status_and_router_write() -> None:
    d = Driver(make_spec())
    d.tick(canary=READY)
    d.analyse(10, Verdict.PASS)  # status now says 50%, and the router got it
    d.router = Weights(stable=90, canary=10)  # as if the process died before the write
    decision = d.tick(1)
    assert decision.actions == (machine.SetWeights(50),)
    assert d.router.canary == 50 and d.status.step_index == 1


def test_a_deadline_that_passed_while_down_is_handled_at_once() -> None:
    d = Driver(make_spec())
    d.tick(canary=READY)
    d.now += timedelta(minutes=10)
    assert machine.analysis_due(d.ctx, d.status, d.now)
    d.tick(0, analysis=run(Verdict.PASS, d.now))
    assert d.status.step_index == 1


def test_every_transition_is_in_the_table() -> None:
    for source, edges in machine.TRANSITIONS.items():
        assert not source.terminal
        for target in edges.values():
            assert isinstance(target, Phase)


def test_step_weight_plan_expands_to_max_weight() -> None:
    assert [s.weight for s in steps(make_spec(stepWeight=20, maxWeight=50))] == [20, 40, 50]
    assert [s.weight for s in steps(make_spec(stepWeight=25, maxWeight=100))] == [25, 50, 75, 100]


def test_overrides_may_only_tighten_thresholds() -> None:
    spec = make_spec()
    tighter = spec.analysis.model_validate(
        {"profile": "p", "thresholds": {"istio-success-rate": {"min": 99.5}}})
    looser = spec.analysis.model_validate(
        {"profile": "p", "thresholds": {"istio-success-rate": {"min": 90}}})
    ok = resolve_analysis(SETTINGS, spec.model_copy(update={"analysis": tighter}))
    assert ok.checks[0].min == 99.5
    with pytest.raises(PlanError, match=r"thresholds\.istio-success-rate\.min"):
        resolve_analysis(SETTINGS, spec.model_copy(update={"analysis": looser}))
    with pytest.raises(PlanError, match="unknown profile"):
        resolve_analysis(SETTINGS, spec.model_copy(
            update={"analysis": spec.analysis.model_validate({"profile": "nope"})}))


def test_a_rollback_that_cannot_reach_the_router_keeps_trying_and_says_why() -> None:
    d = Driver(make_spec())
    d.tick(canary=READY)
    d.tick(1, action="abort")
    assert d.status.phase is Phase.ROLLING_BACK
    decision = d.tick(1, weights=None, router_error="virtualservice demo/podinfo not found")
    assert d.status.phase is Phase.ROLLING_BACK
    assert "cannot verify traffic yet" in d.status.reason and "not found" in d.status.reason
    assert decision.requeue_after == pytest.approx(1.0)
    d.tick(1)
    assert d.status.phase is Phase.ABORTED


def test_status_counts_steps_from_one_as_every_message_does() -> None:
    d = Driver(make_spec())
    d.tick()
    assert d.status.phase is Phase.PENDING and d.status.step_progress == "0/2"
    d.tick(canary=READY)
    assert (d.status.step_index, d.status.step_progress) == (0, "1/2")
    assert "step 1/2" in d.transitions[-1].message
    d.analyse(10, Verdict.PASS)
    assert (d.status.step_index, d.status.step_progress) == (1, "2/2")
    assert "step 2/2 at 50%" in d.transitions[-1].message
    wire = d.status.wire()
    assert wire["stepIndex"] == 1 and wire["stepProgress"] == "2/2"
    assert wire["checks"][0]["stepIndex"] == 0 and "step" not in wire["checks"][0]
    before = [{("step" if k == "stepIndex" else k): v for k, v in c.items()}
              for c in wire["checks"]]
    old = RolloutStatus.model_validate({**wire, "checks": before})
    assert old.checks[0].step == 0, "status written with checks[].step still reads"


def _branch(d: Driver) -> Driver:
    twin = copy.copy(d)
    twin.transitions = []
    return twin


def _events() -> list[tuple[float, dict[str, object], Verdict | None]]:
    """What can happen next: (seconds passing, observations, an analysis verdict if due)."""
    broken = {"weights": None, "router_error": "virtualservice demo/podinfo not found"}
    return [
        (0, {"canary": READY}, None), (61, {}, None), (1, {}, None),
        *((10, {}, v) for v in Verdict),
        *((1, {"action": a}, None) for a in [*transitions.ACTIONS, "explode"]),
        (1, {"superseded_by": "demo/newer"}, None), (1, broken, None),
        (1, {"invalid": "x"}, None), (1, {"blocking": "x"}, None),
        *((1, {"hooks": (HookReport(id=i, outcome=o, reason="r", at=T0),)}, None)  # type: ignore[arg-type]
          for i in ("preRollout/smoke", "confirmPromotion/cab") for o in ("Passed", "Failed")),
    ]


# Edges only a release takes (both Deployments observed): tests/core/test_release_machine.py
# explores those.
T = transitions.Trigger
RELEASE_ONLY = {T.NOT_STEADY, T.START_ABANDONED, T.STABLE_UPDATED, T.CANARY_CHANGED}


def test_exploring_every_event_from_every_state_takes_each_transition_in_the_table() -> None:
    """Breadth first, from a new rollout, every next event (readiness, time, each analysis
    verdict, each action, supersession, a broken router, an invalid spec, a busy target),
    over plans with and without gates and both inconclusive policies: the machine moves
    only along the table, and takes every entry of it, the endings included."""
    specs = [
        make_spec(),
        make_spec(steps=[{"weight": 10, "gate": "manual"}, {"weight": 50, "gate": "manual"}]),
        make_spec(steps=[{"weight": 30}]).model_copy(update={
            "analysis": make_spec().analysis.model_validate({"profile": "strict"})}),
        make_spec(steps=[{"weight": 30}]).model_copy(update={"hooks": [
            Hook.model_validate({"name": n, "stage": s, "webhook": {"url": "http://h/"}})
            for n, s in (("smoke", "preRollout"), ("cab", "confirmPromotion"))]}),
    ]
    taken: set[tuple[Phase, transitions.Trigger, Phase]] = set()
    for spec in specs:
        frontier, seen = [Driver(spec)], set()
        while frontier:
            d = frontier.pop(0)
            s = d.status
            state = (s.phase, s.step_index, s.paused_by, s.outcome, s.failures,
                     # passes beyond the profile's minimum change nothing (a gate may wait)
                     s.consecutive_failures, s.consecutive_inconclusive,
                     min(s.passed_runs_in_step, 2),
                     s.phase_started_at is None, d.router,
                     tuple(r.outcome for r in s.hooks))
            if state in seen or s.phase.terminal:
                continue
            seen.add(state)
            for seconds, obs, verdict in _events():
                twin = _branch(d)
                at = twin.now + timedelta(seconds=seconds)
                if verdict is not None and machine.analysis_due(twin.ctx, twin.status, at):
                    obs = {**obs, "analysis": run(verdict, at)}
                for t in twin.tick(seconds, **obs).transitions:
                    assert machine.TRANSITIONS[t.source][t.trigger] is t.target
                    taken.add((t.source, t.trigger, t.target))
                frontier.append(twin)
    table = {(s, t, p) for s, row in machine.TRANSITIONS.items() for t, p in row.items()
             if t not in RELEASE_ONLY}
    assert table - taken == set(), "never taken"


def test_the_actions_each_phase_accepts_come_from_the_table() -> None:
    assert {a: transitions.accepting(a) for a in transitions.ACTIONS} == {
        "pause": {Phase.PROGRESSING},
        "resume": {Phase.PAUSED},
        "promote": {Phase.PROGRESSING, Phase.PAUSED},
        "abort": {Phase.PENDING, Phase.PROGRESSING, Phase.PAUSED},
    }
    assert not transitions.accepts("explode", Phase.PROGRESSING)
    terminal = [p for p in Phase if p.terminal]
    assert not any(transitions.accepts(a, p) for a in transitions.ACTIONS for p in terminal)
