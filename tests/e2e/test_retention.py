"""Retention: the leader keeps the newest `controller.keepFinished` finished Rollouts per
target and deletes older ones; an active rollout, another target's and an unreadable
status are never deleted."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import config

from canaryd.sandbox.runner import Sandbox
from canaryd.sandbox.testing import eventually
from tests.e2e.fixtures import canaryd_running
from tests.e2e.support import CONFIG, GROUP, NS, PLURAL, VERSION, Kube, rollout_manifest

KUBE_BACKENDS = ("emulator", "real")


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


async def finished(kube: Kube, name: str, phase: str = "Succeeded", *,
                   target: str = "podinfo", status: dict[str, Any] | None = None) -> None:
    """A rollout that has ended (its status written as canaryd writes a finished one)."""
    body = rollout_manifest(name, target=target)
    if target != "podinfo":  # on objects of its own: it shares nothing with podinfo's
        body["spec"]["router"]["istio"]["virtualService"] = target
        body["spec"]["workloads"].update(stable=f"{target}-stable", canary=f"{target}-canary")
    await kube.create_rollout(body)
    now = _now()
    body = status or {"phase": phase, "sequence": 1, "reason": "done", "phaseStartedAt": now,
                      "history": [{"seq": 1, "time": now, "source": "Pending", "phase": phase,
                                   "trigger": "Test", "reason": "done"}]}
    await kube.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, name, {"status": body},
        _content_type="application/merge-patch+json")


async def names(kube: Kube) -> set[str]:
    body = await kube.custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)
    return {o["metadata"]["name"] for o in body["items"]}


async def test_the_leader_keeps_the_newest_finished_per_target_and_never_an_active_one(
    sandbox: Sandbox, tmp_path: Path,
) -> None:
    settings = yaml.safe_load(CONFIG.read_text())
    settings["controller"]["keepFinished"] = 2
    conf = tmp_path / "canaryd.yaml"
    conf.write_text(yaml.safe_dump(settings))
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    kube = Kube(api)
    try:
        # Before canaryd starts: four finished releases of podinfo, and on another target one
        # finished and one whose status canaryd cannot read (it may still hold traffic).
        for i, phase in enumerate(("Succeeded", "RolledBack", "Succeeded", "Failed")):
            await finished(kube, f"podinfo-r{i + 1}", phase)
        await finished(kube, "other-r1", target="other")
        # (on the other target: an unknown phase keeps its target, so no release could start)
        await finished(kube, "other-r0", target="other", status={"phase": "Exploded"})
        async with canaryd_running(sandbox, config=conf) as daemon:
            async def trimmed() -> set[str] | None:
                left = await names(kube)
                return left if not {"podinfo-r1", "podinfo-r2"} & left else None

            left = await eventually(trimmed, timeout=30, what="the two oldest deleted")
            assert left == {"other-r0", "podinfo-r3", "podinfo-r4", "other-r1"}
            # An active release of the target (held in its first step) and one more
            # finished: the oldest finished goes, the active one stays.
            await kube.create_rollout(rollout_manifest(
                "podinfo-r5", plan={"steps": [{"weight": 20, "pause": "10m"}]}))
            await kube.wait_phase("podinfo-r5", {"Progressing"}, timeout=60)
            await finished(kube, "podinfo-r6", "Succeeded")

            async def r3_gone() -> set[str] | None:
                left = await names(kube)
                return left if "podinfo-r3" not in left else None

            left = await eventually(r3_gone, timeout=30, what="podinfo-r3 deleted")
            assert left == {"other-r0", "podinfo-r4", "podinfo-r5", "podinfo-r6",
                            "other-r1"}
            assert (await kube.status("podinfo-r5"))["phase"] == "Progressing"
            assert daemon.controller is not None
            assert daemon.controller.retention.deleted == 3
    finally:
        await api.close()
