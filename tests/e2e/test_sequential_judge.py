"""The anytime-valid error test catches a canary much more error-prone than stable, even while
its success rate (99.2%) would pass a fixed 99% threshold."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes_asyncio import config

from canaryd.sandbox.runner import Sandbox
from tests.e2e.conftest import start_daemon, stop_daemon
from tests.e2e.support import CONFIG, TERMINAL, Kube, rollout_manifest


async def test_sequential_check_rolls_back_a_canary_worse_than_stable(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    settings = yaml.safe_load(CONFIG.read_text())
    settings["profiles"]["sequential"] = {
        "interval": "3s", "minInterval": "1s", "minRequests": 20,
        "checks": [{"metric": "istio-error-count", "sequential": {"alpha": 0.01}}],
        "limits": {"consecutiveFailures": 1},
    }
    path = tmp_path / "canaryd.yaml"
    path.write_text(yaml.safe_dump(settings))
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    kube = Kube(api)
    daemon, task = await start_daemon(sandbox, path)
    try:
        await kube.annotate_service("podinfo", **{"sandbox.canaryd.io/rps": "1000"})
        await kube.annotate_deployment("podinfo-stable",
                                       **{"sandbox.canaryd.io/error-ratio": "0.003"})
        await kube.annotate_deployment("podinfo-canary",
                                       **{"sandbox.canaryd.io/error-ratio": "0.008"})
        plan = {"steps": [{"weight": 50, "pause": "2m"}, {"weight": 80}]}
        await kube.create_rollout(rollout_manifest(plan=plan,
                                                   analysis={"profile": "sequential"}))
        status = await kube.wait_phase("podinfo-v2", TERMINAL, timeout=90)
        assert status["phase"] == "RolledBack", status["reason"]
        [failed] = [c for c in status["checks"] if c["verdict"] == "Fail"]
        assert failed["metric"] == "istio-error-count"
        assert failed["value"] >= 100 and "on 50% of traffic" in failed["reason"]
        assert failed["errors"] > failed["stableErrors"], "the canary took most errors"
        passes = [c for c in status["checks"] if c["verdict"] == "Pass"]
        assert passes, "evidence accumulated over several intervals before the verdict"
        assert all(p["errors"] <= failed["errors"] for p in passes)
    finally:
        await stop_daemon(daemon, task)
        await api.close()
