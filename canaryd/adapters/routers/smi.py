"""SMI TrafficSplit router (split.smi-spec.io), backends named by Service.

The split is read and written at v1alpha2, the version the TrafficSplit CRD stores (see
canaryd/data/crds/smi-trafficsplit.yaml); v1alpha3 and v1alpha4 only add `matches`, which
canaryd leaves alone. Weights are written as integers summing to 100 with a JSON Patch that
first `test`s that each index still holds the backend it held when read, so a concurrent
reshuffle of `spec.backends` makes the patch fail (422) instead of landing on the wrong
entry; nothing but the two weights is sent.

SMI weights are relative: `read` reports the two managed weights as percentages of their
sum (0/0 when both are 0). A backend canaryd does not manage that still receives traffic
makes the split unsafe to change: RouterError, as is a missing split or backend.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kubernetes_asyncio import client

from canaryd.adapters.kube import TIMEOUT
from canaryd.adapters.routers.base import (
    JSON_PATCH,
    RouterError,
    call,
    read_back,
    shares,
    weight_op,
)
from canaryd.core.model import Weights
from canaryd.core.routerspec import SmiRouter as SmiSpec

GROUP, VERSION, PLURAL = "split.smi-spec.io", "v1alpha2", "trafficsplits"
T = TypeVar("T")


def _weight(backend: dict[str, Any]) -> int:
    value = backend.get("weight")
    return max(0, value) if isinstance(value, int) else 0


class SmiRouter:
    def __init__(self, api: client.ApiClient, namespace: str, spec: SmiSpec) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.spec = spec
        self.name = f"trafficsplit {namespace}/{spec.traffic_split}"

    async def _call(self, verb: str, fn: Callable[[], Awaitable[T]]) -> T:
        return await call(verb, self.name, fn, served=f"{GROUP}/{VERSION} {PLURAL}")

    async def _get(self) -> dict[str, Any]:
        obj: dict[str, Any] = await self._call(
            "get",
            lambda: self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.spec.traffic_split,
                _request_timeout=TIMEOUT,
            ),
        )
        return obj

    def _locate(self, obj: dict[str, Any]) -> tuple[int, int, list[dict[str, Any]]]:
        """Indexes of the stable and canary backends, and the backends as read."""
        backends: list[dict[str, Any]] = (obj.get("spec") or {}).get("backends") or []
        present = ", ".join(str(b.get("service")) for b in backends) or "none"
        found: dict[str, int] = {}
        for role, service in (("stable", self.spec.stable), ("canary", self.spec.canary)):
            hits = [i for i, b in enumerate(backends) if b.get("service") == service]
            if not hits:
                raise RouterError(
                    f"{self.name}: {role} backend {service} is not in spec.backends "
                    f"(it has: {present})"
                )
            if len(hits) > 1:
                raise RouterError(
                    f"{self.name}: {role} backend {service} is listed {len(hits)} times"
                )
            found[role] = hits[0]
        others = [
            str(b.get("service")) for i, b in enumerate(backends)
            if i not in found.values() and _weight(b) > 0
        ]
        if others:
            raise RouterError(
                f"{self.name} also sends traffic to {', '.join(others)}, which canaryd does "
                "not manage; refusing to split it"
            )
        return found["stable"], found["canary"], backends

    async def read(self) -> Weights:
        s, c, backends = self._locate(await self._get())
        return shares(_weight(backends[s]), _weight(backends[c]))

    async def write(self, weights: Weights) -> Weights:
        if min(weights.stable, weights.canary) < 0 or weights.stable + weights.canary != 100:
            raise RouterError(f"{self.name}: refusing weights {weights}: they must sum to 100")
        s, c, backends = self._locate(await self._get())
        if shares(_weight(backends[s]), _weight(backends[c])) == weights:
            return weights
        ops: list[dict[str, Any]] = []
        for index, weight in ((s, weights.stable), (c, weights.canary)):
            path = f"/spec/backends/{index}"
            ops.append({"op": "test", "path": f"{path}/service",
                        "value": backends[index]["service"]})
            ops.append(weight_op(backends[index], f"{path}/weight", weight))
        await self._call(
            "patch",
            lambda: self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.spec.traffic_split, ops,
                _content_type=JSON_PATCH, _request_timeout=TIMEOUT,
            ),
        )
        return await read_back(self, self.name, weights)
