"""Discovery, OpenAPI v3 stubs, Table output and the DynamicClient."""

from __future__ import annotations

from typing import Any

import aiohttp
from apiserver_helpers import deployment, widget
from kubernetes_asyncio import client
from kubernetes_asyncio.dynamic import DynamicClient

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


async def test_version_and_groups(http: aiohttp.ClientSession) -> None:
    version = await (await http.get("/version")).json()
    assert version["gitVersion"].startswith("v1.")
    assert (await (await http.get("/api")).json())["versions"] == ["v1"]
    groups = {g["name"] for g in (await (await http.get("/apis")).json())["groups"]}
    assert {"apps", "coordination.k8s.io", "apiextensions.k8s.io"} <= groups
    apps = await (await http.get("/apis/apps/v1")).json()
    by_name = {r["name"]: r for r in apps["resources"]}
    assert by_name["deployments"]["shortNames"] == ["deploy"]
    assert by_name["deployments/status"]["verbs"] == ["get", "patch", "update"]
    assert by_name["deployments/scale"]["kind"] == "Scale"


async def test_aggregated_discovery_accept_gets_plain_json(http: aiohttp.ClientSession) -> None:
    resp = await http.get("/apis", headers={
        "Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
                  "application/json"})
    assert resp.content_type == "application/json"
    assert (await resp.json())["kind"] == "APIGroupList"


async def test_crd_appears_in_discovery_and_openapi(crd: dict[str, Any],
                                                    http: aiohttp.ClientSession) -> None:
    doc = await (await http.get("/apis/example.com/v1")).json()
    names = {r["name"] for r in doc["resources"]}
    assert names == {"widgets", "widgets/status"}
    root = await (await http.get("/openapi/v3")).json()
    url = root["paths"]["apis/example.com/v1"]["serverRelativeURL"]
    spec = await (await http.get(url)).json()
    (path,) = spec["paths"].values()
    assert path["patch"]["x-kubernetes-group-version-kind"]["kind"] == "Widget"


async def test_tables(crd: dict[str, Any], api: client.ApiClient,
                      http: aiohttp.ClientSession) -> None:
    await client.AppsV1Api(api).create_namespaced_deployment("default", deployment("web", 2))
    table = await (await http.get("/apis/apps/v1/namespaces/default/deployments",
                                  headers={"Accept": TABLE})).json()
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]][:5] == [
        "Name", "Ready", "Up-to-date", "Available", "Age"]
    assert table["rows"][0]["cells"][:2] == ["web", "0/2"]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    await client.CustomObjectsApi(api).create_namespaced_custom_object(
        "example.com", "v1", "default", "widgets", widget("w", size=3))
    one = await (await http.get("/apis/example.com/v1/namespaces/default/widgets/w",
                                headers={"Accept": TABLE})).json()
    assert [c["name"] for c in one["columnDefinitions"]] == ["Name", "Phase", "Size"]
    assert one["rows"][0]["cells"] == ["w", None, 3]


async def test_dynamic_client(crd: dict[str, Any], api: client.ApiClient) -> None:
    dyn = await DynamicClient(api)
    widgets = await dyn.resources.get(api_version="example.com/v1", kind="Widget")
    await dyn.create(widgets, body=widget("w"), namespace="default")
    got = await dyn.get(widgets, name="w", namespace="default")
    assert got.spec.size == 1
    deployments = await dyn.resources.get(api_version="apps/v1", kind="Deployment")
    await dyn.create(deployments, body=deployment("web"), namespace="default")
    listed = await dyn.get(deployments, namespace="default")
    assert [i.metadata.name for i in listed.items] == ["web"]
