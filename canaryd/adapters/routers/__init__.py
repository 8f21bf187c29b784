"""Traffic routers: one module per kind, all behind the `Router` protocol, built by `make_router`.

A router moves traffic between the stable and canary destinations of one rollout, touching
only the entries canaryd manages, and reads back what it wrote.
"""

from __future__ import annotations

from typing import Any, Protocol

from kubernetes_asyncio import client

from canaryd.core.model import ROUTER_KINDS, RolloutSpec, Weights


class RouterError(Exception):
    """The routing object is missing, or does not hold the destinations the rollout names."""


class Router(Protocol):
    async def read(self) -> Weights:
        """Current weights of the managed destinations; RouterError if they are not there."""
        ...

    async def write(self, weights: Weights) -> Weights:
        """Set the weights with a precise patch, read them back, return what was read."""
        ...


def weight_op(entry: dict[str, Any], path: str, weight: int) -> dict[str, Any]:
    """The JSON Patch op that sets `entry`'s weight at `path` (add it where it was implied)."""
    return {"op": "replace" if "weight" in entry else "add", "path": path, "value": weight}


async def read_back(router: Router, name: str, weights: Weights) -> Weights:
    """Every write ends here: read the routing object again and insist on what was written."""
    seen = await router.read()
    if seen != weights:
        raise RouterError(f"{name}: wrote {weights} but read back {seen}")
    return seen


def make_router(api: client.ApiClient, namespace: str, spec: RolloutSpec) -> Router:
    """The router for the one kind set in `spec.router`; RouterError for a kind without one."""
    # Imported here: each router module imports RouterError from this package.
    from canaryd.adapters.routers import gateway, istio, service, smi

    chosen = spec.router
    if chosen.istio is not None:
        return istio.IstioRouter(api, namespace, chosen.istio)
    if chosen.gateway_api is not None:
        return gateway.GatewayApiRouter(api, namespace, chosen.gateway_api)
    if chosen.smi is not None:
        return smi.SmiRouter(api, namespace, chosen.smi)
    if chosen.service is not None:
        return service.ServiceSelectorRouter(api, namespace, chosen.service)
    # Only reachable for a kind the model gained before a router was written for it.
    named = [
        field.alias or name
        for name, field in type(chosen).model_fields.items()
        if getattr(chosen, name) is not None
    ]
    raise RouterError(
        f"spec.router: no router for {', '.join(named) or 'an empty router'} "
        f"(supported: {', '.join(ROUTER_KINDS)})"
    )
