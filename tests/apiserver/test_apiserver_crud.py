"""Object metadata, optimistic concurrency and error Status rules over real HTTP."""

from __future__ import annotations

import json

import aiohttp
import pytest
from apiserver_helpers import deployment
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd.sandbox.apiserver import ApiServer


def body(exc: ApiException) -> dict:  # type: ignore[type-arg]
    return json.loads(exc.body)  # type: ignore[no-any-return]


async def test_create_sets_metadata_and_answers_201(http: aiohttp.ClientSession) -> None:
    resp = await http.post("/api/v1/namespaces/default/configmaps",
                           json={"metadata": {"name": "c1"}, "data": {"a": "1"}})
    assert resp.status == 201
    obj = await resp.json()
    assert obj["kind"] == "ConfigMap" and obj["apiVersion"] == "v1"
    meta = obj["metadata"]
    assert meta["uid"] and meta["generation"] == 1 and meta["resourceVersion"]
    assert meta["creationTimestamp"].endswith("Z") and len(meta["creationTimestamp"]) == 20
    assert "managedFields" not in meta


async def test_create_with_resource_version_is_refused(http: aiohttp.ClientSession) -> None:
    resp = await http.post("/api/v1/namespaces/default/configmaps",
                           json={"metadata": {"name": "c1", "resourceVersion": "5"}})
    assert resp.status == 500
    assert "resourceVersion should not be set" in (await resp.json())["message"]


async def test_duplicate_create_is_already_exists(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    with pytest.raises(ApiException) as err:
        await core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    assert err.value.status == 409 and body(err.value)["reason"] == "AlreadyExists"


async def test_missing_object_is_not_found_with_details(api: client.ApiClient) -> None:
    with pytest.raises(ApiException) as err:
        await client.AppsV1Api(api).read_namespaced_deployment("nope", "default")
    status = body(err.value)
    assert err.value.status == 404
    assert status["message"] == 'deployments.apps "nope" not found'
    assert status["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}
    assert status["kind"] == "Status" and status["status"] == "Failure"


async def test_unknown_path_and_method(http: aiohttp.ClientSession) -> None:
    resp = await http.get("/apis/nope.io/v1/things")
    assert resp.status == 404
    assert (await resp.json())["message"] == "the server could not find the requested resource"
    resp = await http.post("/api/v1/namespaces/default/configmaps/x", json={})
    assert resp.status == 405
    assert (await resp.json())["reason"] == "MethodNotAllowed"


async def test_stale_put_conflicts_with_exact_message(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    created = await apps.create_namespaced_deployment("default", deployment("web"))
    created.spec.replicas = 3
    await apps.replace_namespaced_deployment("web", "default", created)
    created.spec.replicas = 4
    with pytest.raises(ApiException) as err:
        await apps.replace_namespaced_deployment("web", "default", created)
    assert err.value.status == 409
    assert body(err.value)["message"] == (
        'Operation cannot be fulfilled on deployments.apps "web": the object has been '
        "modified; please apply your changes to the latest version and try again")


async def test_put_without_resource_version(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    await apps.create_namespaced_deployment("default", deployment("web"))
    dep = deployment("web", replicas=5)
    updated = await apps.replace_namespaced_deployment("web", "default", dep)
    assert updated.spec.replicas == 5
    leases = client.CoordinationV1Api(api)
    await leases.create_namespaced_lease("default", {"metadata": {"name": "l"},
                                                     "spec": {"holderIdentity": "a"}})
    with pytest.raises(ApiException) as err:
        await leases.replace_namespaced_lease("l", "default", {
            "metadata": {"name": "l"}, "spec": {"holderIdentity": "b"}})
    assert err.value.status == 422
    assert "must be specified for an update" in body(err.value)["message"]


async def test_noop_write_keeps_resource_version(api: client.ApiClient,
                                                 server: ApiServer) -> None:
    core = client.CoreV1Api(api)
    cm = await core.create_namespaced_config_map("default", {"metadata": {"name": "c"},
                                                             "data": {"a": "1"}})
    rv = server.store.rv
    again = await core.replace_namespaced_config_map("c", "default", cm)
    assert again.metadata.resource_version == cm.metadata.resource_version
    assert server.store.rv == rv


async def test_deployment_generation_follows_spec(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    await apps.create_namespaced_deployment("default", deployment("web"))
    d = await apps.patch_namespaced_deployment("web", "default",
                                               {"metadata": {"labels": {"x": "y"}}})
    assert d.metadata.generation == 1
    d = await apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 7}})
    assert d.metadata.generation == 2


async def test_deployment_without_selector_is_invalid(http: aiohttp.ClientSession) -> None:
    dep = deployment("web")
    del dep["spec"]["selector"]
    resp = await http.post("/apis/apps/v1/namespaces/default/deployments", json=dep)
    assert resp.status == 422
    status = await resp.json()
    assert status["reason"] == "Invalid" and status["details"]["kind"] == "Deployment"
    assert {"reason": "FieldValueRequired", "message": "Required value",
            "field": "spec.selector"} in status["details"]["causes"]


async def test_body_without_apiversion_and_generate_name(api: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(api)
    lease = await leases.create_namespaced_lease(
        "default", {"metadata": {"name": "lock"},
                    "spec": {"renewTime": "2026-01-02T03:04:05.000000Z"}})
    assert lease.kind == "Lease" and lease.spec.renew_time is not None
    core = client.CoreV1Api(api)
    cm = await core.create_namespaced_config_map("default", {"metadata": {"generateName": "g-"}})
    assert cm.metadata.name.startswith("g-") and len(cm.metadata.name) == 7


async def test_namespace_must_exist_and_deletion_cascades(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as err:
        await core.create_namespaced_config_map("ghost", {"metadata": {"name": "c"}})
    assert err.value.status == 404 and body(err.value)["message"] == 'namespaces "ghost" not found'
    await core.create_namespace({"metadata": {"name": "team"}})
    await core.create_namespaced_config_map("team", {"metadata": {"name": "c"}})
    await core.delete_namespace("team")
    with pytest.raises(ApiException) as err:
        await core.read_namespaced_config_map("c", "team")
    assert err.value.status == 404
    names = [n.metadata.name for n in (await core.list_namespace()).items]
    assert "default" in names and "kube-system" in names and "team" not in names


async def test_delete_returns_last_state_with_new_rv(api: client.ApiClient,
                                                     server: ApiServer) -> None:
    core = client.CoreV1Api(api)
    cm = await core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    await core.delete_namespaced_config_map("c", "default")
    assert server.store.rv > int(cm.metadata.resource_version)
    with pytest.raises(ApiException):
        await core.read_namespaced_config_map("c", "default")


async def test_service_gets_cluster_ip(api: client.ApiClient) -> None:
    svc = await client.CoreV1Api(api).create_namespaced_service("default", {
        "metadata": {"name": "s"}, "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}})
    assert svc.spec.cluster_ip.startswith("10.96.") and svc.spec.ports[0].protocol == "TCP"


async def test_bearer_token_is_optional(http: aiohttp.ClientSession) -> None:
    resp = await http.get("/api/v1/namespaces", headers={"Authorization": "Bearer whatever"})
    assert resp.status == 200
    resp = await http.get("/api/v1/namespaces")
    assert resp.status == 200
