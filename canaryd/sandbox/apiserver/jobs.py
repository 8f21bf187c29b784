"""The sandbox's simulated Job controller: no pods run here (the emulator has no kubelet and
no scheduler), so a Job is given the status a real Job controller would write for one pod
that ran, `delay` seconds after it was created, marked as simulated in its condition messages.

A pod template annotated `canaryd.io/test-duration` (e.g. "8s") makes it run that long
instead. A Job whose pod template is labelled `canaryd.io/test-outcome: fail` fails (reason
BackoffLimitExceeded, as one failed pod with backoffLimit 0 does); any other completes. The
real Job path (the Job controller, pods completed or failed by kwok's stages on the same
label) is the real control plane tier's (tests/real/test_job_hooks_real.py).
"""

from __future__ import annotations

import asyncio

from canaryd.core.durations import parse_duration
from canaryd.sandbox.apiserver.errors import ApiError, Obj
from canaryd.sandbox.apiserver.resources import Registry
from canaryd.sandbox.apiserver.store import Event, Store
from canaryd.sandbox.apiserver.writes import Writer

OUTCOME_LABEL = "canaryd.io/test-outcome"
DURATION_ANNOTATION = "canaryd.io/test-duration"
SIMULATED = "simulated by the canaryd sandbox: no pod ran"
_KEY = "batch/jobs"


def finished_status(job: Obj, now: str) -> Obj:
    """What the Job controller writes once the Job's only pod finished."""
    labels = ((job.get("spec") or {}).get("template") or {}).get("metadata", {}).get(
        "labels") or {}
    started = (job.get("status") or {}).get("startTime", now)
    if labels.get(OUTCOME_LABEL) == "fail":
        message = f"Job has reached the specified backoff limit ({SIMULATED})"
        return {"startTime": started, "failed": 1, "ready": 0, "terminating": 0,
                "conditions": [
                    {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                     "message": message, "lastProbeTime": now, "lastTransitionTime": now},
                    {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                     "message": message, "lastProbeTime": now, "lastTransitionTime": now}]}
    message = f"Reached expected number of succeeded pods ({SIMULATED})"
    return {"startTime": started, "completionTime": now, "succeeded": 1, "ready": 0,
            "terminating": 0, "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True",
                 "reason": "CompletionsReached", "message": message, "lastProbeTime": now,
                 "lastTransitionTime": now},
                {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                 "message": message, "lastProbeTime": now, "lastTransitionTime": now}]}


class JobController:
    def __init__(self, *, store: Store, registry: Registry, writer: Writer,
                 delay: float) -> None:
        self.store = store
        self.registry = registry
        self.writer = writer
        self.delay = delay
        self._timers: dict[tuple[str, str], asyncio.Handle] = {}
        store.add_listener(self.on_event)

    def on_event(self, event: Event) -> None:
        if event.resource != _KEY:
            return
        meta = event.obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        if event.type == "DELETED" or meta.get("deletionTimestamp"):
            timer = self._timers.pop(key, None)
            if timer is not None:
                timer.cancel()
            return
        status = event.obj.get("status") or {}
        if status.get("conditions") or key in self._timers:
            return  # finished, or finishing
        loop = asyncio.get_running_loop()
        if not status.get("startTime"):  # the controller saw it: its pod "starts"
            self._timers[key] = loop.call_soon(self._write, key, {
                "startTime": self.writer.clock(), "active": 1, "ready": 0, "terminating": 0})
            return
        self._timers[key] = loop.call_later(self._duration(event.obj), self._finish, key)

    def _duration(self, job: Obj) -> float:
        meta = ((job.get("spec") or {}).get("template") or {}).get("metadata") or {}
        given = str((meta.get("annotations") or {}).get(DURATION_ANNOTATION, ""))
        try:
            return parse_duration(given) if given else self.delay
        except ValueError:
            return self.delay

    def _write(self, key: tuple[str, str], status: Obj) -> None:
        self._timers.pop(key, None)
        rdef = self.registry.get(_KEY)
        obj = self.store.get(_KEY, *key)
        if rdef is None or obj is None:
            return
        body = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
                "status": status}
        try:
            self.writer.update(rdef, "v1", key[0], key[1], body, subresource="status",
                               dry_run=False, from_patch=True)
        except ApiError:
            return  # deleted or changed meanwhile; its event re-arms

    def _finish(self, key: tuple[str, str]) -> None:
        obj = self.store.get(_KEY, *key)
        if obj is not None:
            self._write(key, finished_status(obj, self.writer.clock()))

    def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
