"""What the tests know of Job hooks' Jobs: a watch from the test (kubernetes_asyncio,
resumed where it stopped) recording every Job created with a hook's label, so a count of
Jobs created holds even after canaryd deleted them."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client, watch

from tests.e2e.support import NS


def job_hook(name: str, stage: str, *, fail: bool = False, runs: str | None = None,
             **extra: Any) -> dict[str, Any]:
    """A Job hook; its pod labelled to fail when `fail`, annotated to run for `runs` (both
    read by kwok's stages on the real control plane and the emulator's simulation)."""
    labels = {"canaryd.io/test-outcome": "fail"} if fail else {}
    notes = {"canaryd.io/test-duration": runs} if runs else {}
    return {"name": name, "stage": stage, "timeout": "60s", **copy.deepcopy(extra), "job": {
        "spec": {"template": {"metadata": {"labels": labels, "annotations": notes}, "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "test", "image": "busybox:1.36",
                            "command": ["sh", "-c", "wget -qO- http://podinfo-canary:9898"]}],
        }}}}}


@dataclass
class Jobs:
    created: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> the Job as created
    deleted: set[str] = field(default_factory=set)  # uids
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> last seen
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def names(self) -> list[str]:
        return [j["metadata"]["name"] for j in self.created.values()]

    def conditions(self) -> list[set[str]]:
        """The True conditions of each Job created, as last seen."""
        return [{c["type"] for c in (self.latest[u].get("status") or {}).get("conditions")
                 or [] if c.get("status") == "True"} for u in self.created]

    def live(self) -> list[str]:
        return [j["metadata"]["name"] for u, j in self.created.items() if u not in self.deleted]


@asynccontextmanager
async def watching_jobs(api: client.ApiClient, hook: str) -> AsyncIterator[Jobs]:
    batch = client.BatchV1Api(api)
    seen = Jobs()
    listed = await batch.list_namespaced_job(NS, label_selector=f"canaryd.io/hook={hook}",
                                             _request_timeout=10)
    assert not listed.items, "no Job of this hook before the test"
    rv = listed.metadata.resource_version

    async def run() -> None:
        nonlocal rv
        while True:
            async with watch.Watch().stream(
                    batch.list_namespaced_job, NS, label_selector=f"canaryd.io/hook={hook}",
                    resource_version=rv, timeout_seconds=60, allow_watch_bookmarks=True,
                    _preload_content=False) as stream:
                async for event in stream:
                    obj = event["raw_object"]
                    rv = obj["metadata"]["resourceVersion"]
                    uid = obj["metadata"].get("uid")
                    seen.latest[uid] = obj
                    if event["type"] == "ADDED":
                        seen.created.setdefault(uid, obj)
                    elif event["type"] == "DELETED":
                        seen.deleted.add(uid)
                    seen.changed.set()

    task = asyncio.create_task(run())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
