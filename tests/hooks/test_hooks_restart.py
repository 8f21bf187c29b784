"""Hooks across restarts: after a SIGKILL of `canaryd serve` each step's hook is still called
exactly once; a gate left waiting is asked again by the restarted daemon."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import config

from canaryd.sandbox.runner import Sandbox
from tests.e2e.fixtures import canaryd_running
from tests.e2e.support import CONFIG, TERMINAL, Kube, eventually, rollout_manifest
from tests.hooks.conftest import hook, hook_settings
from tests.hooks.receiver import now, receiver

pytestmark = pytest.mark.prometheus


def spawn(sb: Sandbox, settings: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "canaryd", "serve", "--kubeconfig", str(sb.kubeconfig),
         "--config", str(settings), "--prometheus-url", sb.prometheus_url,
         "--host", "127.0.0.1", "--port", "0", "--identity", "hooks-restart"],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, env={**os.environ})


async def test_a_step_hook_runs_once_per_step_across_a_sigkill(
    sandbox: Sandbox, tmp_path: Path,
) -> None:
    settings = yaml.safe_load(CONFIG.read_text())
    settings["hooks"] = {"denyNetworks": []}
    path = tmp_path / "canaryd.yaml"
    path.write_text(yaml.safe_dump(settings))
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    kube = Kube(api)
    log = tmp_path / "daemon.log"
    async with receiver() as rec:
        proc = spawn(sandbox, path, log)
        try:
            plan = {"steps": [{"weight": 20, "pause": "6s"}, {"weight": 50}]}
            await kube.create_rollout(rollout_manifest(plan=plan, hooks=[
                {"name": "load", "stage": "step", "timeout": "5s",
                 "webhook": {"url": f"{rec.url}/load"}}]))

            async def step_1_hook_passed() -> bool:
                runs = (await kube.status("podinfo-v2")).get("hooks", [])
                return any(r["id"] == "step/load/0" and r["outcome"] == "Passed" for r in runs)

            await eventually(step_1_hook_passed, timeout=30, what="step 1's hook passed")
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            await asyncio.sleep(1)
            proc = spawn(sandbox, path, log)
            status = await kube.wait_phase("podinfo-v2", TERMINAL, timeout=90)
            assert status["phase"] == "Succeeded", status["reason"]
            deliveries = [c.json["delivery"].split("/", 1)[1] for c in rec.to("/load")]
            assert deliveries == ["step/load/0", "step/load/1"], deliveries
            assert [r["outcome"] for r in status["hooks"]] == ["Passed", "Passed"]
        finally:
            proc.kill()
            proc.wait(timeout=10)
            await api.close()


async def test_a_restarted_daemon_asks_the_waiting_gate_again(
    sandbox: Sandbox, tmp_path: Path,
) -> None:
    path = hook_settings(tmp_path)
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    kube = Kube(api)
    try:
        async with receiver() as rec:
            rec.answers["/cab"] = (425, {"reason": "waiting for the change board"})
            async with canaryd_running(sandbox, config=path):
                await kube.create_rollout(rollout_manifest(hooks=[
                    hook(rec, "cab", "confirmPromotion", interval="1s")]))
                await eventually(now(lambda: len(rec.to("/cab")) >= 1), timeout=60,
                                 what="the gate asked")
            asked = len(rec.to("/cab"))
            status = await kube.status("podinfo-v2")
            (run,) = status["hooks"]
            assert status["phase"] == "Progressing" and run["outcome"] in ("Running", "Waiting")
            async with canaryd_running(sandbox, config=path):
                await eventually(now(lambda: len(rec.to("/cab")) > asked), timeout=30,
                                 what="the restarted daemon asking again")
                rec.answers["/cab"] = (200, {})
                status = await kube.wait_phase("podinfo-v2", TERMINAL, timeout=60)
            assert status["phase"] == "Succeeded", status["reason"]
            (run,) = status["hooks"]
            assert run["outcome"] == "Passed"
            deliveries = {c.json["delivery"] for c in rec.to("/cab")}
            assert len(deliveries) == 1, "one call, asked again under the same delivery id"
    finally:
        await api.close()
