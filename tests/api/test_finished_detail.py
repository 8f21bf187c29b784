"""A finished rollout is cached as its summary; GET of it, its event stream and an
idempotent replay still answer the whole object, read from Kubernetes through the real API
(the emulator), and a failed read is a clear 503."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client

from canaryd.adapters.kube import RolloutStore
from canaryd.api import rollouts, stream
from canaryd.core.hooksettings import Notifications
from canaryd.core.settings import Settings
from canaryd.runtime.cache import RolloutCache
from canaryd.runtime.notifier import Notifier
from canaryd.sandbox.apiserver import ApiServer
from canaryd.sandbox.testing import eventually
from tests.api.conftest import Served
from tests.api.support import GROUP, PLURAL, VERSION, auth, manifest, messages

FINISHED = json.loads(
    (Path(__file__).parents[2] / "bench/data/finished-rollouts.json").read_text())
KEY = "demo/podinfo-v2"
ONE = "/api/v1/rollouts/demo/podinfo-v2"


async def finish(http: aiohttp.ClientSession, kube: client.ApiClient, served: Served,
                 **headers: str) -> dict[str, Any]:
    """Create the rollout, write the status of one the sandbox really rolled back (history,
    20-odd KB of checks, conditions, release) and wait for the cache to summarise it; the
    whole object as Kubernetes holds it."""
    async with http.post("/api/v1/rollouts", json=manifest(),
                         headers={**auth("submit"), **headers}) as resp:
        assert resp.status == 201
    custom = client.CustomObjectsApi(kube)
    status = copy.deepcopy(FINISHED[1]["status"])
    written = await custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "demo", PLURAL, "podinfo-v2", {"status": status},
        _content_type="application/merge-patch+json", _request_timeout=10)
    cache = served.state.deps.cache

    async def summarised() -> bool:
        obj = cache.get(KEY)
        return (obj is not None and not cache.whole(KEY) and obj["metadata"][
            "resourceVersion"] == written["metadata"]["resourceVersion"])

    await eventually(summarised, timeout=10, what="the finished rollout summarised")
    assert "checks" not in cache[KEY]["status"]
    return dict(written)


def without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
    return {**obj, "metadata": meta}


async def test_get_of_a_finished_rollout_is_the_whole_object(
    http: aiohttp.ClientSession, kube: client.ApiClient, served: Served,
) -> None:
    written = await finish(http, kube, served)
    async with http.get(ONE, headers=auth("read")) as resp:
        assert resp.status == 200
        got = await resp.json()
    assert got == without_managed_fields(written)
    assert len(got["status"]["checks"]) == len(FINISHED[1]["status"]["checks"]) > 0
    assert got["status"]["history"] == FINISHED[1]["status"]["history"]
    # The list shows its summary, at the same resourceVersion.
    async with http.get("/api/v1/rollouts", headers=auth("read")) as resp:
        items = (await resp.json())["items"]
    (item,) = items
    assert item["metadata"]["resourceVersion"] == got["metadata"]["resourceVersion"]
    assert item["status"]["phase"] == "RolledBack" and "checks" not in item["status"]
    assert item["status"]["release"] == got["status"]["release"]
    assert item["status"]["history"] == got["status"]["history"][-1:]


async def test_the_event_stream_of_a_finished_rollout_replays_it_whole(
    http: aiohttp.ClientSession, kube: client.ApiClient, served: Served,
) -> None:
    written = await finish(http, kube, served)
    expected = [e for e in stream.events_after(written, None)]
    async with http.get(f"{ONE}/events", headers=auth("read")) as resp:
        assert resp.status == 200
        received = [m async for m in messages(resp)]
    kinds = [m.event for m in received]
    assert kinds[0] == "state" and kinds[-1] == "verdict"
    assert [(m.event, m.id) for m in received[1:]] == [
        (e.kind, e.id) for e in expected]
    assert kinds.count("check") == len(written["status"]["checks"])
    assert json.loads(received[-1].data)["phase"] == "RolledBack"


async def test_an_idempotent_replay_of_a_finished_rollout_is_the_whole_object(
    http: aiohttp.ClientSession, kube: client.ApiClient, served: Served,
) -> None:
    written = await finish(http, kube, served, **{"Idempotency-Key": "pipeline-7"})
    async with http.post("/api/v1/rollouts", json=manifest(),
                         headers={**auth("submit"), "Idempotency-Key": "pipeline-7"}) as resp:
        assert resp.status == 201 and resp.headers["Idempotent-Replayed"] == "true"
        assert await resp.json() == without_managed_fields(written)


async def test_a_rollout_patched_out_of_its_verdict_is_whole_again(
    http: aiohttp.ClientSession, kube: client.ApiClient, served: Served,
) -> None:
    written = await finish(http, kube, served)
    status = {**written["status"], "phase": "Paused", "pausedBy": "operator",
              "stepStartedAt": written["status"]["phaseStartedAt"]}
    await client.CustomObjectsApi(kube).patch_namespaced_custom_object_status(
        GROUP, VERSION, "demo", PLURAL, "podinfo-v2", {"status": status},
        _content_type="application/merge-patch+json", _request_timeout=10)
    cache = served.state.deps.cache

    async def whole() -> bool:
        return cache.whole(KEY) and cache[KEY]["status"]["phase"] == "Paused"

    await eventually(whole, timeout=10, what="the rollout whole in the cache")
    async with http.get("/api/v1/rollouts", headers=auth("read")) as resp:
        (item,) = (await resp.json())["items"]
    assert item["status"]["checks"] == written["status"]["checks"]


async def test_a_read_that_does_not_answer_in_time_is_a_503_naming_the_rollout(
    http: aiohttp.ClientSession, kube: client.ApiClient, served: Served,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await finish(http, kube, served)
    monkeypatch.setattr(rollouts, "DETAIL_TIMEOUT", 0.0)
    async with http.get(ONE, headers=auth("read")) as resp:
        assert resp.status == 503 and resp.headers["Retry-After"]
        problem = await resp.json()
    assert "rollout demo/podinfo-v2 could not be read from Kubernetes within" in (
        problem["detail"])


async def test_kubernetes_unreachable_is_a_503_naming_the_rollout(
    http: aiohttp.ClientSession, kube: client.ApiClient, served: Served,
    apiserver: ApiServer,
) -> None:
    await finish(http, kube, served)
    await apiserver.stop()
    async with http.get(ONE, headers=auth("read")) as resp:
        assert resp.status == 503
        problem = await resp.json()
    assert problem["detail"].startswith("rollout demo/podinfo-v2: Kubernetes API unreachable")
    # The list still answers from the cache.
    async with http.get("/api/v1/rollouts", headers=auth("read")) as resp:
        assert resp.status == 200
        assert [i["metadata"]["name"] for i in (await resp.json())["items"]] == ["podinfo-v2"]


async def test_a_summary_owing_a_notice_under_a_new_configuration_is_read_whole(
    http: aiohttp.ClientSession, kube: client.ApiClient, served: Served,
) -> None:
    """Summarised with no receiver routed to it; a reload routes one that was never told of
    it within backfill: the notifier reads it whole from Kubernetes (the emulator), the
    cache keeps it whole, and its verdict is queued for that receiver."""
    written = await finish(http, kube, served)
    finished_at = datetime.fromisoformat(
        written["status"]["history"][-1]["time"].replace("Z", "+00:00"))
    conf = notifying([])
    cache = RolloutCache()
    notifier = Notifier(settings=lambda: conf, cache=cache, store=RolloutStore(kube),
                        may_write=lambda _key: False,
                        clock=lambda: finished_at + timedelta(minutes=1))
    cache.keep_whole = notifier.owes
    cache.put(written)
    assert not cache.whole(KEY)
    notifier.sweep()
    assert not notifier._fetching and not notifier._queued
    conf = notifying(["demo"])  # the reload
    notifier.sweep()
    assert KEY in notifier._fetching

    async def whole() -> bool:
        return cache.whole(KEY)

    try:
        await eventually(whole, timeout=10, what="the rollout read whole")
        assert cache[KEY]["status"]["checks"] == written["status"]["checks"]
        notifier.sweep()
        assert notifier._queued == {(KEY, "chat"): written["status"]["history"][-1]["seq"]}
    finally:
        await notifier.close()


def notifying(namespaces: list[str]) -> Settings:
    return Settings(notifications=Notifications.model_validate({
        "receivers": [{"name": "chat", "kind": "slack", "urlFrom": {"env": "CHAT_URL"}}],
        "routes": [{"receivers": ["chat"], "namespaces": namespaces or ["elsewhere"]}]}))
