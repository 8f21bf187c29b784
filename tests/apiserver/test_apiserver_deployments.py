"""The Deployment controller: status follows spec after the configured delay."""

from __future__ import annotations

import asyncio
from typing import Any

from apiserver_helpers import deployment
from kubernetes_asyncio import client, watch


async def until_observed(apps: client.AppsV1Api, name: str, rv: str,
                         pred: Any) -> Any:
    """Watch until `pred(deployment)` holds; never sleeps on a hope."""
    async with asyncio.timeout(5):
        async with watch.Watch().stream(apps.list_namespaced_deployment, "default",
                                        field_selector=f"metadata.name={name}",
                                        resource_version=rv) as stream:
            async for event in stream:
                if pred(event["object"]):
                    return event["object"]
    raise AssertionError("stream ended")


def settled(d: Any) -> bool:
    return bool(d.status.observed_generation and
                d.status.observed_generation >= d.metadata.generation)


async def test_status_follows_spec(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    created = await apps.create_namespaced_deployment("default", deployment("web", 3))
    assert not created.status.ready_replicas
    d = await until_observed(apps, "web", "0", settled)
    assert (d.status.replicas, d.status.ready_replicas, d.status.available_replicas,
            d.status.updated_replicas) == (3, 3, 3, 3)
    conds = {c.type: (c.status, c.reason) for c in d.status.conditions}
    assert conds == {"Available": ("True", "MinimumReplicasAvailable"),
                     "Progressing": ("True", "NewReplicaSetAvailable")}
    scaled = await apps.patch_namespaced_deployment_scale("web", "default",
                                                          {"spec": {"replicas": 5}})
    assert scaled.spec.replicas == 5
    d = await until_observed(apps, "web", d.metadata.resource_version,
                             lambda x: settled(x) and x.status.ready_replicas == 5)
    scale = await apps.read_namespaced_deployment_scale("web", "default")
    assert scale.status.replicas == 5 and scale.status.selector == "app=web"


async def test_unavailable_annotation_keeps_it_unavailable(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    await apps.create_namespaced_deployment(
        "default", deployment("bad", 2, **{"sandbox.canaryd.io/unavailable": "true"}))
    d = await until_observed(apps, "bad", "0", settled)
    assert not d.status.available_replicas and d.status.unavailable_replicas == 2
    available = next(c for c in d.status.conditions if c.type == "Available")
    assert (available.status, available.reason) == ("False", "MinimumReplicasUnavailable")


async def test_status_subresource_write(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    await apps.create_namespaced_deployment("default", deployment("web", 1))
    d = await apps.patch_namespaced_deployment_status(
        "web", "default", {"status": {"observedGeneration": 9}, "spec": {"replicas": 9}})
    assert d.status.observed_generation == 9 and d.spec.replicas == 1
