"""CustomResourceDefinitions: serving, versions, status split, schema, PATCH flavours; on the
emulator and the real kube-apiserver (which share the Widget CRD across tests)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from apiserver_helpers import WIDGET_CRD, Kube, deployment, ensure_crd, widget
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd.sandbox.testing import eventually

KUBE_BACKENDS = ("emulator", "real")
MERGE = "application/merge-patch+json"
G, V, P = "example.com", "v1", "widgets"


def objects(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def status_of(err: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    return json.loads(err.value.body)  # type: ignore[no-any-return]


async def test_crd_is_established_and_served(crd: dict[str, Any], api: client.ApiClient,
                                             ns: str) -> None:
    conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conds == {"NamesAccepted": "True", "Established": "True"}
    assert crd["status"]["storedVersions"] == ["v1"]
    assert "finalizers" not in crd["metadata"]  # the DELETE adds one
    created = await objects(api).create_namespaced_custom_object(G, V, ns, P, widget("w1"))
    assert created["apiVersion"] == "example.com/v1" and created["metadata"]["generation"] == 1


async def test_crd_pruning_and_defaults(crd: dict[str, Any], api: client.ApiClient,
                                        ns: str) -> None:
    obj = widget("w1", junk=1, extra={"free": {"form": True}})
    obj["top"] = "dropped"
    created = await objects(api).create_namespaced_custom_object(G, V, ns, P, obj)
    assert "junk" not in created["spec"] and "top" not in created
    assert created["spec"]["size"] == 1
    assert created["spec"]["extra"] == {"free": {"form": True}}


@pytest.mark.parametrize(("spec", "reason", "field", "message"), [
    ({"name": "Bad!"}, "FieldValueInvalid", "spec.name",
     "Invalid value: \"Bad!\": spec.name in body should match '^[a-z]+$'"),
    ({"name": "abcdefghijkl"}, "FieldValueTooLong", "spec.name",
     "Too long: may not be more than 10 bytes"),
    ({"name": "ok", "size": 0}, "FieldValueInvalid", "spec.size",
     "Invalid value: 0: spec.size in body should be greater than or equal to 1"),
    ({"name": "ok", "size": 10}, "FieldValueInvalid", "spec.size",
     "Invalid value: 10: spec.size in body should be less than or equal to 9"),
    ({"name": "ok", "size": "x"}, "FieldValueTypeInvalid", "spec.size",
     'Invalid value: "string": spec.size in body must be of type integer: "string"'),
    ({"name": "ok", "mode": "warp"}, "FieldValueNotSupported", "spec.mode",
     'Unsupported value: "warp": supported values: "fast", "slow"'),
    ({}, "FieldValueRequired", "spec.name", "Required value"),
])
async def test_schema_validation_gives_invalid_with_causes(
        crd: dict[str, Any], api: client.ApiClient, ns: str, spec: dict[str, Any], reason: str,
        field: str, message: str) -> None:
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
           "spec": spec}
    with pytest.raises(ApiException) as err:
        await objects(api).create_namespaced_custom_object(G, V, ns, P, obj)
    status = status_of(err)
    assert err.value.status == 422 and status["reason"] == "Invalid"
    assert status["details"]["kind"] == "Widget"
    assert status["details"]["causes"] == [{"reason": reason, "message": message,
                                            "field": field}]
    assert status["message"] == f'Widget.example.com "w" is invalid: {field}: {message}'


async def test_custom_resource_body_needs_kind_and_api_version(
        crd: dict[str, Any], http: aiohttp.ClientSession, ns: str) -> None:
    url = f"/apis/{G}/{V}/namespaces/{ns}/{P}"
    raw = b'{"metadata": {"name": "w"}, "spec": {"name": "abc"}}'
    resp = await http.post(url, data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["message"] == (
        "the object provided is unrecognized (must be of type Widget): Object 'Kind' is "
        f"missing in '{raw.decode()}' ({raw[:30].decode()} ...)")
    resp = await http.post(url, json={"kind": "Widget", "metadata": {"name": "w"}})
    assert resp.status == 400
    assert (await resp.json())["message"] == (
        "the API version in the data () does not match the expected API version "
        "(example.com/v1)")
    resp = await http.post(url, json={"apiVersion": "example.com/v1", "kind": "Gadget",
                                      "metadata": {"name": "w"}})
    assert resp.status == 422
    assert (await resp.json())["message"] == (
        'Gadget.example.com "w" is invalid: kind: Invalid value: "Gadget": must be Widget')


async def test_served_under_every_version(crd: dict[str, Any], api: client.ApiClient,
                                          ns: str) -> None:
    await objects(api).create_namespaced_custom_object(G, V, ns, P, widget("w1"))
    beta = await objects(api).get_namespaced_custom_object(G, "v1beta1", ns, P, "w1")
    assert beta["apiVersion"] == "example.com/v1beta1"
    listed = await objects(api).list_namespaced_custom_object(G, "v1beta1", ns, P)
    assert listed["kind"] == "WidgetList" and listed["items"][0]["apiVersion"].endswith("v1beta1")


async def test_status_subresource_split(crd: dict[str, Any], api: client.ApiClient,
                                        ns: str) -> None:
    co = objects(api)
    obj = widget("w1")
    obj["status"] = {"phase": "ignored"}
    created = await co.create_namespaced_custom_object(G, V, ns, P, obj)
    assert "status" not in created
    patched = await co.patch_namespaced_custom_object_status(
        G, V, ns, P, "w1", {"status": {"phase": "Ready"}, "spec": {"name": "zzz"}},
        _content_type=MERGE)
    assert patched["status"] == {"phase": "Ready"} and patched["spec"]["name"] == "abc"
    assert patched["metadata"]["generation"] == 1
    patched["spec"]["size"] = 2
    patched["status"]["phase"] = "Lost"
    replaced = await co.replace_namespaced_custom_object(G, V, ns, P, "w1", patched)
    assert replaced["status"] == {"phase": "Ready"} and replaced["metadata"]["generation"] == 2


async def test_cr_put_without_rv_is_invalid(crd: dict[str, Any], api: client.ApiClient,
                                            ns: str) -> None:
    await objects(api).create_namespaced_custom_object(G, V, ns, P, widget("w1"))
    with pytest.raises(ApiException) as err:
        await objects(api).replace_namespaced_custom_object(G, V, ns, P, "w1",
                                                            widget("w1", size=3))
    assert err.value.status == 422
    status = status_of(err)
    assert status["message"] == ('widgets.example.com "w1" is invalid: metadata.resourceVersion: '
                                 "Invalid value: 0: must be specified for an update")
    assert status["details"]["kind"] == "widgets"


async def test_patch_flavours_on_custom_resource(crd: dict[str, Any], api: client.ApiClient,
                                                 ns: str) -> None:
    co = objects(api)
    await co.create_namespaced_custom_object(G, V, ns, P, widget("w1"))
    merged = await co.patch_namespaced_custom_object(
        G, V, ns, P, "w1", {"spec": {"size": 4}}, _content_type=MERGE)
    assert merged["spec"]["size"] == 4
    ops = [{"op": "test", "path": "/spec/size", "value": 4},
           {"op": "replace", "path": "/spec/size", "value": 5}]
    patched = await co.patch_namespaced_custom_object(G, V, ns, P, "w1", ops)
    assert patched["spec"]["size"] == 5
    for failing in ([{"op": "test", "path": "/spec/size", "value": 1}],
                    [{"op": "replace", "path": "/spec/nothing/here", "value": 1}]):
        with pytest.raises(ApiException) as err:
            await co.patch_namespaced_custom_object(G, V, ns, P, "w1", failing)
        assert err.value.status == 422
        assert status_of(err)["message"] == (
            "the server rejected our request due to an error in our request")
    with pytest.raises(ApiException) as err:
        # kubernetes_asyncio sends a dict as json-patch, which a real server refuses.
        await co.patch_namespaced_custom_object(G, V, ns, P, "w1", {"spec": {}})
    assert err.value.status == 400
    assert status_of(err)["message"] == ("error decoding patch: json: cannot unmarshal object "
                                         "into Go value of type []handlers.jsonPatchOp")
    with pytest.raises(ApiException) as err:
        await co.patch_namespaced_custom_object(G, V, ns, P, "w1", [1], _content_type=MERGE)
    assert err.value.status == 400
    assert status_of(err)["message"] == ("error decoding patch: json: cannot unmarshal array "
                                         "into Go value of type map[string]interface {}")
    with pytest.raises(ApiException) as err:
        await co.patch_namespaced_custom_object(
            G, V, ns, P, "w1", {"spec": {"size": 2}},
            _content_type="application/strategic-merge-patch+json")
    assert err.value.status == 415
    assert status_of(err)["message"] == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, "
        "application/apply-patch+yaml")
    with pytest.raises(ApiException) as err:
        await co.patch_namespaced_custom_object(
            G, V, ns, P, "w1", {"spec": {"name": "BAD"}}, _content_type=MERGE)
    assert err.value.status == 422


async def test_patch_resource_version_precondition(crd: dict[str, Any], api: client.ApiClient,
                                                   ns: str) -> None:
    co = objects(api)
    created = await co.create_namespaced_custom_object(G, V, ns, P, widget("w1"))
    await co.patch_namespaced_custom_object(G, V, ns, P, "w1", {"spec": {"size": 2}},
                                            _content_type=MERGE)
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
             "spec": {"size": 3}}
    with pytest.raises(ApiException) as err:
        await co.patch_namespaced_custom_object(G, V, ns, P, "w1", stale, _content_type=MERGE)
    assert err.value.status == 409 and status_of(err)["reason"] == "Conflict"


async def test_unknown_patch_type_is_415(http: aiohttp.ClientSession, ns: str) -> None:
    await http.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "c"}})
    resp = await http.patch(f"/api/v1/namespaces/{ns}/configmaps/c", data=b"{}",
                            headers={"Content-Type": "text/csv"})
    status = await resp.json()
    assert resp.status == 415 and status["reason"] == "UnsupportedMediaType"
    assert status["message"] == "415: Unsupported Media Type"


async def test_strategic_merge_on_builtin(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    dep = deployment("web")
    dep["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "busybox"})
    await apps.create_namespaced_deployment(ns, dep)
    patched = await apps.patch_namespaced_deployment("web", ns, {"spec": {"template": {
        "spec": {"containers": [{"name": "app", "image": "nginx:1.26",
                                 "env": [{"name": "A", "value": "1"}]}]}}}})
    containers = {c.name: c for c in patched.spec.template.spec.containers}
    assert containers["app"].image == "nginx:1.26" and containers["side"].image == "busybox"
    patched = await apps.patch_namespaced_deployment("web", ns, {"spec": {"template": {
        "spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}})
    assert [c.name for c in patched.spec.template.spec.containers] == ["app"]


async def test_deleting_crd_removes_resource_and_its_objects(
        api: client.ApiClient, http: aiohttp.ClientSession, kube: Kube, ns: str) -> None:
    # A CRD of this test's own (the shared Widget CRD stays).
    group = f"{ns}.example.com"
    body = json.loads(json.dumps(WIDGET_CRD).replace("example.com", group))
    await ensure_crd(api, body)
    co = objects(api)
    await co.create_namespaced_custom_object(group, V, ns, P, {
        **widget("held"), "apiVersion": f"{group}/v1",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    ext = client.ApiextensionsV1Api(api)
    await ext.delete_custom_resource_definition(f"widgets.{group}")

    async def terminating() -> bool:
        got = await ext.read_custom_resource_definition(f"widgets.{group}")
        return any(c.type == "Terminating" and c.status == "True"
                   for c in got.status.conditions or [])

    # Its objects are deleted first; one held by a finalizer keeps the CRD Terminating,
    # and nothing new may be created meanwhile.
    await eventually(terminating, timeout=60, what="the CRD Terminating")
    with pytest.raises(ApiException) as err:
        await co.create_namespaced_custom_object(group, V, ns, P, {
            **widget("late"), "apiVersion": f"{group}/v1"})
    assert err.value.status == 403
    assert status_of(err)["message"] == (
        f'widgets.{group} "late" is forbidden: create not allowed while custom resource '
        "definition is terminating")
    await co.patch_namespaced_custom_object(group, V, ns, P, "held",
                                            {"metadata": {"finalizers": None}},
                                            _content_type=MERGE)

    async def gone() -> bool:
        resp = await http.get(f"/apis/{group}/v1/namespaces/{ns}/widgets")
        groups = await (await http.get("/apis")).json()
        return resp.status == 404 and group not in [g["name"] for g in groups["groups"]]

    await eventually(gone, timeout=60, what=f"{group} no longer served")


async def test_field_selectors_on_custom_resources(crd: dict[str, Any], api: client.ApiClient,
                                                   ns: str) -> None:
    co = objects(api)
    for name in ("a", "b"):
        await co.create_namespaced_custom_object(G, V, ns, P, widget(name))
    got = await co.list_namespaced_custom_object(G, V, ns, P, field_selector="metadata.name=b")
    assert [i["metadata"]["name"] for i in got["items"]] == ["b"]
    with pytest.raises(ApiException) as err:
        await co.list_namespaced_custom_object(G, V, ns, P, field_selector="spec.name=a")
    assert err.value.status == 400
    assert status_of(err)["message"] == "field label not supported: spec.name"
