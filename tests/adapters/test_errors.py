"""One map from what the Kubernetes API answers to what canaryd does about it: each answer of
a real (emulated) API server, and no answer at all, lands in its kind with the details."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd.adapters.errors import (
    Conflict,
    Invalid,
    KubeError,
    NotFound,
    Unavailable,
    translated,
)
from canaryd.adapters.kube import ObjectRef, RolloutStore
from canaryd.adapters.retry import kube_call
from canaryd.adapters.routers import RouterError
from canaryd.adapters.routers.base import call
from canaryd.sandbox.apiserver import ApiServer
from canaryd.sandbox.testing import kube_client
from tests.api.support import ROLLOUT_CRD, manifest

G, V, P = "canaryd.io", "v1alpha1", "rollouts"


@pytest.fixture
async def server() -> AsyncIterator[ApiServer]:
    async with ApiServer() as srv:
        yield srv


@pytest.fixture
async def api(server: ApiServer, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    async with kube_client(server, tmp_path, crds=[ROLLOUT_CRD], namespaces=["demo"]) as api:
        yield api


async def test_each_answer_is_its_kind_with_the_status_details(api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    created = await custom.create_namespaced_custom_object(G, V, "demo", P, manifest())
    with pytest.raises(NotFound) as missing:
        await kube_call("get", lambda: custom.get_namespaced_custom_object(
            G, V, "demo", P, "absent"))
    assert missing.value.name == "absent" and not missing.value.resource_missing
    assert missing.value.status == 404 and isinstance(missing.value, ApiException)
    with pytest.raises(NotFound) as unserved:
        await kube_call("get", lambda: custom.get_namespaced_custom_object(
            "nothing.example", "v1", "demo", "things", "x"))
    assert unserved.value.resource_missing
    with pytest.raises(Conflict) as exists:
        await kube_call("create", lambda: custom.create_namespaced_custom_object(
            G, V, "demo", P, manifest()))
    assert exists.value.already_exists
    store = RolloutStore(api)
    ref = ObjectRef("demo", "podinfo-v2")
    stale = created["metadata"]["resourceVersion"]
    await store.write_status(ref, {"phase": "Pending"}, stale)
    with pytest.raises(Conflict) as fenced:
        await store.write_status(ref, {"phase": "Pending"}, stale)
    assert not fenced.value.already_exists and "write status demo/podinfo-v2" in str(fenced.value)
    bad = manifest("bad-one", target="Not A Label")
    with pytest.raises(Invalid) as invalid:
        await kube_call("create", lambda: custom.create_namespaced_custom_object(
            G, V, "demo", P, bad))
    assert invalid.value.status == 422
    assert any(c.field.startswith("spec.target") for c in invalid.value.causes)


async def test_outages_are_unavailable_retried_and_bounded(
    api: client.ApiClient, server: ApiServer,
) -> None:
    custom = client.CustomObjectsApi(api)
    await custom.create_namespaced_custom_object(G, V, "demo", P, manifest())
    server.faults.fail_next(2, 503, verb="get", resource="rollouts")
    got = await kube_call("get", lambda: custom.get_namespaced_custom_object(
        G, V, "demo", P, "podinfo-v2"))
    assert got["metadata"]["name"] == "podinfo-v2", "two 503s were retried"
    server.faults.fail_next(10, 503, verb="get", resource="rollouts")
    with pytest.raises(Unavailable) as down:
        await kube_call("get", lambda: custom.get_namespaced_custom_object(
            G, V, "demo", P, "podinfo-v2"), attempts=3, max_seconds=5)
    assert down.value.status == 503
    server.faults.clear()
    before = len(server.requests)
    with pytest.raises(NotFound):
        await kube_call("get", lambda: custom.get_namespaced_custom_object(
            G, V, "demo", P, "absent"))
    assert len(server.requests) == before + 1, "an answer is not retried"


async def test_no_answer_at_all_is_unavailable_with_status_0(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = client.Configuration(host=f"http://127.0.0.1:{port}")
    async with client.ApiClient(cfg) as api:
        core = client.CoreV1Api(api)
        with pytest.raises(Unavailable) as err:
            await translated("list namespaces", core.list_namespace(_request_timeout=2))
    assert err.value.status == 0 and isinstance(err.value, KubeError)


async def test_routers_report_a_missing_object_or_resource_as_router_error(
    api: client.ApiClient,
) -> None:
    custom = client.CustomObjectsApi(api)
    with pytest.raises(RouterError, match=r"^trafficsplit demo/x not found: the API server "
                                          r"does not serve split\.smi-spec\.io"):
        await call("get", "trafficsplit demo/x", lambda: custom.get_namespaced_custom_object(
            "split.smi-spec.io", "v1alpha2", "demo", "trafficsplits", "x"),
            served="split.smi-spec.io/v1alpha2 trafficsplits")
    with pytest.raises(RouterError, match=r"^rollout demo/x not found$"):
        await call("get", "rollout demo/x", lambda: custom.get_namespaced_custom_object(
            G, V, "demo", P, "x"), served=f"{G}/{V} {P}")
