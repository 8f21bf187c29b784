"""Traffic routers: one module per kind, all behind the `Router` protocol, built by `make_router`.

A router moves traffic between the stable and canary destinations of one rollout, touching
only the entries canaryd manages, and reads back what it wrote.
"""

from __future__ import annotations

from kubernetes_asyncio import client

from canaryd.adapters.routers.base import Router, RouterError, read_back, weight_op
from canaryd.core.model import RolloutSpec
from canaryd.core.routerspec import ROUTER_KINDS

__all__ = ["Router", "RouterError", "make_router", "read_back", "weight_op"]


def make_router(api: client.ApiClient, namespace: str, spec: RolloutSpec) -> Router:
    """The router for the one kind set in `spec.router`; RouterError for a kind without one."""
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
