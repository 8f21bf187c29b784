"""Object metadata, optimistic concurrency and error Status rules over real HTTP, on the
emulator and on the real kube-apiserver alike."""

from __future__ import annotations

import json

import aiohttp
import pytest
from apiserver_helpers import Kube, deployment
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd.sandbox.apiserver import ApiServer
from canaryd.sandbox.testing import eventually

KUBE_BACKENDS = ("emulator", "real")


def body(exc: ApiException) -> dict:  # type: ignore[type-arg]
    return json.loads(exc.body)  # type: ignore[no-any-return]


async def test_create_sets_metadata_and_answers_201(http: aiohttp.ClientSession,
                                                    ns: str) -> None:
    resp = await http.post(f"/api/v1/namespaces/{ns}/configmaps",
                           json={"metadata": {"name": "c1"}, "data": {"a": "1"}})
    assert resp.status == 201
    obj = await resp.json()
    assert obj["kind"] == "ConfigMap" and obj["apiVersion"] == "v1"
    meta = obj["metadata"]
    assert meta["uid"] and meta["resourceVersion"] and meta["namespace"] == ns
    assert meta["creationTimestamp"].endswith("Z") and len(meta["creationTimestamp"]) == 20
    assert "generation" not in meta  # only some types keep one (Deployments, CRs, ...)
    created = await http.post(f"/apis/apps/v1/namespaces/{ns}/deployments",
                              json=deployment("web"))
    assert (await created.json())["metadata"]["generation"] == 1


async def test_create_with_resource_version_is_refused(http: aiohttp.ClientSession,
                                                       ns: str) -> None:
    resp = await http.post(f"/api/v1/namespaces/{ns}/configmaps",
                           json={"metadata": {"name": "c1", "resourceVersion": "5"}})
    assert resp.status == 500
    status = await resp.json()
    assert status["message"] == "resourceVersion should not be set on objects to be created"
    assert "reason" not in status


async def test_duplicate_create_is_already_exists(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}})
    with pytest.raises(ApiException) as err:
        await core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}})
    assert err.value.status == 409 and body(err.value)["reason"] == "AlreadyExists"
    assert body(err.value)["message"] == 'configmaps "c" already exists'
    assert body(err.value)["details"] == {"name": "c", "kind": "configmaps"}


async def test_missing_object_is_not_found_with_details(api: client.ApiClient, ns: str) -> None:
    with pytest.raises(ApiException) as err:
        await client.AppsV1Api(api).read_namespaced_deployment("nope", ns)
    status = body(err.value)
    assert err.value.status == 404
    assert status["message"] == 'deployments.apps "nope" not found'
    assert status["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}
    assert status["kind"] == "Status" and status["status"] == "Failure"


async def test_unknown_path_and_method(http: aiohttp.ClientSession, ns: str) -> None:
    # An unknown group is not routed at all: Go's mux answers in plain text.
    resp = await http.get("/apis/nope.io/v1/things")
    assert resp.status == 404 and await resp.text() == "404 page not found\n"
    # A known group without that version or resource answers a Status.
    resp = await http.get("/apis/apps/v9/deployments")
    assert resp.status == 404
    assert (await resp.json())["message"] == "the server could not find the requested resource"
    resp = await http.post(f"/api/v1/namespaces/{ns}/configmaps/x", json={})
    assert resp.status == 405
    status = await resp.json()
    assert status["reason"] == "MethodNotAllowed"
    assert status["message"] == "the server does not allow this method on the requested resource"


async def test_stale_put_conflicts_with_exact_message(api: client.ApiClient, ns: str) -> None:
    # A ConfigMap: no controller writes it behind the test's back (a Deployment's status is).
    core = client.CoreV1Api(api)
    created = await core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}})
    created.data = {"a": "1"}
    await core.replace_namespaced_config_map("c", ns, created)
    created.data = {"a": "2"}
    with pytest.raises(ApiException) as err:
        await core.replace_namespaced_config_map("c", ns, created)
    assert err.value.status == 409
    assert body(err.value)["message"] == (
        'Operation cannot be fulfilled on configmaps "c": the object has been '
        "modified; please apply your changes to the latest version and try again")
    assert body(err.value)["details"] == {"name": "c", "kind": "configmaps"}


