"""Discovery (legacy and aggregated), OpenAPI v3, Table output and the DynamicClient."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
from apiserver_helpers import Kube, deployment, widget
from kubernetes_asyncio import client
from kubernetes_asyncio.dynamic import DynamicClient

from canaryd.sandbox.realkube.binaries import versions
from canaryd.sandbox.testing import eventually

KUBE_BACKENDS = ("emulator", "real")
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
AGGREGATED = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
              "application/json")


async def test_version_and_groups(http: aiohttp.ClientSession, kube: Kube) -> None:
    version = await (await http.get("/version")).json()
    # The emulator reports v1.30.0 (see discovery.GIT_VERSION); the real tier its release.
    expected = versions()["kubernetes"] if kube.is_real else "v1.30.0"
    assert version["gitVersion"] == expected and version["major"] == "1"
    assert (await (await http.get("/api")).json())["versions"] == ["v1"]
    groups = {g["name"] for g in (await (await http.get("/apis")).json())["groups"]}
    assert {"apps", "coordination.k8s.io", "apiextensions.k8s.io"} <= groups
    apps = await (await http.get("/apis/apps/v1")).json()
    by_name = {r["name"]: r for r in apps["resources"]}
    assert by_name["deployments"]["shortNames"] == ["deploy"]
    assert by_name["deployments/status"]["verbs"] == ["get", "patch", "update"]
    assert by_name["deployments/scale"]["kind"] == "Scale"


async def test_aggregated_discovery(crd: dict[str, Any], http: aiohttp.ClientSession) -> None:
    resp = await http.get("/apis", headers={"Accept": AGGREGATED})
    assert resp.headers["Content-Type"] == (
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    doc = await resp.json(content_type=None)
    assert doc["kind"] == "APIGroupDiscoveryList" and doc["apiVersion"] == \
        "apidiscovery.k8s.io/v2"
    groups = {i["metadata"]["name"]: i for i in doc["items"]}
    (apps_v1,) = [v for v in groups["apps"]["versions"] if v["version"] == "v1"]
    deploy = next(r for r in apps_v1["resources"] if r["resource"] == "deployments")
    assert deploy["responseKind"] == {"group": "", "version": "", "kind": "Deployment"}
    assert deploy["scope"] == "Namespaced" and deploy["shortNames"] == ["deploy"]
    assert [s["subresource"] for s in deploy["subresources"]] == ["scale", "status"]
    assert deploy["subresources"][0]["responseKind"] == {
        "group": "autoscaling", "version": "v1", "kind": "Scale"}
    widgets = next(r for v in groups["example.com"]["versions"] if v["version"] == "v1"
                   for r in v["resources"] if r["resource"] == "widgets")
    assert widgets["responseKind"] == {"group": "example.com", "version": "v1",
                                       "kind": "Widget"}
    assert widgets["categories"] == ["all"] and widgets["shortNames"] == ["wd"]
    core = await (await http.get("/api", headers={"Accept": AGGREGATED})).json(
        content_type=None)
    (v1,) = core["items"][0]["versions"]
    assert {"configmaps", "namespaces", "services"} <= {r["resource"] for r in v1["resources"]}
    plain = await http.get("/apis", headers={"Accept": "application/json"})
    assert (await plain.json())["kind"] == "APIGroupList"


async def test_crd_appears_in_discovery_and_openapi(crd: dict[str, Any],
                                                    http: aiohttp.ClientSession) -> None:
    doc = await (await http.get("/apis/example.com/v1")).json()
    names = {r["name"] for r in doc["resources"]}
    assert {"widgets", "widgets/status"} <= names
    widget_path = "/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"

    async def published() -> dict[str, Any] | None:
        # kube-apiserver publishes a new CRD's OpenAPI a moment after it is served; it
        # labels these documents text/plain.
        root = await (await http.get("/openapi/v3")).json(content_type=None)
        entry = root["paths"].get("apis/example.com/v1")
        if entry is None:
            return None
        spec = await (await http.get(entry["serverRelativeURL"])).json(content_type=None)
        return spec["paths"].get(widget_path)  # type: ignore[no-any-return]

    item = await eventually(published, timeout=60, what="the Widget OpenAPI v3 document")
    assert item["patch"]["x-kubernetes-group-version-kind"] == {
        "group": "example.com", "version": "v1", "kind": "Widget"}


async def test_tables(crd: dict[str, Any], api: client.ApiClient, http: aiohttp.ClientSession,
                      ns: str) -> None:
    await client.AppsV1Api(api).create_namespaced_deployment(ns, deployment("web", 2))
    table = await (await http.get(f"/apis/apps/v1/namespaces/{ns}/deployments",
                                  headers={"Accept": TABLE})).json()
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"]
    cells = table["rows"][0]["cells"]
    assert cells[0] == "web" and re.fullmatch(r"[0-2]/2", cells[1])
    assert cells[5:] == ["app", "nginx:1.25", "app=web"]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    await client.CoreV1Api(api).create_namespaced_secret(
        ns, {"metadata": {"name": "s"}, "stringData": {"a": "1", "b": "2"}})
    secrets = await (await http.get(f"/api/v1/namespaces/{ns}/secrets",
                                    headers={"Accept": TABLE})).json()
    assert [c["name"] for c in secrets["columnDefinitions"]] == ["Name", "Type", "Data", "Age"]
    assert secrets["rows"][0]["cells"][:3] == ["s", "Opaque", 2]
    await client.CustomObjectsApi(api).create_namespaced_custom_object(
        "example.com", "v1", ns, "widgets", widget("w", size=3))
    one = await (await http.get(f"/apis/example.com/v1/namespaces/{ns}/widgets/w",
                                headers={"Accept": TABLE})).json()
    assert [c["name"] for c in one["columnDefinitions"]] == ["Name", "Phase", "Size"]
    assert one["rows"][0]["cells"] == ["w", None, 3]
    url = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com"
    crds = await (await http.get(url, headers={"Accept": TABLE})).json()
    created = (await (await http.get(url)).json())["metadata"]["creationTimestamp"]
    assert [(c["name"], c["type"]) for c in crds["columnDefinitions"]] == [
        ("Name", "string"), ("Created At", "date")]
    assert crds["rows"][0]["cells"] == ["widgets.example.com", created]


async def test_dynamic_client(crd: dict[str, Any], api: client.ApiClient, kube: Kube,
                              ns: str) -> None:
    dyn = await DynamicClient(api)
    widgets = await dyn.resources.get(api_version="example.com/v1", kind="Widget")
    await dyn.create(widgets, body=widget("w"), namespace=ns)
    got = await dyn.get(widgets, name="w", namespace=ns)
    assert got.spec.size == 1
    deployments = await dyn.resources.get(api_version="apps/v1", kind="Deployment")
    await dyn.create(deployments, body=deployment("web"), namespace=ns)
    listed = await dyn.get(deployments, namespace=ns)
    assert [i.metadata.name for i in listed.items] == ["web"]
