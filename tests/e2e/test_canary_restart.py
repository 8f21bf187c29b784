"""SIGKILL of the daemon mid-step, then a restart: the rollout completes, nothing doubled."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from typing import IO

from kubernetes_asyncio import config

from canaryd.sandbox.runner import Sandbox
from tests.e2e.support import CONFIG, TERMINAL, Kube, eventually, rollout_manifest

# Judged by the embedded emulator and by the real control plane (tests/realkube.py).
KUBE_BACKENDS = ("emulator", "real")


def spawn(sb: Sandbox, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "canaryd", "serve", "--kubeconfig", str(sb.kubeconfig),
         "--config", str(CONFIG), "--prometheus-url", sb.prometheus_url,
         "--host", "127.0.0.1", "--port", "0", "--identity", "restart-test"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "CANARYD_LOG_LEVEL": "info"},
    )


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def test_sigkill_mid_step_then_restart_completes_without_skipping(
    sandbox: Sandbox, tmp_path: object
) -> None:
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    kube = Kube(api)
    logfile = open(f"{tmp_path}/daemon.log", "wb")  # noqa: SIM115
    proc = spawn(sandbox, logfile)
    try:
        plan = {"steps": [{"weight": 20, "pause": "8s"}, {"weight": 50, "pause": "4s"}]}
        await kube.create_rollout(rollout_manifest(plan=plan))
        await kube.wait_phase("podinfo-v2", {"Progressing"}, timeout=30)
        # The status records the step before the router is written (intent first): wait
        # for the weights, then kill.

        async def at_step_1() -> bool:
            return await kube.vs_weights() == {"stable": 80, "canary": 20}

        await eventually(at_step_1, timeout=15, what="step 1's weights on the VirtualService")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        down_at = time.monotonic()
        # Stay down past the step's deadline: the restarted daemon must act at once.
        await asyncio.sleep(9)
        assert await kube.vs_weights() == {"stable": 80, "canary": 20}, "nobody moved traffic"
        proc = spawn(sandbox, logfile)

        async def advanced() -> bool:
            return (await kube.status("podinfo-v2")).get("stepIndex") == 1

        await eventually(advanced, timeout=20, what="step 2 after the restart")
        resumed_after = time.monotonic() - down_at
        status = await kube.wait_phase("podinfo-v2", TERMINAL, timeout=60)
        assert status["phase"] == "Succeeded", status["reason"]
        triggers = [h["trigger"] for h in status["history"]]
        assert triggers == ["CanaryReady", "StepPassed", "AllStepsPassed", "StableUpdated",
                            "TrafficConfirmed"]
        times = [ts(h["time"]) for h in status["history"]]
        assert times[1] - times[0] >= 8, "step 1 was not held for its pause"
        assert times[2] - times[1] >= 4, "step 2 was not held for its pause"
        assert times[1] - times[0] < 8 + 15, "step 1 was held far too long"
        assert resumed_after < 9 + 15
    finally:
        proc.kill()
        proc.wait(timeout=10)
        logfile.close()
        await api.close()
