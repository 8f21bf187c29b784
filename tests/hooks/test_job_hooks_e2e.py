"""Job hooks end to end on the sandbox (its API server emulator simulates the Job controller:
no pods run there; the real Job path is tests/real/test_job_hooks_real.py): canaryd makes
the hook's Job, reads its outcome, records it, deletes the Job; a bad template is refused at
submit naming the field."""

from __future__ import annotations

import pytest

from tests.e2e.support import TERMINAL, eventually, rollout_manifest
from tests.hooks.conftest import Hooked
from tests.hooks.jobwatch import job_hook, watching_jobs
from tests.hooks.receiver import now

pytestmark = pytest.mark.prometheus


async def test_a_failing_prerollout_job_fails_the_rollout_and_is_deleted(
    hooked: Hooked,
) -> None:
    kube = hooked.kube
    async with watching_jobs(kube.custom.api_client, "smoke") as jobs:
        code, created = await hooked.submit(rollout_manifest(
            hooks=[job_hook("smoke", "preRollout", fail=True)]))
        assert code == 201, created
        status = await kube.wait_phase("podinfo-v2", TERMINAL, timeout=60)
        assert status["phase"] == "Failed", status["reason"]
        assert "preRollout hook smoke failed: Job podinfo-v2-smoke-" in status["reason"]
        assert "BackoffLimitExceeded" in status["reason"]
        assert await kube.vs_weights() == {"stable": 100, "canary": 0}
        (run,) = status["hooks"]
        assert (run["outcome"], run["asks"]) == ("Failed", 1)
        await eventually(now(lambda: not jobs.live() and len(jobs.created) == 1),
                         timeout=20, what="the Job deleted once its outcome was recorded")
        (made,) = jobs.created.values()
        owner = made["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"]) == ("Rollout", created["metadata"]["uid"])


async def test_step_jobs_pass_once_per_step_and_the_rollout_succeeds(hooked: Hooked) -> None:
    kube = hooked.kube
    async with watching_jobs(kube.custom.api_client, "load") as jobs:
        await kube.create_rollout(rollout_manifest(hooks=[job_hook("load", "step")]))
        status = await kube.wait_phase("podinfo-v2", TERMINAL, timeout=90)
        assert status["phase"] == "Succeeded", status["reason"]
        assert [(r["id"], r["outcome"]) for r in status["hooks"]] == [
            ("step/load/0", "Passed"), ("step/load/1", "Passed")]
        assert all("complete (1 succeeded)" in r["reason"] for r in status["hooks"])
        await eventually(now(lambda: not jobs.live()), timeout=20, what="the Jobs deleted")
        assert len(jobs.created) == 2, jobs.names()
        envs = [{e["name"]: e["value"] for e in
                 j["spec"]["template"]["spec"]["containers"][0]["env"]}
                for j in jobs.created.values()]
        assert sorted(e["CANARYD_STEP"] for e in envs) == ["1", "2"]
        assert {e["CANARYD_ROLLOUT"] for e in envs} == {"demo/podinfo-v2"}


async def test_a_bad_job_template_is_refused_at_submit_naming_the_field(
    hooked: Hooked,
) -> None:
    bad = job_hook("smoke", "preRollout")
    bad["job"]["spec"]["template"]["spec"]["containers"] = []
    code, problem = await hooked.submit(rollout_manifest(hooks=[bad]))
    assert code == 422, problem
    pointers = [e["pointer"] for e in problem["errors"]]
    assert "/spec/hooks/0/job/spec/template/spec/containers" in pointers, problem
    both = job_hook("smoke", "preRollout") | {"webhook": {"url": f"{hooked.rec.url}/x"}}
    code, problem = await hooked.submit(rollout_manifest(hooks=[both]))
    assert code == 422 and "not both" in str(problem), problem
    assert not (await hooked.kube.custom.list_namespaced_custom_object(
        "canaryd.io", "v1alpha1", "demo", "rollouts"))["items"], "nothing was created"

