"""The SMI TrafficSplit router against the sandbox API server: two backend weights moved and
read back, everything else left byte for byte, refusals that name what is missing."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd.adapters.routers import RouterError
from canaryd.adapters.routers.smi import GROUP, VERSION, SmiRouter
from canaryd.core.model import Weights
from canaryd.core.routerspec import SmiRouter as Spec
from tests.routers.support import NS, Objects

SPLIT = "podinfo-smi"
STABLE, MIRROR, CANARY = 0, 1, 2


def split() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrafficSplit",
        "metadata": {"name": SPLIT, "namespace": NS, "labels": {"app": "podinfo"},
                     "annotations": {"owner": "team-shop"}},
        "spec": {
            "service": "podinfo-smi",
            "backends": [
                {"service": "podinfo-stable", "weight": 100},
                {"service": "podinfo-mirror", "weight": 0},
                {"service": "podinfo-canary", "weight": 0},
            ],
            "matches": [{"kind": "HTTPRouteGroup", "name": "api-routes",
                         "apiGroup": "specs.smi-spec.io"}],
        },
    }


def spec(**changes: str) -> Spec:
    return Spec(**{"traffic_split": SPLIT, "stable": "podinfo-stable",
                   "canary": "podinfo-canary", **changes})


def splits(api: client.ApiClient) -> Objects:
    return Objects(api, GROUP, VERSION, "trafficsplits")


def weight(index: int) -> str:
    return f"/spec/backends/{index}/weight"


async def test_write_changes_only_the_two_managed_weights(api: client.ApiClient) -> None:
    objs = splits(api)
    before = await objs.create(split())
    router = SmiRouter(api, NS, spec())

    assert await router.read() == Weights(stable=100, canary=0)
    assert await router.write(Weights(stable=80, canary=20)) == Weights(stable=80, canary=20)
    assert await router.read() == Weights(stable=80, canary=20)

    after = await objs.get(SPLIT)
    expected = copy.deepcopy(before)
    expected["spec"]["backends"][STABLE]["weight"] = 80
    expected["spec"]["backends"][CANARY]["weight"] = 20
    assert json.dumps(after["spec"]) == json.dumps(expected["spec"])
    for key in ("labels", "annotations", "uid", "creationTimestamp"):
        assert after["metadata"][key] == before["metadata"][key]
    # Clients of the later versions see the same split.
    newest = await objs.get(SPLIT, version="v1alpha4")
    assert newest["apiVersion"] == f"{GROUP}/v1alpha4"
    assert newest["spec"] == after["spec"]


async def test_relative_weights_read_as_percentages(api: client.ApiClient) -> None:
    objs = splits(api)
    await objs.create(split())
    router = SmiRouter(api, NS, spec())
    for stable, canary, expected in ((1, 1, (50, 50)), (2, 1, (67, 33)), (0, 7, (0, 100)),
                                     (0, 0, (0, 0))):
        await objs.json_patch(SPLIT, [
            {"op": "replace", "path": weight(STABLE), "value": stable},
            {"op": "replace", "path": weight(CANARY), "value": canary},
        ])
        assert await router.read() == Weights(stable=expected[0], canary=expected[1])


async def test_writing_the_weights_already_in_force_changes_nothing(
    api: client.ApiClient,
) -> None:
    objs = splits(api)
    await objs.create(split())
    before = await objs.json_patch(SPLIT, [
        {"op": "replace", "path": weight(STABLE), "value": 500},
        {"op": "replace", "path": weight(CANARY), "value": 500},
    ])
    router = SmiRouter(api, NS, spec())
    assert await router.write(Weights(stable=50, canary=50)) == Weights(stable=50, canary=50)
    after = await objs.get(SPLIT)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


async def test_a_missing_split_is_named(api: client.ApiClient) -> None:
    router = SmiRouter(api, NS, spec(traffic_split="nope"))
    with pytest.raises(RouterError) as err:
        await router.read()
    assert str(err.value) == f"trafficsplit {NS}/nope not found"
    with pytest.raises(RouterError, match="not found"):
        await router.write(Weights(stable=50, canary=50))


async def test_an_api_the_server_does_not_serve_is_named(bare_api: client.ApiClient) -> None:
    with pytest.raises(RouterError) as err:
        await SmiRouter(bare_api, NS, spec()).read()
    assert str(err.value) == (
        f"trafficsplit {NS}/{SPLIT} not found: the API server does not serve "
        f"{GROUP}/{VERSION} trafficsplits (is the CRD installed?)"
    )


async def test_a_missing_backend_is_named_and_nothing_is_written(api: client.ApiClient) -> None:
    objs = splits(api)
    before = await objs.create(split())
    with pytest.raises(RouterError) as err:
        await SmiRouter(api, NS, spec(canary="podinfo-v2")).write(Weights(stable=0, canary=100))
    assert str(err.value) == (
        f"trafficsplit {NS}/{SPLIT}: canary backend podinfo-v2 is not in spec.backends "
        "(it has: podinfo-stable, podinfo-mirror, podinfo-canary)"
    )
    with pytest.raises(RouterError, match="stable backend podinfo-v1 is not in"):
        await SmiRouter(api, NS, spec(stable="podinfo-v1")).read()
    after = await objs.get(SPLIT)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


async def test_a_split_that_also_feeds_an_unmanaged_backend_is_refused(
    api: client.ApiClient,
) -> None:
    objs = splits(api)
    await objs.create(split())
    before = await objs.json_patch(SPLIT, [{"op": "replace", "path": weight(MIRROR),
                                            "value": 1}])
    with pytest.raises(RouterError) as err:
        await SmiRouter(api, NS, spec()).write(Weights(stable=50, canary=50))
    assert str(err.value) == (
        f"trafficsplit {NS}/{SPLIT} also sends traffic to podinfo-mirror, which canaryd "
        "does not manage; refusing to split it"
    )
    after = await objs.get(SPLIT)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


async def test_a_backend_listed_twice_is_refused(api: client.ApiClient) -> None:
    body = split()
    body["spec"]["backends"].append({"service": "podinfo-canary", "weight": 0})
    await splits(api).create(body)
    with pytest.raises(RouterError, match="canary backend podinfo-canary is listed 2 times"):
        await SmiRouter(api, NS, spec()).read()


async def test_weights_that_do_not_sum_to_100_are_refused(api: client.ApiClient) -> None:
    await splits(api).create(split())
    with pytest.raises(RouterError, match="must sum to 100"):
        await SmiRouter(api, NS, spec()).write(Weights(stable=-10, canary=110))


async def test_backends_reordered_between_read_and_write_fail_the_patch(
    api: client.ApiClient,
) -> None:
    objs = splits(api)
    body = await objs.create(split())
    backends = body["spec"]["backends"]
    swapped = [backends[CANARY], backends[MIRROR], backends[STABLE]]
    router = SmiRouter(api, NS, spec())
    patch = router.custom.patch_namespaced_custom_object

    async def racing(*args: Any, **kwargs: Any) -> Any:
        # Another client reorders the backends after the router read them.
        await objs.json_patch(SPLIT, [{"op": "replace", "path": "/spec/backends",
                                       "value": swapped}])
        return await patch(*args, **kwargs)

    router.custom.patch_namespaced_custom_object = racing
    with pytest.raises(ApiException) as err:
        await router.write(Weights(stable=30, canary=70))
    assert err.value.status == 422
    assert (await objs.get(SPLIT))["spec"]["backends"] == swapped
    retry = SmiRouter(api, NS, spec())
    assert await retry.write(Weights(stable=30, canary=70)) == Weights(stable=30, canary=70)
    assert (await objs.get(SPLIT))["spec"]["backends"] == [
        {"service": "podinfo-canary", "weight": 70},
        {"service": "podinfo-mirror", "weight": 0},
        {"service": "podinfo-stable", "weight": 30},
    ]
