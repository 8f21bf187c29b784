"""CustomResourceDefinitions: serving, versions, status split, schema, PATCH flavours."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from apiserver_helpers import deployment, widget
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

MERGE = "application/merge-patch+json"
G, V, P = "example.com", "v1", "widgets"


def objects(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


async def test_crd_is_established_and_served(crd: dict[str, Any],
                                             api: client.ApiClient) -> None:
    conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conds == {"NamesAccepted": "True", "Established": "True"}
    created = await objects(api).create_namespaced_custom_object(G, V, "default", P,
                                                                 widget("w1"))
    assert created["apiVersion"] == "example.com/v1" and created["metadata"]["generation"] == 1


async def test_crd_pruning_and_defaults(crd: dict[str, Any], api: client.ApiClient) -> None:
    obj = widget("w1", junk=1, extra={"free": {"form": True}})
    obj["top"] = "dropped"
    created = await objects(api).create_namespaced_custom_object(G, V, "default", P, obj)
    assert "junk" not in created["spec"] and "top" not in created
    assert created["spec"]["size"] == 1
    assert created["spec"]["extra"] == {"free": {"form": True}}


@pytest.mark.parametrize(("spec", "reason", "field"), [
    ({"name": "Bad!"}, "FieldValueInvalid", "spec.name"),
    ({"name": "abcdefghijkl"}, "FieldValueTooLong", "spec.name"),
    ({"name": "ok", "size": 0}, "FieldValueInvalid", "spec.size"),
    ({"name": "ok", "size": 10}, "FieldValueInvalid", "spec.size"),
    ({"name": "ok", "size": "x"}, "FieldValueTypeInvalid", "spec.size"),
    ({"name": "ok", "mode": "warp"}, "FieldValueNotSupported", "spec.mode"),
    ({}, "FieldValueRequired", "spec.name"),
])
async def test_schema_validation_gives_invalid_with_causes(
        crd: dict[str, Any], api: client.ApiClient, spec: dict[str, Any], reason: str,
        field: str) -> None:
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
           "spec": spec}
    with pytest.raises(ApiException) as err:
        await objects(api).create_namespaced_custom_object(G, V, "default", P, obj)
    status = json.loads(err.value.body)
    assert err.value.status == 422 and status["reason"] == "Invalid"
    assert status["details"]["kind"] == "Widget"
    assert [(c["reason"], c["field"]) for c in status["details"]["causes"]] == [(reason, field)]
    assert status["message"].startswith('Widget.example.com "w" is invalid: ' + field)


async def test_pattern_message_matches_apiserver(crd: dict[str, Any],
                                                 api: client.ApiClient) -> None:
    with pytest.raises(ApiException) as err:
        await objects(api).create_namespaced_custom_object(G, V, "default", P,
                                                           widget("w", name="Bad"))
    assert json.loads(err.value.body)["message"] == (
        'Widget.example.com "w" is invalid: spec.name: Invalid value: "Bad": spec.name in body '
        "should match '^[a-z]+$'")


async def test_served_under_every_version(crd: dict[str, Any], api: client.ApiClient) -> None:
    await objects(api).create_namespaced_custom_object(G, V, "default", P, widget("w1"))
    beta = await objects(api).get_namespaced_custom_object(G, "v1beta1", "default", P, "w1")
    assert beta["apiVersion"] == "example.com/v1beta1"
    listed = await objects(api).list_namespaced_custom_object(G, "v1beta1", "default", P)
    assert listed["kind"] == "WidgetList" and listed["items"][0]["apiVersion"].endswith("v1beta1")


async def test_status_subresource_split(crd: dict[str, Any], api: client.ApiClient) -> None:
    co = objects(api)
    obj = widget("w1")
    obj["status"] = {"phase": "ignored"}
    created = await co.create_namespaced_custom_object(G, V, "default", P, obj)
    assert "status" not in created
    patched = await co.patch_namespaced_custom_object_status(
        G, V, "default", P, "w1", {"status": {"phase": "Ready"}, "spec": {"name": "zzz"}},
        _content_type=MERGE)
    assert patched["status"] == {"phase": "Ready"} and patched["spec"]["name"] == "abc"
    assert patched["metadata"]["generation"] == 1
    patched["spec"]["size"] = 2
    patched["status"]["phase"] = "Lost"
    replaced = await co.replace_namespaced_custom_object(G, V, "default", P, "w1", patched)
    assert replaced["status"] == {"phase": "Ready"} and replaced["metadata"]["generation"] == 2


async def test_cr_put_without_rv_is_invalid(crd: dict[str, Any], api: client.ApiClient) -> None:
    await objects(api).create_namespaced_custom_object(G, V, "default", P, widget("w1"))
    with pytest.raises(ApiException) as err:
        await objects(api).replace_namespaced_custom_object(G, V, "default", P, "w1",
                                                            widget("w1", size=3))
    assert err.value.status == 422
    assert json.loads(err.value.body)["details"]["causes"][0]["message"] == (
        "Invalid value: 0x0: must be specified for an update")


async def test_patch_flavours_on_custom_resource(crd: dict[str, Any],
                                                 api: client.ApiClient) -> None:
    co = objects(api)
    await co.create_namespaced_custom_object(G, V, "default", P, widget("w1"))
    merged = await co.patch_namespaced_custom_object(
        G, V, "default", P, "w1", {"spec": {"size": 4}}, _content_type=MERGE)
    assert merged["spec"]["size"] == 4
    ops = [{"op": "test", "path": "/spec/size", "value": 4},
           {"op": "replace", "path": "/spec/size", "value": 5}]
    patched = await co.patch_namespaced_custom_object(G, V, "default", P, "w1", ops)
    assert patched["spec"]["size"] == 5
    with pytest.raises(ApiException) as err:
        await co.patch_namespaced_custom_object(
            G, V, "default", P, "w1", [{"op": "test", "path": "/spec/size", "value": 1}])
    assert err.value.status == 422
    with pytest.raises(ApiException) as err:
        # kubernetes_asyncio sends a dict as json-patch: a real server answers 400.
        await co.patch_namespaced_custom_object(G, V, "default", P, "w1", {"spec": {}})
    assert err.value.status == 400
    with pytest.raises(ApiException) as err:
        await co.patch_namespaced_custom_object(
            G, V, "default", P, "w1", {"spec": {"size": 2}},
            _content_type="application/strategic-merge-patch+json")
    assert err.value.status == 415
    with pytest.raises(ApiException) as err:
        await co.patch_namespaced_custom_object(
            G, V, "default", P, "w1", {"spec": {"name": "BAD"}}, _content_type=MERGE)
    assert err.value.status == 422


async def test_patch_resource_version_precondition(crd: dict[str, Any],
                                                   api: client.ApiClient) -> None:
    co = objects(api)
    created = await co.create_namespaced_custom_object(G, V, "default", P, widget("w1"))
    await co.patch_namespaced_custom_object(G, V, "default", P, "w1", {"spec": {"size": 2}},
                                            _content_type=MERGE)
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
             "spec": {"size": 3}}
    with pytest.raises(ApiException) as err:
        await co.patch_namespaced_custom_object(G, V, "default", P, "w1", stale,
                                                _content_type=MERGE)
    assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "Conflict"


async def test_unknown_patch_type_is_415(http: aiohttp.ClientSession) -> None:
    await http.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "c"}})
    resp = await http.patch("/api/v1/namespaces/default/configmaps/c", data=b"{}",
                            headers={"Content-Type": "text/csv"})
    assert resp.status == 415 and (await resp.json())["reason"] == "UnsupportedMediaType"


async def test_strategic_merge_on_builtin(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    dep = deployment("web")
    dep["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "busybox"})
    await apps.create_namespaced_deployment("default", dep)
    patched = await apps.patch_namespaced_deployment("web", "default", {"spec": {"template": {
        "spec": {"containers": [{"name": "app", "image": "nginx:1.26",
                                 "env": [{"name": "A", "value": "1"}]}]}}}})
    containers = {c.name: c for c in patched.spec.template.spec.containers}
    assert containers["app"].image == "nginx:1.26" and containers["side"].image == "busybox"
    patched = await apps.patch_namespaced_deployment("web", "default", {"spec": {"template": {
        "spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}})
    assert [c.name for c in patched.spec.template.spec.containers] == ["app"]


async def test_deleting_crd_removes_resource(crd: dict[str, Any], api: client.ApiClient,
                                             http: aiohttp.ClientSession) -> None:
    await objects(api).create_namespaced_custom_object(G, V, "default", P, widget("w1"))
    await client.ApiextensionsV1Api(api).delete_custom_resource_definition("widgets.example.com")
    resp = await http.get("/apis/example.com/v1/namespaces/default/widgets")
    assert resp.status == 404
    groups = await (await http.get("/apis")).json()
    assert "example.com" not in [g["name"] for g in groups["groups"]]


async def test_field_selectors_on_custom_resources(crd: dict[str, Any],
                                                   api: client.ApiClient) -> None:
    co = objects(api)
    for name in ("a", "b"):
        await co.create_namespaced_custom_object(G, V, "default", P, widget(name))
    got = await co.list_cluster_custom_object(G, V, P, field_selector="metadata.name=b")
    assert [i["metadata"]["name"] for i in got["items"]] == ["b"]
    with pytest.raises(ApiException) as err:
        await co.list_namespaced_custom_object(G, V, "default", P, field_selector="spec.name=a")
    assert err.value.status == 400
