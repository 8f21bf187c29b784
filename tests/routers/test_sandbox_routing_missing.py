"""A Rollout whose routing object is missing, or lacks the backends it names, fails before
canaryd touches anything, with a reason that names what is missing (canaryd in-process)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.routers.support import NS, example_rollout, running_canaryd

pytestmark = pytest.mark.prometheus


async def test_missing_routing_fails_the_rollout_before_anything_is_touched(
    prometheus: str,
) -> None:
    async with running_canaryd() as h:
        route = ("gateway.networking.k8s.io", "v1", NS, "httproutes", "podinfo-gw")
        split = ("split.smi-spec.io", "v1alpha2", NS, "trafficsplits", "podinfo-smi")
        before = [await h.custom.get_namespaced_custom_object(*ref) for ref in (route, split)]

        no_route = example_rollout("gateway-api.yaml")
        no_route["spec"]["router"]["gatewayApi"]["httpRoute"] = "podinfo-gone"
        no_backend = example_rollout("smi.yaml")
        no_backend["spec"]["router"]["smi"]["canary"] = "podinfo-v3"
        await h.create_rollout(no_route)
        await h.create_rollout(no_backend)

        expected: dict[str, Any] = {
            "podinfo-gw-v2": "routing not touched: httproute.gateway.networking.k8s.io "
                             f"{NS}/podinfo-gone not found",
            "podinfo-smi-v2": f"routing not touched: trafficsplit {NS}/podinfo-smi: canary "
                              "backend podinfo-v3 is not in spec.backends (it has: "
                              "podinfo-stable, podinfo-canary)",
        }
        for name, reason in expected.items():
            status = await h.wait_phase(name, {"Failed", "Succeeded", "RolledBack"}, timeout=20)
            assert (status["phase"], status["reason"]) == ("Failed", reason)
            assert status.get("weights") is None

        after = [await h.custom.get_namespaced_custom_object(*ref) for ref in (route, split)]
        for old, new in zip(before, after, strict=True):
            assert new["metadata"]["resourceVersion"] == old["metadata"]["resourceVersion"]
