"""What every router shares: the `Router` protocol, `RouterError`, the one way to call the
API for a routing object (a missing object is a RouterError, every other failure a
classified KubeError), the weight patch op and the read-back check every write ends with."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from canaryd.adapters.errors import NotFound
from canaryd.adapters.retry import kube_call
from canaryd.core.model import Weights

T = TypeVar("T")
JSON_PATCH = "application/json-patch+json"


class RouterError(Exception):
    """The routing object is missing, or does not hold the destinations the rollout names."""


class Router(Protocol):
    async def read(self) -> Weights:
        """Current weights of the managed destinations; RouterError if they are not there."""
        ...

    async def write(self, weights: Weights) -> Weights:
        """Set the weights with a precise patch, read them back, return what was read."""
        ...


async def call(
    verb: str, name: str, fn: Callable[[], Awaitable[T]], *, served: str | None = None
) -> T:
    """`fn` through kube_call as "`verb` `name`"; NotFound becomes RouterError. `served`
    (e.g. "split.smi-spec.io/v1alpha2 trafficsplits") tells a missing object from a resource
    type the API server does not serve at all (its CRD not installed)."""
    try:
        return await kube_call(f"{verb} {name}", fn)
    except NotFound as exc:
        if served is not None and exc.resource_missing:
            raise RouterError(f"{name} not found: the API server does not serve {served} "
                              "(is the CRD installed?)") from None
        raise RouterError(f"{name} not found") from None


def weight_op(entry: dict[str, Any], path: str, weight: int) -> dict[str, Any]:
    """The JSON Patch op that sets `entry`'s weight at `path` (add it where it was implied)."""
    return {"op": "replace" if "weight" in entry else "add", "path": path, "value": weight}


def shares(stable: int, canary: int) -> Weights:
    """Relative weights as integer percentages summing to 100 (0/0 when both are 0)."""
    total = stable + canary
    if total <= 0:
        return Weights(stable=0, canary=0)
    percent = (200 * stable + total) // (2 * total)  # rounded half up, in integers
    return Weights(stable=percent, canary=100 - percent)


async def read_back(router: Router, name: str, weights: Weights) -> Weights:
    """Every write ends here: read the routing object again and insist on what was written."""
    seen = await router.read()
    if seen != weights:
        raise RouterError(f"{name}: wrote {weights} but read back {seen}")
    return seen
