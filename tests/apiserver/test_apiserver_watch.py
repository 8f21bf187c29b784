"""Watch semantics: initial state, resume, 410 Expired, selectors, bookmarks, drops.

Secrets stand in for "some namespaced object" (no controller of a real control plane makes
any; it does make a ConfigMap in every namespace)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from apiserver_helpers import Kube, widget
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd.sandbox.apiserver import ApiServer

KUBE_BACKENDS = ("emulator", "real")


async def lines(resp: aiohttp.ClientResponse, count: int, timeout: float = 10) -> list[Any]:
    out = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            line = await resp.content.readline()
            if not line:
                break
            out.append(json.loads(line))
    return out


async def secret(core: client.CoreV1Api, ns: str, name: str, **labels: str) -> Any:
    return await core.create_namespaced_secret(ns, {"metadata": {"name": name,
                                                                 "labels": labels}})


async def test_watch_from_zero_sends_current_state_then_changes(api: client.ApiClient,
                                                                ns: str) -> None:
    core = client.CoreV1Api(api)
    await secret(core, ns, "a")
    seen: list[tuple[str, str]] = []
    async with watch.Watch().stream(core.list_namespaced_secret, ns, resource_version="0",
                                    timeout_seconds=10) as stream:
        async for event in stream:
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 1:
                await secret(core, ns, "b")
            if len(seen) == 2:
                await core.delete_namespaced_secret("a", ns)
            if len(seen) == 3:
                break
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a")]


async def test_watch_resumes_after_resource_version(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    first = await secret(core, ns, "a")
    await secret(core, ns, "b")
    async with watch.Watch().stream(core.list_namespaced_secret, ns,
                                    resource_version=first.metadata.resource_version,
                                    timeout_seconds=1) as stream:
        names = [e["object"].metadata.name async for e in stream]
    assert names == ["b"]


@pytest.mark.emulator_only  # kube-apiserver's watch cache outlives an etcd compaction on a
# shared control plane; tests/real restarts kube-apiserver to see the same 410
async def test_compacted_history_gives_410_expired(server: ApiServer) -> None:
    cfg = client.Configuration(host=server.url)
    async with client.ApiClient(cfg) as api, aiohttp.ClientSession(base_url=server.url) as http:
        core = client.CoreV1Api(api)
        first = await secret(core, "default", "a")
        await secret(core, "default", "b")
        server.compact()
        rv = first.metadata.resource_version
        resp = await http.get(f"/api/v1/namespaces/default/secrets?watch=1&resourceVersion={rv}")
        assert resp.status == 200
        events = await lines(resp, 2)
        assert len(events) == 1 and events[0]["type"] == "ERROR"
        status = events[0]["object"]
        assert status["code"] == 410 and status["reason"] == "Expired"
        assert status["message"] == f"too old resource version: {rv} ({server.store.rv})"
        with pytest.raises(ApiException) as err:
            async with watch.Watch().stream(core.list_namespaced_secret, "default",
                                            resource_version=rv) as stream:
                async for _ in stream:
                    pass
        assert err.value.status == 410


async def test_label_selector_transitions(api: client.ApiClient, http: aiohttp.ClientSession,
                                          ns: str) -> None:
    core = client.CoreV1Api(api)
    await secret(core, ns, "a", tier="web")
    resp = await http.get(f"/api/v1/namespaces/{ns}/secrets",
                          params={"watch": "true", "labelSelector": "tier=web"})
    assert (await lines(resp, 1))[0]["type"] == "ADDED"
    for patch in ({"metadata": {"labels": {"tier": "db"}}}, {"stringData": {"x": "1"}},
                  {"metadata": {"labels": {"tier": "web"}}}):
        await core.patch_namespaced_secret("a", ns, patch)
    got = await lines(resp, 2)
    assert [e["type"] for e in got] == ["DELETED", "ADDED"]
    assert got[1]["object"]["data"] == {"x": "MQ=="}


async def test_single_object_watch_by_field_selector(api: client.ApiClient,
                                                     http: aiohttp.ClientSession,
                                                     ns: str) -> None:
    core = client.CoreV1Api(api)
    await secret(core, ns, "a")
    await secret(core, ns, "b")
    resp = await http.get(f"/api/v1/namespaces/{ns}/secrets",
                          params={"watch": "1", "fieldSelector": "metadata.name=b"})
    assert [e["type"] for e in await lines(resp, 1)] == ["ADDED"]
    await core.patch_namespaced_secret("a", ns, {"stringData": {"x": "1"}})
    await core.patch_namespaced_secret("b", ns, {"stringData": {"x": "1"}})
    got = await lines(resp, 1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in got] == [("MODIFIED", "b")]


async def test_deleted_event_carries_deletion_rv(api: client.ApiClient,
                                                 http: aiohttp.ClientSession, kube: Kube,
                                                 ns: str) -> None:
    core = client.CoreV1Api(api)
    created = await secret(core, ns, "a")
    resp = await http.get(f"/api/v1/namespaces/{ns}/secrets",
                          params={"watch": "true",
                                  "resourceVersion": created.metadata.resource_version})
    await core.delete_namespaced_secret("a", ns)
    (event,) = await lines(resp, 1)
    assert event["type"] == "DELETED" and event["object"]["metadata"]["uid"] == \
        created.metadata.uid
    deleted_rv = int(event["object"]["metadata"]["resourceVersion"])
    assert deleted_rv > int(created.metadata.resource_version)
    if kube.emulator:
        assert deleted_rv == kube.emulator.store.rv


async def test_timeout_seconds_closes_stream(http: aiohttp.ClientSession, ns: str) -> None:
    resp = await http.get(f"/api/v1/namespaces/{ns}/secrets",
                          params={"watch": "true", "timeoutSeconds": "1"})
    async with asyncio.timeout(5):
        assert await resp.content.read() == b""


@pytest.mark.emulator_only  # the emulator's bookmark interval is a knob; kube-apiserver
# sends one about every minute
async def test_periodic_bookmarks_carry_only_resource_version(server: ApiServer) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as http:
        resp = await http.get("/api/v1/namespaces/default/secrets",
                              params={"watch": "true", "allowWatchBookmarks": "true",
                                      "resourceVersion": str(server.store.rv)})
        (event,) = await lines(resp, 1)
        assert event["type"] == "BOOKMARK"
        assert event["object"]["metadata"] == {"resourceVersion": str(server.store.rv)}


@pytest.mark.parametrize("params", [
    {"sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan"},
    {"resourceVersion": "0"},
    {},
])
async def test_initial_events_end_with_a_bookmark(api: client.ApiClient,
                                                  http: aiohttp.ClientSession, ns: str,
                                                  params: dict[str, str]) -> None:
    core = client.CoreV1Api(api)
    for name in ("a", "b"):
        await secret(core, ns, name)
    listed = await core.list_namespaced_secret(ns)
    resp = await http.get(f"/api/v1/namespaces/{ns}/secrets", params={
        "watch": "1", "allowWatchBookmarks": "true", **params})
    got = await lines(resp, 3)
    assert [(e["type"], e["object"]["metadata"].get("name")) for e in got] == [
        ("ADDED", "a"), ("ADDED", "b"), ("BOOKMARK", None)]
    mark = got[2]["object"]
    assert mark["kind"] == "Secret" and mark["apiVersion"] == "v1"
    assert mark["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(mark["metadata"]["resourceVersion"]) >= int(listed.metadata.resource_version)


async def test_send_initial_events_false_sends_only_changes(api: client.ApiClient,
                                                            http: aiohttp.ClientSession,
                                                            ns: str) -> None:
    core = client.CoreV1Api(api)
    await secret(core, ns, "a")
    resp = await http.get(f"/api/v1/namespaces/{ns}/secrets", params={
        "watch": "1", "sendInitialEvents": "false", "resourceVersionMatch": "NotOlderThan"})
    await secret(core, ns, "b")
    (event,) = await lines(resp, 1)
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "b")


@pytest.mark.emulator_only  # a fault knob of the emulator's (tests/real restarts the server)
async def test_drop_watches_ends_streams(server: ApiServer) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as http:
        resp = await http.get("/api/v1/namespaces/default/secrets?watch=true")
        await asyncio.sleep(0.05)
        assert server.faults.drop_watches() == 1
        async with asyncio.timeout(3):
            assert await resp.content.read() == b""


async def test_legacy_watch_path_and_cross_namespace_watch(api: client.ApiClient,
                                                           http: aiohttp.ClientSession,
                                                           kube: Kube, ns: str) -> None:
    core = client.CoreV1Api(api)
    other = kube.name("other")
    await core.create_namespace({"metadata": {"name": other}})
    legacy = await http.get(f"/api/v1/watch/namespaces/{ns}/secrets")
    everywhere = await http.get("/api/v1/watch/secrets", params={"labelSelector": f"test={ns}"})
    await core.create_namespaced_secret(other, {"metadata": {"name": "x",
                                                             "labels": {"test": ns}}})
    await core.create_namespaced_secret(ns, {"metadata": {"name": "y"}})
    (event,) = await lines(everywhere, 1)
    assert event["type"] == "ADDED" and event["object"]["metadata"]["namespace"] == other
    (event,) = await lines(legacy, 1)
    assert event["object"]["metadata"]["name"] == "y"


async def test_watch_sees_custom_resources_in_requested_version(
        crd: dict[str, Any], api: client.ApiClient, http: aiohttp.ClientSession,
        ns: str) -> None:
    resp = await http.get(f"/apis/example.com/v1beta1/namespaces/{ns}/widgets?watch=true")
    await client.CustomObjectsApi(api).create_namespaced_custom_object(
        "example.com", "v1", ns, "widgets", widget("w"))
    (event,) = await lines(resp, 1)
    assert event["object"]["apiVersion"] == "example.com/v1beta1"


@pytest.mark.emulator_only  # the bookmark interval is an emulator knob
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
                await asyncio.gather(*(core.create_namespaced_config_map(
                    "default", {"metadata": {"name": f"cm-{burst}-{i}"}}) for i in range(10)))
                await asyncio.sleep(0.01)
            await asyncio.wait_for(follower, timeout=10)
            assert len(names) == 40
    finally:
        await server.stop()
