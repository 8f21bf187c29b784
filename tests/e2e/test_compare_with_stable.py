"""A canary judged against the stable version running beside it, not only a fixed number."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes_asyncio import config

from canaryd.sandbox.runner import Sandbox
from tests.e2e.conftest import canaryd_running
from tests.e2e.support import CONFIG, TERMINAL, Kube, rollout_manifest


async def test_latency_within_the_fixed_limit_but_twice_stable_rolls_back(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    settings = yaml.safe_load(CONFIG.read_text())
    settings["profiles"]["compare"] = {
        "interval": "3s", "minInterval": "1s", "minRequests": 20,
        "checks": [{"metric": "istio-latency-p50", "max": 500, "maxRatioToStable": 1.5}],
        "limits": {"consecutiveFailures": 1},
    }
    path = tmp_path / "canaryd.yaml"
    path.write_text(yaml.safe_dump(settings))
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    kube = Kube(api)
    try:
        async with canaryd_running(sandbox, path):
            await kube.annotate_deployment("podinfo-canary", **{
                "sandbox.canaryd.io/latency-p50-ms": "60",
                "sandbox.canaryd.io/latency-p99-ms": "200",
            })
            await kube.create_rollout(rollout_manifest(analysis={"profile": "compare"}))
            status = await kube.wait_phase("podinfo-v2", TERMINAL, timeout=60)
            assert status["phase"] == "RolledBack", status["reason"]
            failed = [c for c in status["checks"] if c["verdict"] == "Fail"]
            assert failed and "x stable" in failed[0]["reason"]
            assert failed[0]["value"] < 500, "the fixed limit alone would have passed it"
            assert failed[0]["stableValue"] is not None
            assert failed[0]["value"] > 1.5 * failed[0]["stableValue"]
    finally:
        await api.close()
