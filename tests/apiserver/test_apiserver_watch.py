"""Watch semantics: initial state, resume, 410 Expired, selectors, bookmarks, drops."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd.sandbox.apiserver import ApiServer


async def lines(resp: aiohttp.ClientResponse, count: int, timeout: float = 5) -> list[Any]:
    out = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            line = await resp.content.readline()
            if not line:
                break
            out.append(json.loads(line))
    return out


async def cm(core: client.CoreV1Api, name: str, **labels: str) -> Any:
    return await core.create_namespaced_config_map(
        "default", {"metadata": {"name": name, "labels": labels}})


async def test_watch_from_zero_sends_current_state_then_changes(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    await cm(core, "a")
    seen: list[tuple[str, str]] = []
    async with watch.Watch().stream(core.list_namespaced_config_map, "default",
                                    resource_version="0", timeout_seconds=5) as stream:
        async for event in stream:
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 1:
                await cm(core, "b")
            if len(seen) == 2:
                await core.delete_namespaced_config_map("a", "default")
            if len(seen) == 3:
                break
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a")]


async def test_watch_resumes_after_resource_version(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    first = await cm(core, "a")
    await cm(core, "b")
    async with watch.Watch().stream(core.list_namespaced_config_map, "default",
                                    resource_version=first.metadata.resource_version,
                                    timeout_seconds=1) as stream:
        names = [e["object"].metadata.name async for e in stream]
    assert names == ["b"]


async def test_compacted_history_gives_410_expired(api: client.ApiClient, server: ApiServer,
                                                   http: aiohttp.ClientSession) -> None:
    core = client.CoreV1Api(api)
    first = await cm(core, "a")
    await cm(core, "b")
    server.compact()
    rv = first.metadata.resource_version
    resp = await http.get(f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}")
    assert resp.status == 200
    events = await lines(resp, 2)
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert status["code"] == 410 and status["reason"] == "Expired"
    assert status["message"] == f"too old resource version: {rv} ({server.store.rv})"
    with pytest.raises(ApiException) as err:
        async with watch.Watch().stream(core.list_namespaced_config_map, "default",
                                        resource_version=rv) as stream:
            async for _ in stream:
                pass
    assert err.value.status == 410


async def test_label_selector_transitions(api: client.ApiClient,
                                          http: aiohttp.ClientSession) -> None:
    core = client.CoreV1Api(api)
    await cm(core, "a", tier="web")
    resp = await http.get("/api/v1/namespaces/default/configmaps",
                          params={"watch": "true", "labelSelector": "tier=web"})
    assert (await lines(resp, 1))[0]["type"] == "ADDED"
    for patch in ({"metadata": {"labels": {"tier": "db"}}}, {"data": {"x": "1"}},
                  {"metadata": {"labels": {"tier": "web"}}}):
        await core.patch_namespaced_config_map("a", "default", patch)
    got = await lines(resp, 2)
    assert [e["type"] for e in got] == ["DELETED", "ADDED"]
    assert got[1]["object"]["data"] == {"x": "1"}


async def test_single_object_watch_by_field_selector(api: client.ApiClient,
                                                     http: aiohttp.ClientSession) -> None:
    core = client.CoreV1Api(api)
    await cm(core, "a")
    await cm(core, "b")
    resp = await http.get("/api/v1/namespaces/default/configmaps",
                          params={"watch": "1", "fieldSelector": "metadata.name=b"})
    await core.patch_namespaced_config_map("a", "default", {"data": {"x": "1"}})
    await core.patch_namespaced_config_map("b", "default", {"data": {"x": "1"}})
    got = await lines(resp, 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in got] == [
        ("ADDED", "b"), ("MODIFIED", "b")]


async def test_deleted_event_carries_deletion_rv(api: client.ApiClient,
                                                 http: aiohttp.ClientSession,
                                                 server: ApiServer) -> None:
    core = client.CoreV1Api(api)
    created = await cm(core, "a")
    resp = await http.get("/api/v1/namespaces/default/configmaps",
                          params={"watch": "true",
                                  "resourceVersion": created.metadata.resource_version})
    await core.delete_namespaced_config_map("a", "default")
    (event,) = await lines(resp, 1)
    assert event["type"] == "DELETED"
    assert event["object"]["metadata"]["resourceVersion"] == str(server.store.rv)


async def test_timeout_seconds_closes_stream(http: aiohttp.ClientSession) -> None:
    resp = await http.get("/api/v1/namespaces/default/configmaps",
                          params={"watch": "true", "timeoutSeconds": "1"})
    async with asyncio.timeout(3):
        assert await resp.content.read() == b""


async def test_bookmarks_carry_only_resource_version(http: aiohttp.ClientSession,
                                                     server: ApiServer) -> None:
    resp = await http.get("/api/v1/namespaces/default/configmaps",
                          params={"watch": "true", "allowWatchBookmarks": "true",
                                  "resourceVersion": str(server.store.rv)})
    (event,) = await lines(resp, 1)
    assert event["type"] == "BOOKMARK"
    assert event["object"]["metadata"] == {"resourceVersion": str(server.store.rv)}


async def test_drop_watches_ends_streams(server: ApiServer,
                                         http: aiohttp.ClientSession) -> None:
    resp = await http.get("/api/v1/namespaces/default/configmaps?watch=true")
    await asyncio.sleep(0.05)
    assert server.faults.drop_watches() == 1
    async with asyncio.timeout(3):
        assert await resp.content.read() == b""


async def test_legacy_watch_path_and_cluster_wide_watch(api: client.ApiClient,
                                                        http: aiohttp.ClientSession) -> None:
    core = client.CoreV1Api(api)
    await core.create_namespace({"metadata": {"name": "other"}})
    resp = await http.get("/api/v1/watch/configmaps")
    await core.create_namespaced_config_map("other", {"metadata": {"name": "x"}})
    (event,) = await lines(resp, 1)
    assert event["type"] == "ADDED" and event["object"]["metadata"]["namespace"] == "other"


async def test_watch_sees_custom_resources_in_requested_version(
        crd: dict[str, Any], api: client.ApiClient, http: aiohttp.ClientSession) -> None:
    resp = await http.get("/apis/example.com/v1beta1/widgets?watch=true")
    await client.CustomObjectsApi(api).create_namespaced_custom_object(
        "example.com", "v1", "default", "widgets",
        {"metadata": {"name": "w"}, "spec": {"name": "a"}})
    (event,) = await lines(resp, 1)
    assert event["object"]["apiVersion"] == "example.com/v1beta1"


async def test_events_queued_when_a_bookmark_falls_due_are_all_delivered(
    tmp_path: Any,
) -> None:
    """A burst of events arriving as a bookmark falls due is delivered in full (the watch
    once spun without sending anything until its deadline)."""
    from canaryd.sandbox.testing import kube_client

    server = ApiServer(bookmark_interval=0.001)
    await server.start(host="127.0.0.1", port=0)
    try:
        async with kube_client(server, tmp_path) as api:
            core = client.CoreV1Api(api)
            rv = (await core.list_namespaced_config_map("default")).metadata.resource_version
            names: list[str] = []

            async def follow() -> None:
                async with watch.Watch().stream(
                    core.list_namespaced_config_map, "default", resource_version=rv,
                    allow_watch_bookmarks=True, timeout_seconds=30,
                ) as stream:
                    async for event in stream:
                        if event["type"] == "ADDED":
                            names.append(event["object"].metadata.name)
                            if len(names) == 40:
                                return

            follower = asyncio.create_task(follow())
            for burst in range(4):
                await asyncio.gather(*(cm(core, f"cm-{burst}-{i}") for i in range(10)))
                await asyncio.sleep(0.01)
            await asyncio.wait_for(follower, timeout=10)
            assert len(names) == 40
    finally:
        await server.stop()
