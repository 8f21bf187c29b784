"""Hooks end to end: the sandbox (API server, mesh, real Prometheus), canaryd, and a real
aiohttp server in the test receiving the hook calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import config

from canaryd.sandbox.runner import Sandbox
from tests.e2e.fixtures import canaryd_running, sandbox
from tests.e2e.support import CONFIG, TERMINAL, Kube, eventually, rollout_manifest
from tests.hooks.receiver import Receiver, receiver

pytestmark = pytest.mark.prometheus
__all__ = ["sandbox"]
SECRET = b"s3cr3t-for-hmac"


@pytest.fixture
async def hooked(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[tuple[Kube, Receiver]]:
    """canaryd with hooks allowed to reach loopback (the receiver) and a secrets dir."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "hmac").write_bytes(SECRET + b"\n")
    settings = yaml.safe_load(CONFIG.read_text())
    settings["hooks"] = {"secretsDir": str(secrets), "denyNetworks": []}
    path = tmp_path / "canaryd.yaml"
    path.write_text(yaml.safe_dump(settings))
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    async with receiver() as rec:
        try:
            async with canaryd_running(sandbox, config=path):
                yield Kube(api), rec
        finally:
            await api.close()


def hook(rec: Receiver, name: str, stage: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "stage": stage, "timeout": "5s",
            "webhook": {"url": f"{rec.url}/{name}", "secretFile": "hmac"}, **extra}


async def test_a_failing_prerollout_hook_leaves_traffic_untouched_and_fails(
    hooked: tuple[Kube, Receiver],
) -> None:
    kube, rec = hooked
    rec.answers["/smoke"] = (500, {"reason": "smoke test: 3 of 40 requests failed"})
    await kube.create_rollout(rollout_manifest(hooks=[hook(rec, "smoke", "preRollout",
                                                           retries=1)]))
    status = await kube.wait_phase("podinfo-v2", TERMINAL, timeout=60)
    assert status["phase"] == "Failed", status["reason"]
    assert "preRollout hook smoke failed: HTTP 500: smoke test: 3 of 40" in status["reason"]
    assert await kube.vs_weights() == {"stable": 100, "canary": 0}
    assert [h["trigger"] for h in status["history"]] == ["HookFailed"]
    (run,) = status["hooks"]
    assert run["id"] == "preRollout/smoke" and run["outcome"] == "Failed"
    calls = rec.to("/smoke")
    assert len(calls) == 2, "one call, retried once on 5xx (retries: 1)"
    assert all(c.signed_by(SECRET) for c in calls) and not calls[0].signed_by(b"other")
    body = calls[0].json
    assert body["stage"] == "preRollout" and body["rollout"]["name"] == "podinfo-v2"
    assert body["weights"] is None or body["weights"]["canary"] == 0


async def test_confirm_promotion_holds_until_the_receiver_says_yes(
    hooked: tuple[Kube, Receiver],
) -> None:
    kube, rec = hooked
    rec.answers["/cab"] = (425, {"reason": "CHG-1234 awaiting approval"})
    await kube.create_rollout(rollout_manifest(hooks=[hook(rec, "cab", "confirmPromotion",
                                                           interval="1s")]))

    async def asked_twice() -> dict[str, Any] | None:
        status = await kube.status("podinfo-v2")
        return status if len(rec.to("/cab")) >= 2 else None

    status = await eventually(asked_twice, timeout=60, what="the gate asked twice")
    assert status["phase"] == "Progressing" and status["stepIndex"] == 1, status["reason"]
    assert "waiting for confirmPromotion" in status["reason"]
    assert "CHG-1234 awaiting approval" in status["reason"]
    assert await kube.vs_weights() == {"stable": 50, "canary": 50}
    analysed = len(status.get("checks", []))
    rec.answers["/cab"] = (200, {})
    status = await kube.wait_phase("podinfo-v2", TERMINAL, timeout=60)
    assert status["phase"] == "Succeeded", status["reason"]
    (run,) = status["hooks"]
    assert run["outcome"] == "Passed" and run["asks"] >= 2
    assert analysed >= 1
