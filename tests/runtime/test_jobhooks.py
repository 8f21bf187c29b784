"""One Job hook run against the emulator over HTTP (canaryd.runtime.jobhooks.run_job):
created and followed to its outcome; a Job of the same name that is this run's is adopted
(nothing created); one that is not is refused, untouched; a run recorded as created whose
Job is gone fails instead of creating another."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from canaryd.adapters.jobs import Jobs
from canaryd.core import jobhooks
from canaryd.core.hookspec import Hook, HookRun
from canaryd.runtime.jobhooks import run_job
from canaryd.sandbox.apiserver import ApiServer
from canaryd.sandbox.testing import kube_client

NS = "default"
UID = "6f1c2b9e-0000-4000-8000-000000000001"
ROLLOUT = {"metadata": {"name": "podinfo-v2", "namespace": NS, "uid": UID}}
HOOK = Hook.model_validate({"name": "smoke", "stage": "preRollout", "timeout": "30s", "job": {
    "spec": {"template": {"spec": {"containers": [{"name": "t", "image": "busybox"}]}}}}})


def run(asks: int = 0) -> HookRun:
    return HookRun(id="preRollout/smoke", name="smoke", stage="preRollout",
                   outcome="Running", started=datetime(2026, 1, 1, tzinfo=UTC), asks=asks)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    async with ApiServer(job_run_delay=0.2) as srv, kube_client(srv, tmp_path) as api:
        yield api


class Reports(list[tuple[str, str, int]]):
    def __call__(self, outcome: str, reason: str, asks: int) -> None:
        self.append((outcome, reason, asks))


async def names(api: client.ApiClient) -> list[str]:
    return [j.metadata.name for j in (await client.BatchV1Api(api).list_namespaced_job(NS)).items]


async def test_a_run_creates_its_job_and_reports_its_outcome(api: client.ApiClient) -> None:
    body = jobhooks.manifest(HOOK, run(), ROLLOUT, {})
    got = Reports()
    await run_job(Jobs(api), body, run(), got, poll=0.1)
    name = body["metadata"]["name"]
    assert got == [("Running", f"Job {name} created", 1),
                   ("Passed", f"Job {name} complete (1 succeeded)", 1)]
    assert await names(api) == [name]


async def test_a_job_already_made_for_the_run_is_adopted_not_made_again(
    api: client.ApiClient,
) -> None:
    body = jobhooks.manifest(HOOK, run(), ROLLOUT, {})
    made = await client.BatchV1Api(api).create_namespaced_job(NS, body)
    got = Reports()
    await run_job(Jobs(api), body, run(), got, poll=0.1)  # asks 0: a create answers 409
    assert got[0] == ("Running", f"Job {body['metadata']['name']} adopted", 1)
    assert got[-1][0] == "Passed"
    (job,) = (await client.BatchV1Api(api).list_namespaced_job(NS)).items
    assert job.metadata.uid == made.metadata.uid, "the same Job, never a second"


@pytest.mark.parametrize("change", ["owner", "run"])
async def test_a_job_of_that_name_that_is_not_the_runs_is_refused(
    api: client.ApiClient, change: str,
) -> None:
    body: dict[str, Any] = jobhooks.manifest(HOOK, run(), ROLLOUT, {})
    other = jobhooks.manifest(HOOK, run(), ROLLOUT, {})
    if change == "owner":
        other["metadata"]["ownerReferences"][0]["uid"] = "someone-else"
    else:
        other["metadata"]["annotations"][jobhooks.ANNOTATION_RUN] = "step/smoke/0"
    await client.BatchV1Api(api).create_namespaced_job(NS, other)
    got = Reports()
    await run_job(Jobs(api), body, run(), got, poll=0.1)
    ((outcome, reason, _),) = got
    assert outcome == "Failed" and "exists and is not this hook's" in reason
    assert {"owner": "not owned by this rollout", "run": "hook run 'step/smoke/0'"}[change] \
        in reason


async def test_a_run_recorded_as_created_whose_job_is_gone_fails_and_makes_none(
    api: client.ApiClient,
) -> None:
    body = jobhooks.manifest(HOOK, run(), ROLLOUT, {})
    got = Reports()
    await run_job(Jobs(api), body, run(asks=1), got, poll=0.1)
    ((outcome, reason, _),) = got
    assert outcome == "Failed" and "is gone before its outcome was read" in reason
    assert await names(api) == []


async def test_a_template_the_api_server_refuses_fails_the_run(api: client.ApiClient) -> None:
    body = jobhooks.manifest(HOOK, run(), ROLLOUT, {})
    body["metadata"]["namespace"] = "no-such-namespace"
    got = Reports()
    await run_job(Jobs(api), body, run(), got, poll=0.1)
    ((outcome, reason, asks),) = got
    assert outcome == "Failed" and "could not be created" in reason and asks == 0
