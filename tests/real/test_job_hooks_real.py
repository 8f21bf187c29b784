"""Job hooks on the real control plane: canaryd (`canaryd serve`, a process) creates each hook
run's Job; the Job controller makes its pod, kube-scheduler binds it to a kwok Node, and
kwok's stages finish it: pod-complete (Succeeded), or canaryd's pod-fail stage for pods
labelled canaryd.io/test-outcome=fail (Failed, exit code 1; canaryd/sandbox/realkube/stages.py).
Jobs are counted by a watch of the test's own, so a Job created twice would show."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client, config

from canaryd.sandbox.realkube import RealKube
from canaryd.sandbox.runner import Sandbox
from tests.e2e.support import CONFIG, NS, TERMINAL, Kube, eventually, rollout_manifest
from tests.hooks.jobwatch import job_hook, watching_jobs
from tests.hooks.receiver import now
from tests.hooks.test_hooks_restart import spawn

NAME = "podinfo-v2"
NEXT = "podinfo-v3"


@pytest.fixture
async def sandbox(real_kube: RealKube) -> AsyncIterator[Sandbox]:
    async with Sandbox(rps=200, kube=real_kube) as sb:
        yield sb


@pytest.fixture
async def api(sandbox: Sandbox) -> AsyncIterator[client.ApiClient]:
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    try:
        yield api
    finally:
        await api.close()


def settings(tmp_path: Path) -> Path:
    path = tmp_path / "canaryd.yaml"
    path.write_text(yaml.safe_dump(yaml.safe_load(CONFIG.read_text())))
    return path


async def test_a_failing_prerollout_job_fails_with_100_0_then_a_passing_step_job_proceeds(
    sandbox: Sandbox, api: client.ApiClient, tmp_path: Path,
) -> None:
    """One sandbox for both (a sandbox costs about 25 s here): the failed rollout leaves the
    target as it was, and the next one, with a Job at each step, goes through."""
    kube = Kube(api)
    proc = spawn(sandbox, settings(tmp_path), tmp_path / "daemon.log")
    try:
        async with watching_jobs(api, "smoke") as jobs:
            started = time.monotonic()
            await kube.create_rollout(rollout_manifest(
                NAME, hooks=[job_hook("smoke", "preRollout", fail=True)]))
            status = await kube.wait_phase(NAME, TERMINAL, timeout=90)
            print(f"submit -> Failed by a failing preRollout Job: "
                  f"{time.monotonic() - started:.1f}s")
            assert status["phase"] == "Failed", status["reason"]
            assert "preRollout hook smoke failed: Job podinfo-v2-smoke-" in status["reason"]
            assert "BackoffLimitExceeded" in status["reason"], status["reason"]
            assert "(1 failed, 0 succeeded)" in status["reason"], "its pod ran and failed"
            assert await kube.vs_weights() == {"stable": 100, "canary": 0}
            assert [h["trigger"] for h in status["history"]] == ["HookFailed"]
            await eventually(now(lambda: len(jobs.created) == 1 and not jobs.live()),
                             timeout=30, what="the Job deleted after its outcome was recorded")
            assert jobs.conditions() == [{"FailureTarget", "Failed"}]

        async with watching_jobs(api, "load") as jobs:
            started = time.monotonic()
            await kube.create_rollout(rollout_manifest(NEXT, hooks=[job_hook("load", "step")]))
            status = await kube.wait_phase(NEXT, TERMINAL, timeout=120)
            print(f"submit -> Succeeded with a Job per step (2 steps): "
                  f"{time.monotonic() - started:.1f}s")
            assert status["phase"] == "Succeeded", status["reason"]
            assert [(r["id"], r["outcome"]) for r in status["hooks"]] == [
                ("step/load/0", "Passed"), ("step/load/1", "Passed")]
            for r in status["hooks"]:
                took = (datetime.fromisoformat(r["finished"])
                        - datetime.fromisoformat(r["started"])).total_seconds()
                print(f"{r['id']}: Job hook run, start -> Passed recorded: {took:.1f}s")
            await eventually(now(lambda: len(jobs.created) == 2 and not jobs.live()),
                             timeout=30, what="both Jobs deleted")
            assert all({"SuccessCriteriaMet", "Complete"} <= c for c in jobs.conditions())
    finally:
        proc.kill()
        proc.wait(timeout=10)


async def test_a_step_job_runs_once_per_step_across_a_sigkill_of_the_daemon(
    sandbox: Sandbox, api: client.ApiClient, tmp_path: Path,
) -> None:
    kube = Kube(api)
    path, log = settings(tmp_path), tmp_path / "daemon.log"
    proc = spawn(sandbox, path, log)
    try:
        async with watching_jobs(api, "load") as jobs:
            await kube.create_rollout(rollout_manifest(
                NAME, hooks=[job_hook("load", "step", runs="8s")]))

            async def created_and_recorded() -> bool:
                runs = (await kube.status(NAME)).get("hooks", [])
                return any(r["id"] == "step/load/0" and r["asks"] == 1
                           and r["outcome"] == "Running" for r in runs)

            await eventually(created_and_recorded, timeout=60,
                             what="step 1's Job created and recorded in status")
            assert len(jobs.created) == 1 and jobs.conditions() == [set()], "still running"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            proc = spawn(sandbox, path, log)
            status = await kube.wait_phase(NAME, TERMINAL, timeout=120)
            assert status["phase"] == "Succeeded", status["reason"]
            assert [(r["id"], r["outcome"]) for r in status["hooks"]] == [
                ("step/load/0", "Passed"), ("step/load/1", "Passed")]
            await eventually(now(lambda: not jobs.live()), timeout=30, what="Jobs deleted")
            assert len(jobs.created) == 2, f"one Job per step, never twice: {jobs.names()}"
            assert len(set(jobs.names())) == 2
            batch = client.BatchV1Api(api)
            left = await batch.list_namespaced_job(NS, label_selector="canaryd.io/hook=load")
            assert not left.items
        assert "found again" in log.read_text(), "the restarted daemon adopted the Job"
    finally:
        proc.kill()
        proc.wait(timeout=10)
