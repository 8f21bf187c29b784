"""Hooks in the state machine, tick by tick with a virtual clock: what each stage's answers
(pure data, `HookReport`) do to a rollout, and the calls' timeouts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from canaryd.core import machine
from canaryd.core.hooks import HookReport
from canaryd.core.model import Phase, RolloutSpec, Verdict
from tests.core import test_machine
from tests.core.test_machine import READY

URL = "https://hooks.example/gate"


def spec_with(*hooks: dict[str, Any], steps: list[dict[str, Any]] | None = None) -> RolloutSpec:
    return RolloutSpec.model_validate({
        "target": "podinfo", "version": "v2",
        "router": {"istio": {"virtualService": "podinfo",
                             "stable": {"host": "podinfo", "subset": "stable"},
                             "canary": {"host": "podinfo", "subset": "canary"}}},
        "workloads": {"stable": "podinfo-stable", "canary": "podinfo-canary"},
        "plan": {"steps": steps or [{"weight": 10}, {"weight": 50}]},
        "analysis": {"profile": "p"},
        "hooks": [{"webhook": {"url": URL}, **h} for h in hooks],
    })


class Driver(test_machine.Driver):
    """test_machine's driver; hook calls and answers are the shared driver's own."""

    def run_of(self, run_id: str) -> Any:
        return next(r for r in self.status.hooks if r.id == run_id)




def test_a_failing_prerollout_hook_fails_the_rollout_without_moving_traffic() -> None:
    d = Driver(spec_with({"name": "smoke", "stage": "preRollout"}))
    d.tick(canary=READY)
    assert d.status.phase is Phase.PENDING and [c.run.id for c in d.calls] == ["preRollout/smoke"]
    assert d.run_of("preRollout/smoke").outcome == "Running"
    d.tick(1, canary=READY)
    assert len(d.calls) == 1, "called once per stage"
    d.answer("preRollout/smoke", "Failed", "HTTP 500: smoke test: 3 of 40 requests failed")
    d.tick(1, canary=READY)
    assert d.status.phase is Phase.FAILED and d.router.canary == 0
    assert "preRollout hook smoke failed: HTTP 500: smoke test: 3 of 40" in d.status.reason
    assert d.status.history[-1].trigger == "HookFailed"
    assert d.run_of("preRollout/smoke").finished == d.answers[-1].at, "when it answered"


def test_a_passing_prerollout_hook_lets_the_first_step_start() -> None:
    d = Driver(spec_with({"name": "smoke", "stage": "preRollout"}))
    d.tick(canary=READY)
    d.answer("preRollout/smoke", "Passed")
    d.tick(2, canary=READY)
    assert d.status.phase is Phase.PROGRESSING and d.router.canary == 10


def test_a_call_that_never_answers_times_out_on_the_injected_clock() -> None:
    d = Driver(spec_with({"name": "smoke", "stage": "preRollout", "timeout": "20s"}))
    d.tick(canary=READY)
    decision = d.tick(19, canary=READY)
    assert d.status.phase is Phase.PENDING and decision.requeue_after is not None
    d.tick(1, canary=READY)
    assert d.status.phase is Phase.FAILED
    assert "no answer within its timeout (20s)" in d.status.reason


def test_step_hooks_run_once_per_step_before_its_analysis() -> None:
    d = Driver(spec_with({"name": "load", "stage": "step"}))
    d.tick(canary=READY)
    assert [c.run.id for c in d.calls] == ["step/load/0"]
    assert not machine.analysis_due(d.ctx, d.status, d.now + timedelta(seconds=60))
    d.answer("step/load/0", "Passed")
    d.tick(1)
    d.analyse(10, Verdict.PASS)
    assert d.status.step_index == 1 and [c.run.id for c in d.calls] == [
        "step/load/0", "step/load/1"]


def test_a_failing_step_hook_counts_as_a_failed_analysis_run() -> None:
    d = Driver(spec_with({"name": "load", "stage": "step"}))
    d.tick(canary=READY)
    d.answer("step/load/0", "Failed", "HTTP 422: p99 412ms > 300ms")
    d.tick(1)
    assert d.status.phase is Phase.PROGRESSING
    assert (d.status.failures, d.status.consecutive_failures) == (1, 1)
    d.analyse(10, Verdict.FAIL)
    assert d.status.phase is Phase.ROLLING_BACK, "the profile allows 2 in a row"
    assert d.router.canary == 0


def test_confirm_promotion_holds_while_analysis_goes_on_until_the_gate_says_yes() -> None:
    d = Driver(spec_with({"name": "cab", "stage": "confirmPromotion"}))
    d.tick(canary=READY)
    d.analyse(10, Verdict.PASS)
    d.analyse(10, Verdict.PASS)
    assert d.status.phase is Phase.PROGRESSING and d.status.step_index == 1
    assert [c.run.id for c in d.calls] == ["confirmPromotion/cab"]
    d.answers.append(HookReport(id="confirmPromotion/cab", outcome="Waiting",
                                reason="not yet (HTTP 425), asked 1x", at=d.now))
    d.tick(1)
    assert "waiting for confirmPromotion (cab: not yet (HTTP 425)" in d.status.reason
    d.analyse(10, Verdict.PASS)  # still analysed while it waits
    assert d.status.phase is Phase.PROGRESSING and d.router.canary == 50
    d.answers.clear()
    d.answer("confirmPromotion/cab", "Passed")
    d.tick(1)
    assert d.status.phase is Phase.PROMOTING and d.router.canary == 100
    d.tick(1)
    assert d.status.phase is Phase.SUCCEEDED
    assert [c.run.stage for c in d.calls] == ["confirmPromotion"]


def test_a_breach_while_the_gate_waits_rolls_back() -> None:
    d = Driver(spec_with({"name": "cab", "stage": "confirmPromotion"},
                         {"name": "page", "stage": "rollback"}))
    d.tick(canary=READY)
    d.analyse(10, Verdict.PASS)
    d.analyse(10, Verdict.PASS)
    d.analyse(10, Verdict.FAIL, value=91.0)
    d.analyse(10, Verdict.FAIL, value=90.0)
    assert d.status.phase is Phase.ROLLING_BACK and d.router.canary == 0
    assert [c.run.id for c in d.calls] == ["confirmPromotion/cab", "rollback/page"]
    assert d.run_of("confirmPromotion/cab").outcome == "Cancelled", "no longer asked"
    d.tick(1)
    assert d.status.phase is Phase.ROLLED_BACK


def test_a_gate_saying_no_or_past_max_wait_rolls_back() -> None:
    d = Driver(spec_with({"name": "cab", "stage": "confirmPromotion"}))
    d.tick(canary=READY)
    d.analyse(10, Verdict.PASS)
    d.analyse(10, Verdict.PASS)
    d.answer("confirmPromotion/cab", "Failed", "HTTP 403: change CHG-12 rejected")
    d.tick(1)
    assert d.status.phase is Phase.ROLLING_BACK
    assert "confirmPromotion hook cab failed: HTTP 403: change CHG-12 rejected" in (
        d.status.rollback_reason or "")

    d = Driver(spec_with({"name": "cab", "stage": "confirmPromotion", "maxWait": "1m"}))
    d.tick(canary=READY)
    d.analyse(10, Verdict.PASS)
    d.analyse(10, Verdict.PASS)
    for _ in range(5):
        d.analyse(10, Verdict.PASS)
    assert d.status.phase is Phase.PROGRESSING
    d.analyse(10, Verdict.PASS)
    assert d.status.phase is Phase.ROLLING_BACK
    assert "no yes within maxWait (1m)" in d.status.reason


def test_the_gate_guards_the_step_reaching_100_percent() -> None:
    d = Driver(spec_with({"name": "cab", "stage": "confirmPromotion"},
                         steps=[{"weight": 10}, {"weight": 100}]))
    d.tick(canary=READY)
    d.analyse(10, Verdict.PASS)
    assert d.status.step_index == 0 and d.router.canary == 10
    d.answer("confirmPromotion/cab", "Passed")
    d.tick(1)
    assert d.status.step_index == 1 and d.router.canary == 100


def test_post_rollout_and_rollback_hooks_never_change_the_verdict() -> None:
    d = Driver(spec_with({"name": "report", "stage": "postRollout"}))
    d.tick(canary=READY)
    d.analyse(10, Verdict.PASS)
    d.analyse(10, Verdict.PASS)
    d.tick(1)
    assert d.status.phase is Phase.SUCCEEDED
    assert [c.run.id for c in d.calls] == ["postRollout/report"]
    d.answer("postRollout/report", "Failed", "HTTP 500")
    d.tick(1)
    assert d.status.phase is Phase.SUCCEEDED
    assert d.run_of("postRollout/report").outcome == "Failed"
    seqs = [d.run_of("postRollout/report").seq, d.run_of("postRollout/report").finished_seq]
    assert seqs[0] is not None and seqs[1] == d.status.sequence and seqs[1] > seqs[0]


def test_hook_validation_names_the_field() -> None:
    cases = {
        "ftp://x/y": "http:// or https://",
        "https://user:pw@x/y": "no credentials",
        "http://169.254.169.254/latest/meta-data": "link-local",
        "http://[fe80::1]/": "link-local",
    }
    for url, words in cases.items():
        with pytest.raises(ValidationError) as info:
            RolloutSpec.model_validate({**spec_with().model_dump(by_alias=True,
                                                                 exclude_none=True),
                                        "hooks": [{"name": "x", "stage": "step",
                                                   "webhook": {"url": url}}]})
        (err,) = info.value.errors()
        assert err["loc"] == ("hooks", 0, "webhook", "url") and words in err["msg"]
    with pytest.raises(ValidationError, match="secretFile"):
        spec_with({"name": "x", "stage": "step",
                   "webhook": {"url": URL, "secretFile": "../etc/passwd"}})
    with pytest.raises(ValidationError, match="used twice"):
        spec_with({"name": "x", "stage": "step"}, {"name": "x", "stage": "rollback"})
