"""A controller with nothing to do waits its whole tick: finished rollouts are not due, so
they do not make the reconcile loop spin. No Kubernetes call is made (nothing is due)."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client

from canaryd.adapters.prometheus import PrometheusClient
from canaryd.core.settings import Settings
from canaryd.runtime.controller import Controller
from canaryd.runtime.metrics import DaemonMetrics


def rollout(name: str, phase: str) -> dict[str, Any]:
    return {"apiVersion": "canaryd.io/v1alpha1", "kind": "Rollout",
            "metadata": {"namespace": "demo", "name": name, "resourceVersion": "3"},
            "spec": {"target": name}, "status": {"phase": phase}}


async def test_finished_rollouts_leave_the_loop_waiting_its_tick() -> None:
    api = client.ApiClient()
    try:
        controller = Controller(api=api, settings=Settings, metrics=DaemonMetrics(),
                                prometheus=PrometheusClient("http://127.0.0.1:9"),
                                identity="idle")
        for name, phase in (("done", "Succeeded"), ("back", "RolledBack"),
                            ("stopped", "Aborted")):
            controller._informer.apply("ADDED", rollout(name, phase))
        assert controller.queue.soonest(30.0) == 0.0, "new objects are looked at once"
        await controller.round()
        assert controller.queue.soonest(30.0) == 30.0, "nothing is due until one changes"
        controller._informer.apply("MODIFIED", {**rollout("done", "Succeeded"),
                                                "spec": {"target": "other"}})
        assert controller.queue.soonest(30.0) == 0.0, "an edited one is looked at again"
    finally:
        await api.close()
