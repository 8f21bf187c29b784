"""Job hooks in the state machine, tick by tick with a virtual clock, and the Job canaryd
makes for a run (pure: `canaryd.core.jobhooks`): what a Job's status does to a rollout, its
timeout, its deterministic name, and the template's validation at submit."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from canaryd.core import jobhooks, machine
from canaryd.core.hooks import HookReport
from canaryd.core.hookspec import HookRun, job_name
from canaryd.core.model import Phase, RolloutSpec, Verdict
from canaryd.core.names import DNS1123_LABEL as DNS1123_LABEL_RE
from tests.core.test_hooks_machine import URL, Driver
from tests.core.test_machine import READY, T0

UID = "0b5b4c3e-5a52-4bd4-9d1c-2f4b2b9a0f11"
JOB = {"spec": {"template": {"spec": {"containers": [
    {"name": "smoke", "image": "busybox:1.36", "command": ["sh", "-c", "wget -qO- podinfo"]}]}}}}


def job_hook(name: str, stage: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "stage": stage, "job": copy.deepcopy(JOB), **extra}


def spec_of(*hooks: dict[str, Any], steps: list[dict[str, Any]] | None = None) -> RolloutSpec:
    return RolloutSpec.model_validate({
        "target": "podinfo", "version": "v2",
        "router": {"istio": {"virtualService": "podinfo",
                             "stable": {"host": "podinfo", "subset": "stable"},
                             "canary": {"host": "podinfo", "subset": "canary"}}},
        "workloads": {"stable": "podinfo-stable", "canary": "podinfo-canary"},
        "plan": {"steps": steps or [{"weight": 10}, {"weight": 50}]},
        "analysis": {"profile": "p"},
        "hooks": list(hooks),
    })


def job_status(kind: str, reason: str = "", message: str = "", **counts: int) -> dict[str, Any]:
    return {"metadata": {"name": "j"}, "status": {**counts, "conditions": [
        {"type": "SuccessCriteriaMet" if kind == "Complete" else "FailureTarget",
         "status": "True"},
        {"type": kind, "status": "True", "reason": reason, "message": message}]}}


def test_a_failing_prerollout_job_fails_the_rollout_with_the_jobs_reason() -> None:
    d = Driver(spec_of(job_hook("smoke", "preRollout")))
    d.tick(canary=READY)
    (call,) = d.calls
    assert call.hook.job is not None and call.run.id == "preRollout/smoke"
    d.answers.append(HookReport(id="preRollout/smoke", outcome="Running",
                                reason="Job podinfo-v2-smoke-0123456789 created", at=d.now))
    d.tick(1, canary=READY)
    run = d.run_of("preRollout/smoke")
    assert (run.outcome, run.asks) == ("Running", 1), "status records that the Job exists"
    assert d.status.phase is Phase.PENDING and d.router.canary == 0
    got = jobhooks.outcome(job_status("Failed", "BackoffLimitExceeded",
                                      "Job has reached the specified backoff limit", failed=1))
    assert got is not None
    d.answer("preRollout/smoke", *got)
    d.tick(1, canary=READY)
    assert d.status.phase is Phase.FAILED and d.router.canary == 0 and len(d.calls) == 1
    assert ("preRollout hook smoke failed: Job j failed: BackoffLimitExceeded: Job has reached "
            "the specified backoff limit (1 failed, 0 succeeded)") in d.status.reason


def test_a_complete_job_lets_the_first_step_start() -> None:
    d = Driver(spec_of(job_hook("smoke", "preRollout")))
    d.tick(canary=READY)
    got = jobhooks.outcome(job_status("Complete", succeeded=1))
    assert got == ("Passed", "Job j complete (1 succeeded)")
    d.answer("preRollout/smoke", *got)
    d.tick(1, canary=READY)
    assert d.status.phase is Phase.PROGRESSING and d.router.canary == 10


def test_a_job_that_never_finishes_times_out_at_its_timeout_default_10m() -> None:
    d = Driver(spec_of(job_hook("smoke", "preRollout")))
    d.tick(canary=READY)
    decision = d.tick(599, canary=READY)
    assert d.status.phase is Phase.PENDING
    assert decision.requeue_after is not None and decision.requeue_after <= 1.0
    d.tick(1, canary=READY)
    assert d.status.phase is Phase.FAILED and d.router.canary == 0
    assert "its Job did not finish within its timeout (10m)" in d.status.reason


def test_a_step_job_runs_once_per_step_and_its_failure_is_a_failed_run() -> None:
    d = Driver(spec_of(job_hook("load", "step", timeout="2m")))
    d.tick(canary=READY)
    assert [c.run.id for c in d.calls] == ["step/load/0"]
    for _ in range(5):
        d.tick(1)
    assert len(d.calls) == 1, "never started twice"
    assert not machine.analysis_due(d.ctx, d.status, d.now + timedelta(seconds=60))
    d.answer("step/load/0", "Passed", "Job j complete (1 succeeded)")
    d.tick(1)
    d.analyse(10, Verdict.PASS)
    assert d.status.step_index == 1
    assert [c.run.id for c in d.calls] == ["step/load/0", "step/load/1"]
    d.answer("step/load/1", "Failed", "Job j failed: DeadlineExceeded: Job was active longer "
             "than specified deadline (1 failed, 0 succeeded)")
    d.tick(1)
    assert d.status.failures == 1 and d.run_of("step/load/1").outcome == "Failed"


def test_a_confirm_promotion_job_is_bounded_by_its_timeout_not_max_wait() -> None:
    d = Driver(spec_of(job_hook("e2e", "confirmPromotion", timeout="5m")))
    d.tick(canary=READY)
    d.analyse(10, Verdict.PASS)
    d.analyse(10, Verdict.PASS)
    assert [c.run.id for c in d.calls] == ["confirmPromotion/e2e"]
    started = d.run_of("confirmPromotion/e2e").started
    while d.now + timedelta(seconds=10) < started + timedelta(minutes=5):
        if machine.analysis_due(d.ctx, d.status, d.now + timedelta(seconds=10)):
            d.analyse(10, Verdict.PASS)
        else:
            d.tick(10)
    assert d.status.phase is Phase.PROGRESSING
    d.tick(10)
    assert d.status.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.FAILED)
    assert "its Job did not finish within its timeout (5m)" in d.status.reason


def test_the_job_name_is_the_runs_a_dns_label_and_distinct_per_run_and_rollout() -> None:
    a = job_name("podinfo-v2", UID, "step/load/0")
    assert a == job_name("podinfo-v2", UID, "step/load/0"), "a restarted daemon finds it"
    assert a.startswith("podinfo-v2-load-") and DNS1123_LABEL_RE.match(a)
    names = {a, job_name("podinfo-v2", UID, "step/load/1"),
             job_name("podinfo-v2", "another-uid", "step/load/0"),
             job_name("podinfo-v2", UID, "preRollout/load")}
    assert len(names) == 4
    long = job_name("r" * 253, UID, f"preRollout/{'h' * 63}")
    assert len(long) <= 63 and DNS1123_LABEL_RE.match(long)
    assert job_name("a.b.c", UID, "preRollout/x").startswith("a-b-c-x-")


def test_the_job_manifest_is_owned_labelled_and_bounded() -> None:
    spec = spec_of(job_hook("smoke", "preRollout", timeout="90.5s"))
    hook = spec.hooks[0]
    run = HookRun(id="preRollout/smoke", name="smoke", stage="preRollout", outcome="Running",
                  started=T0)
    rollout = {"metadata": {"name": "podinfo-v2", "namespace": "demo", "uid": UID}}
    body = jobhooks.manifest(hook, run, rollout, {"CANARYD_STAGE": "preRollout"})
    meta = body["metadata"]
    assert meta["name"] == job_name("podinfo-v2", UID, run.id) and meta["namespace"] == "demo"
    assert meta["ownerReferences"] == [{"apiVersion": "canaryd.io/v1alpha1", "kind": "Rollout",
                                        "name": "podinfo-v2", "uid": UID, "controller": True}]
    assert meta["labels"]["canaryd.io/hook"] == "smoke"
    assert meta["annotations"]["canaryd.io/hook-run"] == "preRollout/smoke"
    spec_out = body["spec"]
    assert spec_out["activeDeadlineSeconds"] == 91 and spec_out["backoffLimit"] == 0
    pod = spec_out["template"]
    assert pod["metadata"]["labels"]["canaryd.io/rollout-uid"] == UID
    assert pod["spec"]["restartPolicy"] == "Never" and "initContainers" not in pod["spec"]
    (c,) = pod["spec"]["containers"]
    assert c["command"] == ["sh", "-c", "wget -qO- podinfo"]
    assert {"name": "CANARYD_STAGE", "value": "preRollout"} in c["env"]
    assert jobhooks.not_ours(body, UID, run.id) is None
    assert jobhooks.not_ours(body, "other", run.id) == "it is not owned by this rollout"
    assert "hook run 'preRollout/smoke'" in str(jobhooks.not_ours(body, UID, "step/smoke/0"))
    assert jobhooks.outcome(body) is None, "no conditions yet: still running"


def errors(hook: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        spec_of(hook)
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in info.value.errors()]


@pytest.mark.parametrize(("change", "where", "said"), [
    (lambda j: j["spec"]["template"]["spec"].update(containers=[]),
     "hooks.0.job.spec.template.spec.containers", "at least 1 item"),
    (lambda j: j["spec"]["template"]["spec"].pop("containers"),
     "hooks.0.job.spec.template.spec.containers", "Field required"),
    (lambda j: j["spec"]["template"]["spec"]["containers"][0].update(name="Smoke_1"),
     "hooks.0.job.spec.template.spec.containers.0.name", "DNS-1123 label"),
    (lambda j: j["spec"]["template"]["spec"]["containers"][0].pop("image"),
     "hooks.0.job.spec.template.spec.containers.0.image", "Field required"),
    (lambda j: j["spec"]["template"]["spec"].update(restartPolicy="Always"),
     "hooks.0.job.spec.template.spec.restartPolicy", "'Never' or 'OnFailure'"),
    (lambda j: j["spec"].update(ttlSecondsAfterFinished=60),
     "hooks.0.job.spec", "ttlSecondsAfterFinished is not allowed"),
    (lambda j: j["spec"]["template"]["spec"]["containers"].append(
        {"name": "smoke", "image": "x"}), "hooks.0.job.spec.template.spec", "used twice"),
])
def test_a_bad_job_template_is_refused_naming_the_field(change: Any, where: str,
                                                        said: str) -> None:
    hook = job_hook("smoke", "preRollout")
    change(hook["job"])
    found = errors(hook)
    assert any(loc == where and said in msg for loc, msg in found), found


def test_a_hook_is_a_webhook_or_a_job() -> None:
    both = {**job_hook("smoke", "preRollout"), "webhook": {"url": URL}}
    assert any("give webhook or job, not both" in m for _, m in errors(both))
    neither = {"name": "smoke", "stage": "preRollout"}
    assert any("give webhook or job" in m for _, m in errors(neither))
    gate = job_hook("cab", "confirmPromotion", maxWait="1h")
    assert any("maxWait is for webhook gates" in m for _, m in errors(gate))
