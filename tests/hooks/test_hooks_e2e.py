"""Hooks end to end: the sandbox (API server, mesh, real Prometheus), canaryd, and a real
aiohttp server in the test receiving the hook calls."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from canaryd.commands.get import describe
from tests.api.support import auth
from tests.e2e.support import TERMINAL, eventually, rollout_manifest
from tests.hooks.conftest import SECRET, Hooked, hook

pytestmark = pytest.mark.prometheus


async def test_a_failing_prerollout_hook_leaves_traffic_untouched_and_fails(
    hooked: Hooked,
) -> None:
    kube, rec = hooked.kube, hooked.rec
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
    # The API's event stream and `canaryd get` show the call.
    async with aiohttp.ClientSession() as http, http.get(
            f"{hooked.url}/api/v1/rollouts/demo/podinfo-v2/events",
            headers=auth("read")) as resp:
        text = await resp.text()
    hooks = [json.loads(line[6:]) for block in text.split("\n\n") if "event: hook" in block
             for line in block.splitlines() if line.startswith("data: ")]
    assert [h["outcome"] for h in hooks] == ["Running", "Failed"], text
    assert "smoke test: 3 of 40" in hooks[1]["reason"]
    shown = "\n".join(describe(await kube.rollout("podinfo-v2")))
    assert "hooks:\n  preRollout/smoke Failed: HTTP 500: smoke test" in shown, shown


async def test_confirm_promotion_holds_until_the_receiver_says_yes(hooked: Hooked) -> None:
    kube, rec = hooked.kube, hooked.rec
    rec.answers["/cab"] = (425, {"reason": "CHG-1234 awaiting approval"})
    code, created = await hooked.submit(rollout_manifest(hooks=[
        hook(rec, "cab", "confirmPromotion", interval="1s")]))
    assert code == 201, created

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


async def test_bad_hooks_are_refused_at_submit_naming_the_field(hooked: Hooked) -> None:
    rec = hooked.rec
    bad = [
        hook(rec, "smoke", "preRollout") | {"webhook": {"url": f"{rec.url}/x",
                                                         "secretFile": "missing"}},
        hook(rec, "cab", "step") | {"webhook": {"url": "file:///etc/passwd"}},
        hook(rec, "meta", "step") | {"webhook": {"url": "http://169.254.169.254/latest"}},
        hook(rec, "sig", "step") | {"webhook": {"url": f"{rec.url}/x",
                                                "secretRef": {"name": "nope", "key": "k"}}},
    ]
    for i, h in enumerate(bad):
        code, problem = await hooked.submit(rollout_manifest(hooks=[h]))
        assert code == 422, problem
        pointers = {e["pointer"]: e["detail"] for e in problem["errors"]}
        field = {0: "secretFile", 1: "url", 2: "url", 3: "secretRef"}[i]
        (detail,) = [d for p, d in pointers.items() if p == f"/spec/hooks/0/webhook/{field}"]
        assert {0: "cannot read", 1: "http:// or https://", 2: "link-local",
                3: "no Secret demo/nope"}[i] in detail, detail
    assert not rec.calls, "nothing was called"
    assert not (await hooked.kube.custom.list_namespaced_custom_object(
        "canaryd.io", "v1alpha1", "demo", "rollouts"))["items"], "nothing was created"
