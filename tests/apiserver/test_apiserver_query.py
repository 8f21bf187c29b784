"""Query parameters: Go booleans, dryRun, selectors, pagination, list resourceVersion."""

from __future__ import annotations

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd.sandbox.apiserver import ApiServer
from canaryd.sandbox.apiserver.handlers import go_bool


@pytest.mark.parametrize(("raw", "expected"), [
    ("true", True), ("True", True), ("1", True), ("yes", True), ("0", False),
    ("false", False), ("FALSE", False), (None, False),
])
def test_go_bool(raw: str | None, expected: bool) -> None:
    assert go_bool(raw) is expected


async def make(core: client.CoreV1Api, name: str, **labels: str) -> None:
    await core.create_namespaced_config_map("default",
                                            {"metadata": {"name": name, "labels": labels}})


async def test_dry_run_writes_nothing(api: client.ApiClient, server: ApiServer) -> None:
    core = client.CoreV1Api(api)
    rv = server.store.rv
    obj = await core.create_namespaced_config_map("default", {"metadata": {"name": "c"}},
                                                  dry_run="All")
    assert obj.metadata.name == "c" and server.store.rv == rv
    with pytest.raises(ApiException) as err:
        await core.read_namespaced_config_map("c", "default")
    assert err.value.status == 404
    with pytest.raises(ApiException) as err:
        await core.create_namespaced_config_map("default", {"metadata": {"name": "c"}},
                                                dry_run="Some")
    assert err.value.status == 422
    await make(core, "d")
    rv = server.store.rv
    await core.patch_namespaced_config_map("d", "default", {"data": {"a": "b"}}, dry_run="All")
    await core.delete_namespaced_config_map("d", "default", dry_run="All")
    assert server.store.rv == rv
    assert (await core.read_namespaced_config_map("d", "default")).data is None


@pytest.mark.parametrize(("selector", "names"), [
    ("app=web", ["a", "b"]),
    ("app==web", ["a", "b"]),
    ("app!=web", ["c", "d"]),
    ("app in (web,db)", ["a", "b", "c"]),
    ("app notin (web)", ["c", "d"]),
    ("tier", ["a"]),
    ("!tier", ["b", "c", "d"]),
    ("app=web,tier=front", ["a"]),
])
async def test_label_selectors(api: client.ApiClient, selector: str, names: list[str]) -> None:
    core = client.CoreV1Api(api)
    await make(core, "a", app="web", tier="front")
    await make(core, "b", app="web")
    await make(core, "c", app="db")
    await make(core, "d")
    got = await core.list_namespaced_config_map("default", label_selector=selector)
    assert [i.metadata.name for i in got.items] == names


async def test_pagination_and_list_rv(api: client.ApiClient, server: ApiServer) -> None:
    core = client.CoreV1Api(api)
    for n in "abcde":
        await make(core, n)
    page = await core.list_namespaced_config_map("default", limit=2)
    assert [i.metadata.name for i in page.items] == ["a", "b"]
    assert page.metadata.resource_version == str(server.store.rv)
    assert page.metadata.remaining_item_count == 3
    names = [i.metadata.name for i in page.items]
    while page.metadata._continue:
        page = await core.list_namespaced_config_map("default", limit=2,
                                                     _continue=page.metadata._continue)
        names += [i.metadata.name for i in page.items]
    assert names == list("abcde")


async def test_list_across_namespaces(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    await core.create_namespace({"metadata": {"name": "x"}})
    await core.create_namespaced_config_map("x", {"metadata": {"name": "c"}})
    await make(core, "c")
    got = await core.list_config_map_for_all_namespaces()
    assert [(i.metadata.namespace, i.metadata.name) for i in got.items] == [
        ("default", "c"), ("x", "c")]


async def test_builtin_field_selector(api: client.ApiClient,
                                      http: aiohttp.ClientSession) -> None:
    core = client.CoreV1Api(api)
    await core.create_namespaced_event("default", {
        "metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod", "name": "p1"},
        "reason": "Started"})
    await core.create_namespaced_event("default", {
        "metadata": {"name": "e2"}, "involvedObject": {"kind": "Pod", "name": "p2"}})
    got = await core.list_namespaced_event("default", field_selector="involvedObject.name=p2")
    assert [e.metadata.name for e in got.items] == ["e2"]
