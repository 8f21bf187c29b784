"""Create the sandbox's example application (podinfo, stable + canary) through the kube API.

The objects live in `canaryd/data/example-app.yaml` so users can read and reuse them; this
module only applies that file. Applying is create-if-absent: running it twice, or against an
API server where a rollout already moved the weights, changes nothing that exists.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

NAMESPACE = "demo"
SERVICE = "podinfo"
RPS_ANNOTATION = "sandbox.canaryd.io/rps"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class _CustomKind:
    group: str
    version: str
    plural: str


# Custom kinds the example uses; anything else in the file must be a built-in kind below.
_CUSTOM_KINDS: dict[tuple[str, str], _CustomKind] = {
    ("networking.istio.io/v1", "VirtualService"): _CustomKind(
        "networking.istio.io", "v1", "virtualservices"
    ),
    ("networking.istio.io/v1", "DestinationRule"): _CustomKind(
        "networking.istio.io", "v1", "destinationrules"
    ),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): _CustomKind(
        "gateway.networking.k8s.io", "v1", "httproutes"
    ),
    ("split.smi-spec.io/v1alpha2", "TrafficSplit"): _CustomKind(
        "split.smi-spec.io", "v1alpha2", "trafficsplits"
    ),
}


def manifest_path() -> Path:
    """Where the example application's YAML is installed."""
    return Path(str(importlib.resources.files("canaryd").joinpath("data/example-app.yaml")))


def load_manifests(path: Path | None = None, *, rps: float | None = None) -> list[Manifest]:
    """The example's objects, in creation order; `rps` overrides the Service's traffic rate."""
    text = (path or manifest_path()).read_text()
    docs: list[Manifest] = [doc for doc in yaml.safe_load_all(text) if doc]
    if rps is not None:
        for doc in docs:
            if doc["kind"] == "Service" and doc["metadata"]["name"] == SERVICE:
                annotations = doc["metadata"].setdefault("annotations", {})
                annotations[RPS_ANNOTATION] = _format_rps(rps)
    return docs


def _format_rps(rps: float) -> str:
    # Annotations are strings; "50" rather than "50.0" keeps the file's own style.
    return str(int(rps)) if float(rps).is_integer() else str(rps)


async def create_if_absent(api: client.ApiClient, obj: Manifest) -> bool:
    """Create one object; False when it already exists (409 AlreadyExists is not an error)."""
    try:
        await _create(api, obj)
    except ApiException as exc:
        if exc.status == 409:
            return False
        raise
    return True


async def _create(api: client.ApiClient, obj: Manifest) -> None:
    kind = obj["kind"]
    namespace = obj["metadata"].get("namespace", NAMESPACE)
    custom = _CUSTOM_KINDS.get((obj["apiVersion"], kind))
    if custom is not None:
        await client.CustomObjectsApi(api).create_namespaced_custom_object(
            custom.group, custom.version, namespace, custom.plural, obj
        )
        return
    # The typed APIs are annotated with model classes but serialise plain dicts as they are,
    # which keeps the YAML the single source of the objects.
    core: Any = client.CoreV1Api(api)
    apps: Any = client.AppsV1Api(api)
    if kind == "Namespace":
        await core.create_namespace(obj)
    elif kind == "Service":
        await core.create_namespaced_service(namespace, obj)
    elif kind == "Deployment":
        await apps.create_namespaced_deployment(namespace, obj)
    else:
        raise ValueError(f"example-app.yaml: unsupported kind {obj['apiVersion']} {kind}")


async def apply_example_app(
    api: client.ApiClient,
    *,
    rps: float | None = None,
    manifests: Iterable[Manifest] | None = None,
    namespace_ready: Callable[[client.ApiClient, str], Awaitable[None]] | None = None,
) -> list[str]:
    """Create every missing example object; returns "Kind/name" for the ones created.
    `namespace_ready` is awaited after each Namespace (a real cluster refuses Pods until the
    namespace's default ServiceAccount exists, and the ReplicaSet controller then backs off)."""
    created: list[str] = []
    for obj in manifests if manifests is not None else load_manifests(rps=rps):
        if await create_if_absent(api, obj):
            created.append(f"{obj['kind']}/{obj['metadata']['name']}")
        if obj["kind"] == "Namespace" and namespace_ready is not None:
            await namespace_ready(api, obj["metadata"]["name"])
    return created
