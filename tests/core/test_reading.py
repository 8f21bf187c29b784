"""Whatever another client writes into a Rollout, reading it never raises: a status canaryd can
act on comes back parsed, anything else as unknown with the field to fix."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from canaryd.core import conditions, reading, targets
from canaryd.core.model import Phase
from tests.core.test_machine import READY, T0, Driver, make_spec

T = "2026-01-01T00:00:00Z"
PROGRESSING = {"phase": "Progressing", "weights": {"stable": 90, "canary": 10},
               "phaseStartedAt": T, "stepStartedAt": T, "stepCount": 2}


def obj(status: Any, **meta: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "demo", "name": "r", **meta},
            "spec": {"target": "podinfo"}, "status": status}


@pytest.mark.parametrize(("status", "phase"), [
    (None, Phase.PENDING),
    ({}, Phase.PENDING),
    ({"controller": "x", "claimedAt": T}, Phase.PENDING),  # claimed before the first round
    (PROGRESSING, Phase.PROGRESSING),
    ({**PROGRESSING, "resumePhase": None}, Phase.PROGRESSING),  # retired, written by 0.1
    ({"phase": "Succeeded"}, Phase.SUCCEEDED),
])
def test_a_status_canaryd_wrote_reads_as_its_phase(status: Any, phase: Phase) -> None:
    read = reading.read_status(obj(status))
    assert read.phase is phase and read.label == phase.value and read.problem == ""


@pytest.mark.parametrize(("status", "field"), [
    ({"phase": "Exploded"}, "status.phase: 'Exploded' is not a phase"),
    ({"phase": 7}, "status.phase: 7 is not a phase"),
    ({"phase": ["Succeeded"]}, "status.phase: ['Succeeded'] is not a phase"),  # unhashable
    ({"phase": {"a": 1}}, "status.phase: {'a': 1} is not a phase"),
    ("garbage", "status: a str, not an object"),
    ({**PROGRESSING, "stepIndex": "three"}, "status.stepIndex"),
    ({**PROGRESSING, "weights": "half"}, "status.weights"),
    ({**PROGRESSING, "failures": -1}, "status.failures"),
    ({"phase": "Progressing"}, "status.weights: missing, and phase Progressing needs it"),
    ({**PROGRESSING, "stepStartedAt": None}, "status.stepStartedAt: missing"),
    ({**PROGRESSING, "weights": {"stable": 90, "canary": 90}}, "status.weights: 90/90"),
    ({**PROGRESSING, "stepIndex": 2}, "status.stepIndex: 2 is beyond stepCount 2"),
    ({**PROGRESSING, "reason": "x" * (1 << 20)}, "status.reason"),
    ({**PROGRESSING, "history": [{"seq": i, "time": T, "source": "Pending",
                                  "phase": "Progressing", "trigger": "t", "reason": ""}
                                 for i in range(10_000)]}, "status.history"),
    ({**PROGRESSING, "sequence": 2**60}, "status.sequence"),
    ({**PROGRESSING, "surprise": True}, "status.surprise"),
])
def test_anything_else_reads_as_unknown_naming_the_field(status: Any, field: str) -> None:
    read = reading.read_status(obj(status))
    assert read.status is None and read.phase is None and read.label == "Unknown"
    assert read.problem.startswith(field), read.problem
    assert len(read.problem) < 1000
    assert read.active and not read.terminal, "an unreadable rollout may still hold traffic"


def test_an_unknown_rollout_keeps_its_target() -> None:
    bad = reading.entry(obj({"phase": "Exploded"}, creationTimestamp="2026-01-01T00:00:00Z"))
    assert bad.phase is None
    newer = reading.entry({"metadata": {"namespace": "demo", "name": "new",
                                        "creationTimestamp": "2026-01-02T00:00:00Z"},
                           "spec": {"target": "podinfo", "supersede": "yes"}})
    assert newer.phase is Phase.PENDING and newer.supersede is False, "only true is true"
    assert targets.arbitrate([bad, newer])["demo/new"].blocking == "demo/r"


def test_degraded_is_reported_only_into_conditions_keeping_the_readable_ones() -> None:
    raw = {"phase": "Exploded", "conditions": [
        {"type": "Completed", "status": "False", "reason": "x", "lastTransitionTime": T},
        "garbage",
    ]}
    written = conditions.report(raw, ("InvalidStatus", "status.phase: ..."), T0)
    assert [(c["type"], c["status"], c["reason"]) for c in written] == [
        ("Completed", "False", "x"), ("Degraded", "True", "InvalidStatus")]
    again = conditions.report({**raw, "conditions": written}, ("InvalidStatus", "other"),
                              T0 + timedelta(seconds=5))
    assert again[1]["lastTransitionTime"] == written[1]["lastTransitionTime"]


def test_an_unknown_action_holds_the_rollout_and_says_so() -> None:
    d = Driver(make_spec())
    d.tick(canary=READY)
    decision = d.tick(30, action="explode")
    assert d.status.phase is Phase.PROGRESSING and d.status.step_index == 0
    assert not decision.actions and not decision.transitions and not decision.clear_action
    problem = conditions.degraded(d.status.conditions)
    assert problem is not None and problem[0] == "UnknownAction"
    assert "'explode' is not an action (pause, resume, promote, abort)" in problem[1]
    d.tick(1)  # annotation removed: the rollout moves on, and Degraded says it is over
    assert conditions.degraded(d.status.conditions) is None
    assert {c.type: c.reason for c in d.status.conditions}["Degraded"] == "Resolved"


def test_a_step_beyond_the_plan_holds_instead_of_raising() -> None:
    d = Driver(make_spec())
    d.tick(canary=READY)
    d.status = d.status.model_copy(update={"step_index": 5})
    d.tick(60)
    problem = conditions.degraded(d.status.conditions)
    assert problem is not None and problem[0] == "InvalidStatus"
    assert "stepIndex 5 is beyond the plan's 2 steps" in problem[1]


def test_reasons_canaryd_writes_are_clipped() -> None:
    d = Driver(make_spec())
    d.tick(canary=READY)
    d.tick(1, router_error="x" * 100_000)
    assert d.status.phase is Phase.ROLLING_BACK
    assert len(d.status.reason) <= 4096 and len(d.status.history[-1].reason) <= 4096
    assert reading.read_status(obj(d.status.wire())).status == d.status
