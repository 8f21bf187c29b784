"""The API on its own small dependencies (`canaryd.api.deps.ApiDeps`), without a daemon: it
reads only the cache, the synced event and the readiness it is given."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from canaryd.api.app import build_app
from canaryd.api.deps import ApiDeps
from canaryd.api.writer import RolloutWriter
from canaryd.core.settings import Settings
from canaryd.runtime.cache import RolloutCache
from tests.api.support import auth, tokens_yaml


class FixedSettings:
    def __init__(self) -> None:
        self.last_error: str | None = None

    def __call__(self) -> Settings:
        return Settings()


class Parts:
    def __init__(self) -> None:
        self.cache = RolloutCache()
        self.synced = asyncio.Event()
        self.listeners: list[Any] = []
        self.settings = FixedSettings()
        self.prometheus_up = False

    async def prometheus_ready(self) -> bool:
        return self.prometheus_up


def rollout(name: str, phase: str) -> dict[str, Any]:
    return {"apiVersion": "canaryd.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": name, "namespace": "demo", "resourceVersion": "7"},
            "spec": {"target": name}, "status": {"phase": phase}}


@pytest.fixture
async def served() -> AsyncIterator[tuple[Parts, TestClient[Any, Any]]]:
    parts = Parts()
    api = client.ApiClient()  # never called: these requests only read
    deps = ApiDeps(cache=parts.cache, synced=parts.synced, listeners=parts.listeners,
                   settings=parts.settings, writer=RolloutWriter(api),
                   registry=CollectorRegistry(), prometheus_ready=parts.prometheus_ready)
    app = build_app(deps, env={"CANARYD_TOKENS": tokens_yaml()})
    async with TestClient(TestServer(app)) as http:
        yield parts, http
    await api.close()


async def test_readiness_names_the_part_that_is_not_ready(
    served: tuple[Parts, TestClient[Any, Any]],
) -> None:
    parts, http = served
    resp = await http.get("/readyz")
    assert resp.status == 503
    checks = (await resp.json())["checks"]
    assert checks["kubernetes"] == "rollout cache not synced"
    assert checks["prometheus"] == "unreachable"
    parts.synced.set()
    parts.prometheus_up = True
    parts.settings.last_error = "profiles.x: bad"
    resp = await http.get("/readyz")
    assert resp.status == 200
    assert (await resp.json())["checks"] == {"kubernetes": "ok", "prometheus": "ok",
                                             "config": "last reload rejected", "tokens": "ok"}


async def test_the_list_reads_the_given_cache_and_the_hub_listens_to_it(
    served: tuple[Parts, TestClient[Any, Any]],
) -> None:
    parts, http = served
    resp = await http.get("/api/v1/rollouts", headers=auth("read"))
    assert resp.status == 503, "not synced: no answer from an empty cache"
    parts.cache.put(rollout("a", "Progressing"))
    parts.cache.put(rollout("b", "Succeeded"))
    parts.synced.set()
    resp = await http.get("/api/v1/rollouts?phase=Succeeded", headers=auth("read"))
    assert resp.status == 200
    assert [i["metadata"]["name"] for i in (await resp.json())["items"]] == ["b"]
    owners = sorted(type(listener.__self__).__name__ for listener in parts.listeners)
    assert owners == ["Feed", "Hub"], \
        "the change hub and the list stream's feed listen to the cache they were given"