async def test_put_without_resource_version(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    await apps.create_namespaced_deployment(ns, deployment("web"))
    updated = await apps.replace_namespaced_deployment("web", ns, deployment("web", replicas=5))
    assert updated.spec.replicas == 5
    leases = client.CoordinationV1Api(api)
    await leases.create_namespaced_lease(ns, {"metadata": {"name": "l"},
                                              "spec": {"holderIdentity": "a"}})
    with pytest.raises(ApiException) as err:
        await leases.replace_namespaced_lease("l", ns, {
            "metadata": {"name": "l"}, "spec": {"holderIdentity": "b"}})
    assert err.value.status == 422
    status = body(err.value)
    assert status["message"] == ('leases.coordination.k8s.io "l" is invalid: '
                                 "metadata.resourceVersion: Invalid value: 0: must be specified "
                                 "for an update")
    assert status["details"]["kind"] == "leases"


async def test_noop_write_keeps_resource_version(api: client.ApiClient, kube: Kube,
                                                 ns: str) -> None:
    core = client.CoreV1Api(api)
    cm = await core.create_namespaced_config_map(ns, {"metadata": {"name": "c"},
                                                      "data": {"a": "1"}})
    rv = kube.emulator.store.rv if kube.emulator else None
    again = await core.replace_namespaced_config_map("c", ns, cm)
    assert again.metadata.resource_version == cm.metadata.resource_version
    if kube.emulator:  # and the store wrote nothing at all
        assert kube.emulator.store.rv == rv


async def test_deployment_generation_follows_spec(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    await apps.create_namespaced_deployment(ns, deployment("web"))
    d = await apps.patch_namespaced_deployment("web", ns, {"metadata": {"labels": {"x": "y"}}})
    assert d.metadata.generation == 1
    d = await apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 7}})
    assert d.metadata.generation == 2
    d = await apps.patch_namespaced_deployment("web", ns,
                                               {"metadata": {"annotations": {"a": "b"}}})
    assert d.metadata.generation == 3


async def test_deployment_without_selector_is_invalid(http: aiohttp.ClientSession,
                                                      ns: str) -> None:
    dep = deployment("web")
    del dep["spec"]["selector"]
    resp = await http.post(f"/apis/apps/v1/namespaces/{ns}/deployments", json=dep)
    assert resp.status == 422
    status = await resp.json()
    assert status["reason"] == "Invalid" and status["details"]["kind"] == "Deployment"
    assert {"reason": "FieldValueRequired", "message": "Required value",
            "field": "spec.selector"} in status["details"]["causes"]


