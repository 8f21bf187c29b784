"""The Gateway API router against the sandbox API server, for both HTTPRoute groups: it moves
exactly two weights, reads them back, leaves every other byte alone, and refuses (naming
what is missing) rather than guess."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd.adapters.routers import RouterError
from canaryd.adapters.routers.gateway import VERSIONS, GatewayApiRouter, shares, weight_of
from canaryd.core.model import Weights
from canaryd.core.routerspec import BackendRef
from canaryd.core.routerspec import GatewayApiRouter as Spec
from tests.routers.support import NS, Objects

GATEWAY, LINKERD = "gateway.networking.k8s.io", "policy.linkerd.io"
ROUTE = "podinfo-gw"
PRIMARY = 1  # index of the managed rule in route()
STABLE, MIRROR, CANARY = 0, 1, 2  # indexes of its backendRefs


def route(group: str = GATEWAY) -> dict[str, Any]:
    """An HTTPRoute with more than canaryd manages: a testers' rule ahead of the primary one,
    filters, a zero-weight mirror backend, timeouts, labels and annotations."""
    return {
        "apiVersion": f"{group}/{VERSIONS[group]}",
        "kind": "HTTPRoute",
        "metadata": {
            "name": ROUTE,
            "namespace": NS,
            "labels": {"app": "podinfo"},
            "annotations": {"owner": "team-shop"},
        },
        "spec": {
            "parentRefs": [{"group": "core", "kind": "Service", "name": ROUTE, "port": 9898}],
            "rules": [
                {
                    "name": "testers",
                    "matches": [{"headers": [{"name": "x-canary", "value": "always"}]}],
                    "backendRefs": [{"name": "podinfo-canary", "port": 9898}],
                },
                {
                    "name": "primary",
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "filters": [{
                        "type": "RequestHeaderModifier",
                        "requestHeaderModifier": {"set": [{"name": "x-route", "value": "p"}]},
                    }],
                    "backendRefs": [
                        {"name": "podinfo-stable", "port": 9898, "weight": 100},
                        {"name": "podinfo-mirror", "port": 9898, "weight": 0},
                        {"name": "podinfo-canary", "port": 9898, "weight": 0},
                    ],
                    "timeouts": {"request": "10s"},
                },
            ],
        },
    }


def spec(group: str = GATEWAY, **changes: Any) -> Spec:
    fields: dict[str, Any] = {
        "http_route": ROUTE,
        "api_group": group,
        "rule_name": "primary",
        "stable": BackendRef(name="podinfo-stable", port=9898),
        "canary": BackendRef(name="podinfo-canary", port=9898),
        **changes,
    }
    return Spec(**fields)


def routes(api: client.ApiClient, group: str = GATEWAY) -> Objects:
    return Objects(api, group, VERSIONS[group], "httproutes")


def weights_path(index: int, rule: int = PRIMARY) -> str:
    return f"/spec/rules/{rule}/backendRefs/{index}/weight"


@pytest.mark.parametrize("group", [GATEWAY, LINKERD])
async def test_write_changes_only_the_two_managed_weights(
    api: client.ApiClient, group: str
) -> None:
    objs = routes(api, group)
    await objs.create(route(group))
    # A mesh reports on the route through its status: canaryd must leave that alone too.
    status = {"parents": [{
        "parentRef": {"group": "core", "kind": "Service", "name": ROUTE},
        "controllerName": "linkerd.io/policy-controller",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                        "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    }]}
    before = await objs.set_status(ROUTE, status)
    router = GatewayApiRouter(api, NS, spec(group))

    assert await router.read() == Weights(stable=100, canary=0)
    assert await router.write(Weights(stable=70, canary=30)) == Weights(stable=70, canary=30)
    assert await router.read() == Weights(stable=70, canary=30)

    after = await objs.get(ROUTE)
    expected = copy.deepcopy(before)
    expected["spec"]["rules"][PRIMARY]["backendRefs"][STABLE]["weight"] = 70
    expected["spec"]["rules"][PRIMARY]["backendRefs"][CANARY]["weight"] = 30
    assert json.dumps(after["spec"]) == json.dumps(expected["spec"])
    assert after["status"] == before["status"]
    for key in ("labels", "annotations", "uid", "creationTimestamp"):
        assert after["metadata"][key] == before["metadata"][key]
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1


async def test_the_rule_is_chosen_by_index_name_or_default_to_the_first(
    api: client.ApiClient,
) -> None:
    await routes(api).create(route())
    by_index = GatewayApiRouter(api, NS, spec(rule_name=None, rule=PRIMARY))
    assert await by_index.write(Weights(stable=90, canary=10)) == Weights(stable=90, canary=10)
    assert await GatewayApiRouter(api, NS, spec()).read() == Weights(stable=90, canary=10)
    # The first rule is the testers' one, which has no stable backend: named in the refusal.
    first = GatewayApiRouter(api, NS, spec(rule_name=None))
    with pytest.raises(RouterError) as err:
        await first.read()
    assert str(err.value) == (
        f"httproute.{GATEWAY} {NS}/{ROUTE} rule 0: stable backendRef podinfo-stable:9898 is "
        "not in its backendRefs (it has: podinfo-canary:9898)"
    )


async def test_relative_weights_read_as_percentages(api: client.ApiClient) -> None:
    objs = routes(api)
    await objs.create(route())
    router = GatewayApiRouter(api, NS, spec())
    for stable, canary, expected in ((1, 1, (50, 50)), (1, 3, (25, 75)), (2, 1, (67, 33)),
                                     (5, 0, (100, 0)), (0, 0, (0, 0))):
        await objs.json_patch(ROUTE, [
            {"op": "replace", "path": weights_path(STABLE), "value": stable},
            {"op": "replace", "path": weights_path(CANARY), "value": canary},
        ])
        assert await router.read() == Weights(stable=expected[0], canary=expected[1])


def test_an_absent_weight_counts_as_one() -> None:
    assert weight_of({"name": "a"}) == 1
    assert weight_of({"name": "a", "weight": 0}) == 0
    assert shares(weight_of({}), weight_of({})) == Weights(stable=50, canary=50)


async def test_writing_the_weights_already_in_force_changes_nothing(
    api: client.ApiClient,
) -> None:
    objs = routes(api)
    await objs.create(route())
    # 1/0 already sends everything to stable: 100/0 is in force, nothing to write.
    before = await objs.json_patch(ROUTE, [
        {"op": "replace", "path": weights_path(STABLE), "value": 1},
    ])
    router = GatewayApiRouter(api, NS, spec())
    assert await router.write(Weights(stable=100, canary=0)) == Weights(stable=100, canary=0)
    after = await objs.get(ROUTE)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


async def test_weights_that_do_not_sum_to_100_are_refused(api: client.ApiClient) -> None:
    await routes(api).create(route())
    with pytest.raises(RouterError, match="must sum to 100"):
        await GatewayApiRouter(api, NS, spec()).write(Weights(stable=60, canary=60))


async def test_a_missing_route_is_named(api: client.ApiClient) -> None:
    for group in (GATEWAY, LINKERD):
        router = GatewayApiRouter(api, NS, spec(group, http_route="nope"))
        with pytest.raises(RouterError) as err:
            await router.read()
        assert str(err.value) == f"httproute.{group} {NS}/nope not found"
        with pytest.raises(RouterError, match="not found"):
            await router.write(Weights(stable=50, canary=50))


async def test_an_api_the_server_does_not_serve_is_named(bare_api: client.ApiClient) -> None:
    router = GatewayApiRouter(bare_api, NS, spec(LINKERD))
    with pytest.raises(RouterError) as err:
        await router.read()
    assert str(err.value) == (
        f"httproute.{LINKERD} {NS}/{ROUTE} not found: the API server does not serve "
        f"{LINKERD}/v1beta3 httproutes (is the CRD installed?)"
    )


async def test_a_missing_rule_is_named(api: client.ApiClient) -> None:
    await routes(api).create(route())
    with pytest.raises(RouterError, match=r"demo/podinfo-gw has no rule named 'canary'$"):
        await GatewayApiRouter(api, NS, spec(rule_name="canary")).read()
    with pytest.raises(RouterError, match=r"demo/podinfo-gw has no rule 5 \(it has 2\)$"):
        await GatewayApiRouter(api, NS, spec(rule_name=None, rule=5)).read()


async def test_a_missing_backend_is_named_and_nothing_is_written(api: client.ApiClient) -> None:
    objs = routes(api)
    before = await objs.create(route())
    wrong_port = GatewayApiRouter(api, NS, spec(canary=BackendRef(name="podinfo-canary",
                                                                  port=8080)))
    with pytest.raises(RouterError) as err:
        await wrong_port.write(Weights(stable=90, canary=10))
    assert str(err.value) == (
        f"httproute.{GATEWAY} {NS}/{ROUTE} rule 'primary': canary backendRef "
        "podinfo-canary:8080 is not in its backendRefs (it has: podinfo-stable:9898, "
        "podinfo-mirror:9898, podinfo-canary:9898)"
    )
    wrong_name = GatewayApiRouter(api, NS, spec(stable=BackendRef(name="podinfo-v1")))
    with pytest.raises(RouterError, match="stable backendRef podinfo-v1 is not in"):
        await wrong_name.read()
    after = await objs.get(ROUTE)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


async def test_backends_in_other_namespaces_or_of_other_kinds_do_not_match(
    api: client.ApiClient,
) -> None:
    body = route()
    refs = body["spec"]["rules"][PRIMARY]["backendRefs"]
    refs[CANARY]["namespace"] = "elsewhere"
    await routes(api).create(body)
    with pytest.raises(RouterError, match="canary backendRef podinfo-canary:9898 is not in"):
        await GatewayApiRouter(api, NS, spec()).read()


async def test_a_rule_that_also_feeds_an_unmanaged_backend_is_refused(
    api: client.ApiClient,
) -> None:
    objs = routes(api)
    await objs.create(route())
    before = await objs.json_patch(ROUTE, [
        {"op": "replace", "path": weights_path(MIRROR), "value": 5},
    ])
    with pytest.raises(RouterError) as err:
        await GatewayApiRouter(api, NS, spec()).write(Weights(stable=50, canary=50))
    assert str(err.value) == (
        f"httproute.{GATEWAY} {NS}/{ROUTE} rule 'primary' also sends traffic to "
        "podinfo-mirror:9898, which canaryd does not manage; refusing to split it"
    )
    after = await objs.get(ROUTE)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


async def test_a_backend_listed_twice_needs_its_port(api: client.ApiClient) -> None:
    body = route()
    body["spec"]["rules"][PRIMARY]["backendRefs"].append(
        {"name": "podinfo-canary", "port": 9899, "weight": 0}
    )
    await routes(api).create(body)
    portless = GatewayApiRouter(api, NS, spec(canary=BackendRef(name="podinfo-canary")))
    with pytest.raises(RouterError, match="canary backendRef podinfo-canary matches 2 "):
        await portless.read()
    assert await GatewayApiRouter(api, NS, spec()).read() == Weights(stable=100, canary=0)


def race(router: GatewayApiRouter, other: Objects, ops: list[dict[str, Any]]) -> None:
    """Make another client apply `ops` after the router has read the route, before its
    patch reaches the server."""
    patch = router.custom.patch_namespaced_custom_object

    async def racing(*args: Any, **kwargs: Any) -> Any:
        await other.json_patch(ROUTE, ops)
        return await patch(*args, **kwargs)

    router.custom.patch_namespaced_custom_object = racing


async def test_backendrefs_reordered_between_read_and_write_fail_the_patch(
    api: client.ApiClient,
) -> None:
    objs = routes(api)
    body = await objs.create(route())
    refs = body["spec"]["rules"][PRIMARY]["backendRefs"]
    swapped = [refs[CANARY], refs[MIRROR], refs[STABLE]]
    router = GatewayApiRouter(api, NS, spec())
    race(router, objs, [{"op": "replace", "path": f"/spec/rules/{PRIMARY}/backendRefs",
                         "value": swapped}])
    with pytest.raises(ApiException) as err:
        await router.write(Weights(stable=40, canary=60))
    assert err.value.status == 422
    # Nothing landed: the route is exactly as the other client left it (stable still 100).
    after = await objs.get(ROUTE)
    assert after["spec"]["rules"][PRIMARY]["backendRefs"] == swapped
    # The next attempt reads afresh and lands on the right entries.
    retry = GatewayApiRouter(api, NS, spec())
    assert await retry.write(Weights(stable=40, canary=60)) == Weights(stable=40, canary=60)
    refs = (await objs.get(ROUTE))["spec"]["rules"][PRIMARY]["backendRefs"]
    assert [(r["name"], r["weight"]) for r in refs] == [
        ("podinfo-canary", 60), ("podinfo-mirror", 0), ("podinfo-stable", 40)
    ]


async def test_a_rule_inserted_between_read_and_write_fails_the_patch(
    api: client.ApiClient,
) -> None:
    objs = routes(api)
    body = await objs.create(route())
    # A new rule with the same backendRefs in the same order: only the rule guard sees it.
    beta = copy.deepcopy(body["spec"]["rules"][PRIMARY])
    beta["name"] = "beta"
    beta["matches"] = [{"path": {"type": "PathPrefix", "value": "/beta"}}]
    router = GatewayApiRouter(api, NS, spec())
    race(router, objs, [{"op": "add", "path": f"/spec/rules/{PRIMARY}", "value": beta}])
    with pytest.raises(ApiException) as err:
        await router.write(Weights(stable=40, canary=60))
    assert err.value.status == 422
    rules = (await objs.get(ROUTE))["spec"]["rules"]
    assert [r["name"] for r in rules] == ["testers", "beta", "primary"]
    assert all(r["backendRefs"] == body["spec"]["rules"][PRIMARY]["backendRefs"]
               for r in rules[1:])
