"""Blue-green router: switches a Service's selector between the blue and green values.

Weights are all-or-nothing here: 0 means the active Service selects blue, 100 green. The
preview Service, when there is one, always selects green so green can be checked before the
switch. Each change is a JSON Patch that `test`s the selector value it read, then replaces
only that one key: ports, annotations and other selector keys stay exactly as they were.
"""

from __future__ import annotations

from kubernetes_asyncio import client

from canaryd.adapters.errors import NotFound
from canaryd.adapters.kube import TIMEOUT
from canaryd.adapters.retry import kube_json
from canaryd.adapters.routers.base import JSON_PATCH, RouterError, call, read_back
from canaryd.core.model import Weights
from canaryd.core.routerspec import ServiceSelectorRouter as SelectorSpec


def _pointer(key: str) -> str:
    return "/spec/selector/" + key.replace("~", "~0").replace("/", "~1")


class ServiceSelectorRouter:
    def __init__(self, api: client.ApiClient, namespace: str, spec: SelectorSpec) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.spec = spec

    async def _selector(self, name: str) -> dict[str, str]:
        try:
            body = await kube_json(
                f"get service {self.namespace}/{name}",
                lambda: self.core.read_namespaced_service(
                    name, self.namespace, _request_timeout=TIMEOUT, _preload_content=False
                ),
            )
        except NotFound:
            raise RouterError(f"service {self.namespace}/{name} not found") from None
        selector: dict[str, str] = (body.get("spec") or {}).get("selector") or {}
        if self.spec.selector_key not in selector:
            raise RouterError(
                f"service {self.namespace}/{name} has no selector key {self.spec.selector_key!r}"
            )
        return selector

    def _weights(self, value: str, name: str) -> Weights:
        if value == self.spec.blue:
            return Weights(stable=100, canary=0)
        if value == self.spec.green:
            return Weights(stable=0, canary=100)
        raise RouterError(
            f"service {self.namespace}/{name} selects {self.spec.selector_key}={value!r}, "
            f"neither blue ({self.spec.blue}) nor green ({self.spec.green})"
        )

    async def read(self) -> Weights:
        if self.spec.preview_service is not None:
            await self._selector(self.spec.preview_service)
        active = await self._selector(self.spec.active_service)
        return self._weights(active[self.spec.selector_key], self.spec.active_service)

    async def _point(self, name: str, current: str, value: str) -> None:
        if current == value:
            return
        path = _pointer(self.spec.selector_key)
        ops = [{"op": "test", "path": path, "value": current},
               {"op": "replace", "path": path, "value": value}]
        await call(
            "patch", f"service {self.namespace}/{name}",
            lambda: self.core.patch_namespaced_service(
                name, self.namespace, ops, _content_type=JSON_PATCH, _request_timeout=TIMEOUT
            ),
        )

    async def write(self, weights: Weights) -> Weights:
        if weights.canary not in (0, 100):
            raise RouterError("blue-green switches all traffic at once: weight must be 0 or 100")
        key = self.spec.selector_key
        if self.spec.preview_service is not None:
            preview = await self._selector(self.spec.preview_service)
            await self._point(self.spec.preview_service, preview[key], self.spec.green)
        active = await self._selector(self.spec.active_service)
        target = self.spec.green if weights.canary == 100 else self.spec.blue
        await self._point(self.spec.active_service, active[key], target)
        name = f"service {self.namespace}/{self.spec.active_service}"
        return await read_back(self, name, weights)
