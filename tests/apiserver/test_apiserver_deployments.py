"""Deployments: status follows spec (the emulator's controller, or kube-controller-manager
with the scheduler and kwok's fake kubelets on the real control plane)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from apiserver_helpers import deployment
from kubernetes_asyncio import client, watch

from canaryd.sandbox.apiserver.controllers import UNAVAILABLE_ANNOTATION

KUBE_BACKENDS = ("emulator", "real")


async def until_observed(apps: client.AppsV1Api, ns: str, name: str, rv: str,
                         pred: Any) -> Any:
    """Watch until `pred(deployment)` holds; never sleeps on a hope."""
    async with asyncio.timeout(90):
        while True:  # a real server may end a watch early; resume where it stopped
            async with watch.Watch().stream(apps.list_namespaced_deployment, ns,
                                            field_selector=f"metadata.name={name}",
                                            resource_version=rv, timeout_seconds=60) as stream:
                async for event in stream:
                    rv = event["object"].metadata.resource_version
                    if pred(event["object"]):
                        return event["object"]


def complete(d: Any, replicas: int) -> bool:
    """The controller has seen the spec and every replica is updated and available."""
    s = d.status
    return bool(s.observed_generation and s.observed_generation >= d.metadata.generation
                and (s.replicas, s.updated_replicas, s.ready_replicas, s.available_replicas)
                == (replicas,) * 4)


async def test_status_follows_spec(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    created = await apps.create_namespaced_deployment(ns, deployment("web", 3))
    assert not created.status.ready_replicas
    d = await until_observed(apps, ns, "web", "0", lambda x: complete(x, 3))
    conds = {c.type: (c.status, c.reason) for c in d.status.conditions}
    assert conds == {"Available": ("True", "MinimumReplicasAvailable"),
                     "Progressing": ("True", "NewReplicaSetAvailable")}
    scaled = await apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 5}})
    assert scaled.spec.replicas == 5
    await until_observed(apps, ns, "web", d.metadata.resource_version, lambda x: complete(x, 5))
    scale = await apps.read_namespaced_deployment_scale("web", ns)
    assert scale.status.replicas == 5 and scale.status.selector == "app=web"


@pytest.mark.emulator_only  # an emulator knob; a real Deployment stays unavailable when its
# Pods never become ready (kwok makes every Pod ready)
async def test_unavailable_annotation_keeps_it_unavailable(api: client.ApiClient,
                                                           ns: str) -> None:
    apps = client.AppsV1Api(api)
    await apps.create_namespaced_deployment(
        ns, deployment("bad", 2, **{UNAVAILABLE_ANNOTATION: "true"}))

    def settled(d: Any) -> bool:
        return bool(d.status.observed_generation and
                    d.status.observed_generation >= d.metadata.generation)

    d = await until_observed(apps, ns, "bad", "0", settled)
    assert not d.status.available_replicas and d.status.unavailable_replicas == 2
    available = next(c for c in d.status.conditions if c.type == "Available")
    assert (available.status, available.reason) == ("False", "MinimumReplicasUnavailable")


async def test_status_subresource_write(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    await apps.create_namespaced_deployment(ns, deployment("web", 1))
    d = await apps.patch_namespaced_deployment_status(
        "web", ns, {"status": {"observedGeneration": 9}, "spec": {"replicas": 9}})
    assert d.status.observed_generation == 9 and d.spec.replicas == 1
