"""batch/v1 Jobs on the emulator: served (create, get, list, delete with
propagationPolicy), and finished by its simulated Job controller (no pods run), a pod
template labelled canaryd.io/test-outcome=fail failing. The real Job controller's side is
tests/real/test_job_hooks_real.py."""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd.sandbox.apiserver.jobs import SIMULATED


def job(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {
                "metadata": {"labels": labels or {}},
                "spec": {"restartPolicy": "Never",
                         "containers": [{"name": "t", "image": "busybox"}]}}}}


async def finished(batch: client.BatchV1Api, ns: str, name: str) -> dict[str, Any]:
    """Watch until the Job has a Complete or Failed condition (no sleeping on a hope)."""
    async with asyncio.timeout(30), watch.Watch().stream(
            batch.list_namespaced_job, ns, field_selector=f"metadata.name={name}",
            timeout_seconds=30, _preload_content=False) as stream:
        async for event in stream:
            obj = event["raw_object"]
            conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
            if "Complete" in conds or "Failed" in conds:
                return dict(obj)
    raise AssertionError(f"job {name} never finished")


async def test_a_job_completes_and_one_labelled_to_fail_fails(api: client.ApiClient,
                                                              ns: str) -> None:
    batch = client.BatchV1Api(api)
    created = await batch.create_namespaced_job(ns, job("passes"))
    assert created.metadata.uid and not (created.status and created.status.conditions)
    await batch.create_namespaced_job(ns, job("fails", {"canaryd.io/test-outcome": "fail"}))
    ok = await finished(batch, ns, "passes")
    conds = {c["type"]: c for c in ok["status"]["conditions"]}
    assert conds["Complete"]["status"] == "True" and ok["status"]["succeeded"] == 1
    assert SIMULATED in conds["Complete"]["message"], "marked as the sandbox's simulation"
    bad = await finished(batch, ns, "fails")
    failed = {c["type"]: c for c in bad["status"]["conditions"]}["Failed"]
    assert failed["reason"] == "BackoffLimitExceeded" and bad["status"]["failed"] == 1
    try:
        await batch.create_namespaced_job(ns, job("passes"))
        raise AssertionError("a second create of the same name must be refused")
    except ApiException as exc:
        assert exc.status == 409 and "AlreadyExists" in str(exc.body)
    await batch.delete_namespaced_job("passes", ns, body={"propagationPolicy": "Background"})
    left = await batch.list_namespaced_job(ns)
    assert [j.metadata.name for j in left.items] == ["fails"]