async def test_body_kind_must_match_the_resource(http: aiohttp.ClientSession, ns: str) -> None:
    resp = await http.post(f"/api/v1/namespaces/{ns}/configmaps",
                           json={"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}})
    assert resp.status == 400
    assert (await resp.json())["message"] == (
        'Secret in version "v1" cannot be handled as a ConfigMap: converting (v1.Secret) to '
        "(core.ConfigMap): unknown conversion")


async def test_body_without_apiversion_and_generate_name(api: client.ApiClient,
                                                         ns: str) -> None:
    leases = client.CoordinationV1Api(api)
    lease = await leases.create_namespaced_lease(
        ns, {"metadata": {"name": "lock"},
             "spec": {"renewTime": "2026-01-02T03:04:05.000000Z"}})
    assert lease.kind == "Lease" and lease.spec.renew_time is not None
    core = client.CoreV1Api(api)
    cm = await core.create_namespaced_config_map(ns, {"metadata": {"generateName": "g-"}})
    assert cm.metadata.name.startswith("g-") and len(cm.metadata.name) == 7


async def test_secret_string_data_becomes_data(api: client.ApiClient, ns: str) -> None:
    secret = await client.CoreV1Api(api).create_namespaced_secret(
        ns, {"metadata": {"name": "s"}, "stringData": {"token": "abc"}})
    assert secret.data == {"token": "YWJj"} and secret.type == "Opaque"
    assert secret.string_data is None


async def test_namespace_must_exist_and_deletion_is_graceful(
        api: client.ApiClient, http: aiohttp.ClientSession, kube: Kube, ns: str) -> None:
    core = client.CoreV1Api(api)
    ghost = kube.name("ghost")
    with pytest.raises(ApiException) as err:
        await core.create_namespaced_config_map(ghost, {"metadata": {"name": "c"}})
    assert err.value.status == 404
    assert body(err.value)["message"] == f'namespaces "{ghost}" not found'
    assert body(err.value)["details"] == {"name": ghost, "kind": "namespaces"}
    team = kube.name("team")
    await core.create_namespace({"metadata": {"name": team}})
    await core.create_namespaced_config_map(team, {"metadata": {"name": "c"}})
    gone = await (await http.delete(f"/api/v1/namespaces/{team}")).json()
    # The DELETE answers the Namespace, Terminating; its content goes in the background.
    assert gone["status"]["phase"] == "Terminating" and gone["metadata"]["deletionTimestamp"]

    async def emptied() -> bool:
        try:
            await core.read_namespace(team)
        except ApiException as exc:
            return exc.status == 404
        return False

    await eventually(emptied, timeout=60, what=f"namespace {team} removed")
    with pytest.raises(ApiException) as err:
        await core.read_namespaced_config_map("c", team)
    assert err.value.status == 404
    names = [n.metadata.name for n in (await core.list_namespace()).items]
    assert "default" in names and "kube-system" in names and team not in names


async def test_create_in_terminating_namespace_is_forbidden(api: client.ApiClient, kube: Kube,
                                                            ns: str) -> None:
    core = client.CoreV1Api(api)
    team = kube.name("held")
    await core.create_namespace({"metadata": {"name": team}})
    # A finalizer nobody removes keeps the Namespace Terminating until the test lets go.
    await core.create_namespaced_config_map(team, {"metadata": {
        "name": "held", "finalizers": ["example.com/hold"]}})
    await core.delete_namespace(team)
    with pytest.raises(ApiException) as err:
        await core.create_namespaced_config_map(team, {"metadata": {"name": "late"}})
    status = body(err.value)
    assert err.value.status == 403 and status["reason"] == "Forbidden"
    assert status["message"] == (f'configmaps "late" is forbidden: unable to create new content '
                                 f"in namespace {team} because it is being terminated")
    assert status["details"]["causes"] == [{
        "reason": "NamespaceTerminating", "message": f"namespace {team} is being terminated",
        "field": "metadata.namespace"}]
    await core.patch_namespaced_config_map("held", team, {"metadata": {"finalizers": None}})


async def test_finalizers_hold_a_deleted_object(api: client.ApiClient, http: aiohttp.ClientSession,
                                                ns: str) -> None:
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map(ns, {"metadata": {
        "name": "held", "finalizers": ["example.com/x"]}})
    resp = await http.delete(f"/api/v1/namespaces/{ns}/configmaps/held")
    marked = await resp.json()
    assert resp.status == 200 and marked["kind"] == "ConfigMap"
    assert marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 0
    with pytest.raises(ApiException) as err:
        await core.patch_namespaced_config_map(
            "held", ns, {"metadata": {"finalizers": ["example.com/x", "example.com/y"]}})
    assert err.value.status == 422
    assert body(err.value)["message"] == (
        'ConfigMap "held" is invalid: metadata.finalizers: Forbidden: no new finalizers can be '
        'added if the object is being deleted, found new finalizers []string{"example.com/y"}')
    still = await core.patch_namespaced_config_map("held", ns, {"data": {"a": "b"}})
    assert still.data == {"a": "b"} and still.metadata.deletion_timestamp
    await core.patch_namespaced_config_map("held", ns, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as err:
        await core.read_namespaced_config_map("held", ns)
    assert err.value.status == 404


async def test_delete_answers_a_status_or_the_object(http: aiohttp.ClientSession,
                                                     ns: str) -> None:
    made = await (await http.post(f"/api/v1/namespaces/{ns}/configmaps",
                                  json={"metadata": {"name": "c"}})).json()
    resp = await http.delete(f"/api/v1/namespaces/{ns}/configmaps/c")
    assert resp.status == 200
    assert await resp.json() == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": "c", "kind": "configmaps", "uid": made["metadata"]["uid"]}}
    assert (await http.get(f"/api/v1/namespaces/{ns}/configmaps/c")).status == 404
    svc = {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}
    await http.post(f"/api/v1/namespaces/{ns}/services", json=svc)
    gone = await (await http.delete(f"/api/v1/namespaces/{ns}/services/s")).json()
    assert gone["kind"] == "Service" and gone["metadata"]["name"] == "s"


async def test_owner_references_are_garbage_collected(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    owner = await core.create_namespaced_config_map(ns, {"metadata": {"name": "owner"}})
    other = await core.create_namespaced_config_map(ns, {"metadata": {"name": "other"}})

    def ref(o: client.V1ConfigMap) -> dict[str, str]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "name": o.metadata.name,
                "uid": o.metadata.uid}

    for name, owners in (("only-child", [ref(owner)]), ("two-parents", [ref(owner), ref(other)])):
        await core.create_namespaced_config_map(ns, {"metadata": {
            "name": name, "ownerReferences": owners}})
    await core.delete_namespaced_config_map("owner", ns)

    async def collected() -> bool:
        names = {c.metadata.name for c in (await core.list_namespaced_config_map(ns)).items}
        kept = await core.read_namespaced_config_map("two-parents", ns)
        return "only-child" not in names and [r.name for r in kept.metadata.owner_references] \
            == ["other"]

    await eventually(collected, timeout=60, what="the garbage collector")


async def test_orphan_propagation_keeps_dependents(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    owner = await core.create_namespaced_config_map(ns, {"metadata": {"name": "owner"}})
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "child", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}]}})
    await core.delete_namespaced_config_map("owner", ns, propagation_policy="Orphan")

    async def orphaned() -> bool:
        child = await core.read_namespaced_config_map("child", ns)
        names = {c.metadata.name for c in (await core.list_namespaced_config_map(ns)).items}
        return not child.metadata.owner_references and "owner" not in names

    await eventually(orphaned, timeout=60, what="the dependent orphaned, the owner gone")


async def test_service_gets_cluster_ip(api: client.ApiClient, ns: str) -> None:
    svc = await client.CoreV1Api(api).create_namespaced_service(ns, {
        "metadata": {"name": "s"}, "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}})
    assert svc.spec.cluster_ip.startswith("10.96.") and svc.spec.ports[0].protocol == "TCP"
    assert svc.spec.ports[0].target_port == 80


@pytest.mark.emulator_only  # a real server authenticates every request (401 without a token)
async def test_bearer_token_is_optional(server: ApiServer) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as http:
        resp = await http.get("/api/v1/namespaces", headers={"Authorization": "Bearer whatever"})
        assert resp.status == 200
        resp = await http.get("/api/v1/namespaces")
        assert resp.status == 200
