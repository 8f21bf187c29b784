"""Builders for the plain API objects the mesh reads (as the API server serves them)."""

from __future__ import annotations

from typing import Any

NS = "shop"


def service(
    name: str,
    selector: dict[str, str] | None,
    *,
    rps: float | None = None,
    ns: str = NS,
    port: int = 80,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if rps is not None:
        meta["annotations"] = {"sandbox.canaryd.io/rps": str(rps)}
    spec: dict[str, Any] = {"ports": [{"port": port}]}
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def deployment(
    name: str,
    labels: dict[str, str],
    *,
    available: int = 1,
    ns: str = NS,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
        "spec": {
            "replicas": max(available, 1),
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]},
            },
        },
        "status": {"availableReplicas": available},
    }


def virtual_service(
    name: str, hosts: list[str], http: list[dict[str, Any]], *, ns: str = NS
) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"hosts": hosts, "http": http},
    }


def destination_rule(
    name: str, host: str, subsets: dict[str, dict[str, str]], *, ns: str = NS
) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "host": host,
            "subsets": [{"name": k, "labels": v} for k, v in subsets.items()],
        },
    }


def http_route(
    name: str,
    parent: str,
    rules: list[dict[str, Any]],
    *,
    ns: str = NS,
    group: str = "gateway.networking.k8s.io",
) -> dict[str, Any]:
    return {
        "apiVersion": f"{group}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "parentRefs": [{"group": "core", "kind": "Service", "name": parent, "port": 80}],
            "rules": rules,
        },
    }


def traffic_split(
    name: str, root: str, backends: dict[str, int], *, ns: str = NS
) -> dict[str, Any]:
    return {
        "apiVersion": "split.smi-spec.io/v1alpha2",
        "kind": "TrafficSplit",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "service": root,
            "backends": [{"service": s, "weight": w} for s, w in backends.items()],
        },
    }
