"""Traffic routers: one module per kind, all behind the `Router` protocol, built by `make_router`.

A router moves traffic between the stable and canary destinations of one rollout, touching
only the entries canaryd manages, and reads back what it wrote.
"""

from __future__ import annotations

from typing import Protocol

from kubernetes_asyncio import client

from canaryd.core.model import RolloutSpec, Weights


class RouterError(Exception):
    """The routing object is missing, or does not hold the destinations the rollout names."""


class Router(Protocol):
    async def read(self) -> Weights:
        """Current weights of the managed destinations; RouterError if they are not there."""
        ...

    async def write(self, weights: Weights) -> Weights:
        """Set the weights with a precise patch, read them back, return what was read."""
        ...


def make_router(api: client.ApiClient, namespace: str, spec: RolloutSpec) -> Router:
    if spec.router.istio is not None:
        from canaryd.adapters.routers.istio import IstioRouter

        return IstioRouter(api, namespace, spec.router.istio)
    raise RouterError("spec.router: no supported router kind set (supported: istio)")
