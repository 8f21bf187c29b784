"""x-kubernetes-validations (CEL) rules judge custom resources on both servers alike."""

from __future__ import annotations

import json
from typing import Any

import pytest
from apiserver_helpers import RULED_CRD, ensure_crd
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

KUBE_BACKENDS = ("emulator", "real")
G, V, P = "example.com", "v1", "ruleds"
MERGE = "application/merge-patch+json"
BLOCKED = ("<nil>: Invalid value: null: some validation rules were not checked because the "
           "object was invalid; correct the existing errors to complete validation")


def ruled(obj_name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Ruled", "metadata": {"name": obj_name},
            "spec": {"name": "abc", **spec}}


@pytest.fixture
async def objects(api: client.ApiClient) -> client.CustomObjectsApi:
    await ensure_crd(api, RULED_CRD)  # once per real control plane
    return client.CustomObjectsApi(api)


@pytest.mark.parametrize(("spec", "message"), [
    ({"name": "forbiddn"}, "spec: Invalid value: name must not be forbiddn"),
    ({"tags": {"toolong": "1"}}, "spec.tags: Invalid value: keys of at most 5 characters"),
    ({"name": "zzz"}, "spec.name: Invalid value: \"zzz\": failed rule: self != 'zzz'"),
    ({"size": 100}, "spec.size: Forbidden: size is too large"),
    ({"size": 1000}, "spec.size: Forbidden: size is far too large"),
    ({"size": "x"}, '[spec.size: Invalid value: "string": spec.size in body must be of type '
                    f'integer: "string", {BLOCKED}]'),
])
async def test_rules_refuse_a_create(objects: client.CustomObjectsApi, ns: str,
                                     spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ApiException) as err:
        await objects.create_namespaced_custom_object(G, V, ns, P, ruled("r", **spec))
    assert err.value.status == 422
    assert json.loads(err.value.body)["message"] == f'Ruled.example.com "r" is invalid: {message}'


async def test_transition_rule_judges_updates_only(objects: client.CustomObjectsApi,
                                                   ns: str) -> None:
    await objects.create_namespaced_custom_object(G, V, ns, P, ruled("r", mode="fast"))
    with pytest.raises(ApiException) as err:
        await objects.patch_namespaced_custom_object(G, V, ns, P, "r", {"spec": {"mode": "slow"}},
                                                     _content_type=MERGE)
    assert json.loads(err.value.body)["message"] == (
        'Ruled.example.com "r" is invalid: spec: Invalid value: mode is immutable')
    ok = await objects.patch_namespaced_custom_object(G, V, ns, P, "r", {"spec": {"size": 2}},
                                                      _content_type=MERGE)
    assert ok["spec"] == {"name": "abc", "mode": "fast", "size": 2}
