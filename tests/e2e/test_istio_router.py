"""The Istio router touches the two managed weights and nothing else, byte for byte."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd.adapters.routers import RouterError
from canaryd.adapters.routers.istio import IstioRouter
from canaryd.core.model import Weights
from canaryd.core.routerspec import IstioRouter as IstioSpec
from canaryd.sandbox.apiserver import ApiServer
from canaryd.sandbox.runner import install_crds
from canaryd.sandbox.testing import kube_client

VS: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
    "metadata": {"name": "web", "namespace": "default", "labels": {"team": "a"}},
    "spec": {
        "hosts": ["web"],
        "http": [
            {"name": "beta-users", "match": [{"headers": {"x-beta": {"exact": "1"}}}],
             "route": [{"destination": {"host": "web", "subset": "canary"}}]},
            {"name": "primary", "timeout": "3s", "retries": {"attempts": 2},
             "route": [{"destination": {"host": "web", "subset": "stable", "port": {"number": 80}},
                        "weight": 100, "headers": {"response": {"set": {"x-v": "1"}}}},
                       {"destination": {"host": "web", "subset": "canary"}, "weight": 0},
                       {"destination": {"host": "mirror"}, "weight": 0}]},
        ],
    },
}
SPEC = IstioSpec.model_validate({"virtualService": "web", "route": "primary",
                                 "stable": {"host": "web", "subset": "stable"},
                                 "canary": {"host": "web", "subset": "canary"}})


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    async with ApiServer() as server, kube_client(server, tmp_path) as api:
        await install_crds(api)
        await client.CustomObjectsApi(api).create_namespaced_custom_object(
            "networking.istio.io", "v1", "default", "virtualservices", copy.deepcopy(VS))
        yield api


async def get_vs(api: client.ApiClient) -> dict[str, Any]:
    result: dict[str, Any] = await client.CustomObjectsApi(api).get_namespaced_custom_object(
        "networking.istio.io", "v1", "default", "virtualservices", "web")
    return result


async def test_only_the_two_weights_change(api: client.ApiClient) -> None:
    router = IstioRouter(api, "default", SPEC)
    assert await router.read() == Weights(stable=100, canary=0)
    assert await router.write(Weights(stable=70, canary=30)) == Weights(stable=70, canary=30)
    after = await get_vs(api)
    expected = copy.deepcopy(VS["spec"])
    expected["http"][1]["route"][0]["weight"] = 70
    expected["http"][1]["route"][1]["weight"] = 30
    assert after["spec"] == expected
    assert after["metadata"]["labels"] == {"team": "a"}


async def test_missing_objects_and_destinations_are_named(api: client.ApiClient) -> None:
    missing = IstioRouter(api, "default", SPEC.model_copy(update={"virtual_service": "nope"}))
    with pytest.raises(RouterError, match="virtualservice default/nope not found"):
        await missing.read()
    other = SPEC.model_copy(update={"route": "absent"})
    with pytest.raises(RouterError, match="no http route named 'absent'"):
        await IstioRouter(api, "default", other).read()
    wrong = SPEC.model_copy(update={"canary": SPEC.canary.model_copy(update={"subset": "v9"})})
    with pytest.raises(RouterError, match="canary destination web subset v9"):
        await IstioRouter(api, "default", wrong).read()


async def test_a_reordered_route_makes_the_guarded_patch_fail(api: client.ApiClient) -> None:
    router = IstioRouter(api, "default", SPEC)
    obj = await router._get()
    located = router._locate(obj)
    # Someone swaps the two entries between our read and our write.
    vs = await get_vs(api)
    entries = vs["spec"]["http"][1]["route"]
    entries[0], entries[1] = entries[1], entries[0]
    await client.CustomObjectsApi(api).replace_namespaced_custom_object(
        "networking.istio.io", "v1", "default", "virtualservices", "web", vs)
    route, s, _, old_entries = located
    ops = [{"op": "test", "path": f"/spec/http/{route}/route/{s}/destination",
            "value": old_entries[s]["destination"]},
           {"op": "replace", "path": f"/spec/http/{route}/route/{s}/weight", "value": 50}]
    with pytest.raises(ApiException) as info:
        await client.CustomObjectsApi(api).patch_namespaced_custom_object(
            "networking.istio.io", "v1", "default", "virtualservices", "web", ops,
            _content_type="application/json-patch+json")
    assert info.value.status == 422
    # A fresh write finds the entries where they are now.
    assert await router.write(Weights(stable=60, canary=40)) == Weights(stable=60, canary=40)
