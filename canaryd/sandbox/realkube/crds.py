"""CRDs for a real control plane: upstream's where a Go module ships them, canaryd's otherwise;
and removing a namespace (the sandbox's example app) the way a real server does it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd.sandbox.realkube.binaries import Binaries, find_binaries

# Upstream CRD -> the project's copy it stands in for (deploy/crds/, canaryd/data/crds/).
UPSTREAM = {
    "virtualservices.networking.istio.io": ("istio.yaml", "istio-virtualservice.yaml"),
    "destinationrules.networking.istio.io": ("istio.yaml", "istio-destinationrule.yaml"),
    "httproutes.gateway.networking.k8s.io": (
        "gateway-httproutes.yaml", "gateway-httproute.yaml"),
}  # fmt: skip


def upstream_crd(name: str, binaries: Binaries | None = None) -> dict[str, Any]:
    """One CRD document from the upstream files the build fetched."""
    found = binaries or find_binaries()
    source = found.upstream_crds / UPSTREAM[name][0]
    for doc in yaml.safe_load_all(source.read_text()):
        if isinstance(doc, dict) and doc.get("metadata", {}).get("name") == name:
            return doc
    raise LookupError(f"{name} is not in {source}")


def upstream_crd_paths(binaries: Binaries | None = None) -> list[Path]:
    """Each upstream CRD as a file of its own (written once, next to the upstream files)."""
    found = binaries or find_binaries()
    out = found.upstream_crds / "split"
    out.mkdir(exist_ok=True)
    paths = []
    for name in UPSTREAM:
        path = out / f"{name}.yaml"
        if not path.is_file():
            tmp = path.with_suffix(".tmp")
            tmp.write_text(yaml.safe_dump(upstream_crd(name, found), sort_keys=False))
            tmp.replace(path)
        paths.append(path)
    return paths


def sandbox_crd_paths(shipped: list[Path], binaries: Binaries | None = None) -> list[Path]:
    """What the sandbox installs into a real server: upstream Istio and Gateway API CRDs,
    and of canaryd's `shipped` copies the others (Rollout, Linkerd HTTPRoute, SMI
    TrafficSplit)."""
    replaced = {copy for _, copy in UPSTREAM.values()}
    own = [p for p in shipped if p.name not in replaced]
    return upstream_crd_paths(binaries) + own


async def release_leases(api: client.ApiClient, namespace: str = "default") -> None:
    """Delete the Leases a previous sandbox user left (a SIGKILLed daemon's would otherwise
    hold leadership for its whole duration)."""
    await client.CoordinationV1Api(api).delete_collection_namespaced_lease(namespace)


async def reset_namespace(
    api: client.ApiClient,
    name: str,
    timeout: float = 120,  # noqa: ASYNC109 (the namespace controller's pace, not ours)
) -> None:
    """Delete the namespace if it exists and wait until it is gone (its objects with it)."""
    core = client.CoreV1Api(api)
    try:
        await core.delete_namespace(name, propagation_policy="Background", grace_period_seconds=0)
    except ApiException as exc:
        if exc.status == 404:
            return
        raise
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await core.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"namespace {name} still terminating after {timeout}s")
        await asyncio.sleep(0.25)


async def wait_default_service_account(
    api: client.ApiClient,
    namespace: str,
    timeout: float = 60,  # noqa: ASYNC109 (the service account controller's pace)
) -> None:
    """Until the namespace's "default" ServiceAccount exists: until then the ServiceAccount
    admission plugin refuses every Pod there, and the ReplicaSet controller's retries back
    off exponentially (a Deployment applied too early can sit unavailable for minutes)."""
    core = client.CoreV1Api(api)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await core.read_namespaced_service_account("default", namespace)
            return
        except ApiException as exc:
            if exc.status != 404:
                raise
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"no default ServiceAccount in {namespace} after {timeout}s")
        await asyncio.sleep(0.1)


async def wait_deployments_available(
    api: client.ApiClient,
    namespace: str,
    timeout: float = 120,  # noqa: ASYNC109 (the scheduler's and kwok's pace)
) -> None:
    """Until every Deployment in the namespace with replicas has them all available."""
    apps = client.AppsV1Api(api)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        listed = await apps.list_namespaced_deployment(namespace)
        waiting = [
            d.metadata.name for d in listed.items
            if (d.spec.replicas or 0) > 0
            and ((d.status.available_replicas or 0) < d.spec.replicas
                 or (d.status.observed_generation or 0) < d.metadata.generation)
        ]
        if not waiting:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"Deployments not available after {timeout}s: {waiting}")
        await asyncio.sleep(0.25)
