"""Istio VirtualService router.

Weights are changed with a JSON Patch that first `test`s that each index still holds the
destination it held when read, then replaces only the two `weight` fields: every other
route, destination and field stays exactly as it was, and a concurrent reshuffle of the
route list makes the patch fail (422) instead of landing on the wrong entry.
"""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client

from canaryd.adapters.kube import TIMEOUT
from canaryd.adapters.routers.base import JSON_PATCH, RouterError, call, read_back, weight_op
from canaryd.core.model import Weights
from canaryd.core.routerspec import Destination
from canaryd.core.routerspec import IstioRouter as IstioSpec

GROUP, VERSION, PLURAL = "networking.istio.io", "v1beta1", "virtualservices"


def _matches(dest: dict[str, Any], want: Destination) -> bool:
    if dest.get("host") != want.host:
        return False
    if want.subset is not None and dest.get("subset") != want.subset:
        return False
    return want.port is None or (dest.get("port") or {}).get("number") == want.port


class IstioRouter:
    def __init__(self, api: client.ApiClient, namespace: str, spec: IstioSpec) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.spec = spec
        self.name = f"virtualservice {namespace}/{spec.virtual_service}"

    async def _get(self) -> dict[str, Any]:
        obj: dict[str, Any] = await call(
            "get", self.name,
            lambda: self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.spec.virtual_service,
                _request_timeout=TIMEOUT,
            ),
        )
        return obj

    def _locate(self, obj: dict[str, Any]) -> tuple[int, int, int, list[dict[str, Any]]]:
        """Indexes of (http route, stable entry, canary entry) and the route's entries."""
        routes = (obj.get("spec") or {}).get("http") or []
        if not routes:
            raise RouterError(f"{self.name} has no http routes")
        if self.spec.route is None:
            index = 0
        else:
            names = [r.get("name") for r in routes]
            if self.spec.route not in names:
                raise RouterError(f"{self.name} has no http route named {self.spec.route!r}")
            index = names.index(self.spec.route)
        entries: list[dict[str, Any]] = routes[index].get("route") or []
        found: dict[str, int] = {}
        for role, want in (("stable", self.spec.stable), ("canary", self.spec.canary)):
            hits = [i for i, e in enumerate(entries) if _matches(e.get("destination") or {}, want)]
            if not hits:
                where = want.host + (f" subset {want.subset}" if want.subset else "")
                raise RouterError(f"{self.name}: {role} destination {where} is not in the route")
            found[role] = hits[0]
        others = [
            e for i, e in enumerate(entries)
            if i not in found.values() and int(e.get("weight") or 0) > 0
        ]
        if others:
            raise RouterError(
                f"{self.name}: the managed route sends traffic to destinations canaryd does "
                "not manage; refusing to split it"
            )
        return index, found["stable"], found["canary"], entries

    @staticmethod
    def _weights(entries: list[dict[str, Any]], stable: int, canary: int) -> Weights:
        if len(entries) == 1:
            return Weights(stable=100, canary=0) if stable == 0 else Weights(stable=0, canary=100)
        return Weights(
            stable=int(entries[stable].get("weight") or 0),
            canary=int(entries[canary].get("weight") or 0),
        )

    async def read(self) -> Weights:
        obj = await self._get()
        _, s, c, entries = self._locate(obj)
        return self._weights(entries, s, c)

    async def write(self, weights: Weights) -> Weights:
        obj = await self._get()
        route, s, c, entries = self._locate(obj)
        if self._weights(entries, s, c) == weights:
            return weights
        ops: list[dict[str, Any]] = []
        for index, weight in ((s, weights.stable), (c, weights.canary)):
            base = f"/spec/http/{route}/route/{index}"
            ops.append({"op": "test", "path": f"{base}/destination",
                        "value": entries[index]["destination"]})
            ops.append(weight_op(entries[index], f"{base}/weight", weight))
        await call(
            "patch", self.name,
            lambda: self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.spec.virtual_service, ops,
                _content_type=JSON_PATCH, _request_timeout=TIMEOUT,
            ),
        )
        return await read_back(self, self.name, weights)
