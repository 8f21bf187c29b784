"""End to end, for the Gateway API router: the sandbox's HTTPRoute (GAMMA style, parent the
Service podinfo-gw), real Prometheus, canaryd in-process, Linkerd metrics for the analysis."""

from __future__ import annotations

import pytest

from canaryd.sandbox.realkube import RealKube
from tests.routers import scenarios
from tests.routers.support import NS, Harness, example_rollout, running_canaryd

pytestmark = pytest.mark.prometheus
# Judged by the embedded emulator and by the real control plane (tests/realkube.py).
KUBE_BACKENDS = ("emulator", "real")
APEX = "podinfo-gw"


def routed(h: Harness) -> scenarios.Weights:
    async def weights() -> dict[str, int]:
        obj = await h.custom.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", NS, "httproutes", APEX
        )
        [rule] = obj["spec"]["rules"]
        return {ref["name"]: ref["weight"] for ref in rule["backendRefs"]}

    return weights


async def test_healthy_canary_is_promoted_through_the_httproute(
    prometheus: str, kube_backend: RealKube | None
) -> None:
    async with running_canaryd(kube_backend) as h:
        await scenarios.healthy_canary_is_promoted(
            h, example_rollout("gateway-api.yaml"), apex=APEX, routed=routed(h)
        )


async def test_faulty_canary_is_rolled_back_off_the_httproute(
    prometheus: str, kube_backend: RealKube | None
) -> None:
    async with running_canaryd(kube_backend) as h:
        await scenarios.faulty_canary_is_rolled_back(
            h, example_rollout("gateway-api.yaml"), apex=APEX, routed=routed(h)
        )
