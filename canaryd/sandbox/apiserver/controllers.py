"""A minimal Deployment controller: status follows spec after a delay.

Like the real controller, a spec change is observed at once: `observedGeneration` catches
up with `generation` while the new pods are not there yet (a changed pod template: no
updated replicas, the old ones still available; a scale change: the counts as they were, up
to the new size). `deployment_ready_delay` seconds later the rollout completes: every
replica updated and available. Replica counts, `observedGeneration` and the
`Available`/`Progressing` conditions are written through the store.
Zero counts are omitted, as the real API does (`omitempty`). The annotation
`sandbox.canaryd.io/unavailable: "true"` keeps it unavailable so failure to become
ready can be tested.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib

from canaryd.sandbox.apiserver.errors import ApiError, Obj
from canaryd.sandbox.apiserver.resources import Registry
from canaryd.sandbox.apiserver.store import Event, Store
from canaryd.sandbox.apiserver.writes import Writer

UNAVAILABLE_ANNOTATION = "sandbox.canaryd.io/unavailable"
_KEY = "apps/deployments"


def _condition(ctype: str, status: str, reason: str, message: str, old: list[Obj],
               now: str) -> Obj:
    prev = next((c for c in old if c.get("type") == ctype), None)
    same = prev is not None and prev.get("status") == status and prev.get("reason") == reason
    return {
        "type": ctype, "status": status, "reason": reason, "message": message,
        "lastUpdateTime": prev.get("lastUpdateTime", now) if same and prev else now,
        "lastTransitionTime": prev.get("lastTransitionTime", now)
        if prev is not None and prev.get("status") == status else now,
    }


def template_hash(obj: Obj) -> str:
    return hashlib.sha256(repr((obj.get("spec") or {}).get("template")).encode()).hexdigest()[:10]


def observed_status(obj: Obj, now: str, template_rolled_out: bool) -> Obj:
    """The status right after the controller observed a new spec: rollout in progress."""
    spec = obj.get("spec") or {}
    meta = obj["metadata"]
    replicas = int(spec.get("replicas", 1))
    old = obj.get("status") or {}
    updated = int(old.get("updatedReplicas") or 0) if template_rolled_out else 0
    available = min(int(old.get("availableReplicas") or 0), replicas)
    current = max(int(old.get("replicas") or 0), replicas) if replicas else 0
    rs_name = f'{meta["name"]}-{template_hash(obj)}'
    status: Obj = {"observedGeneration": meta.get("generation", 1)}
    counts = {"replicas": current, "updatedReplicas": min(updated, replicas),
              "readyReplicas": available, "availableReplicas": available,
              "unavailableReplicas": max(replicas - available, 0)}
    status.update({k: v for k, v in counts.items() if v})
    conds = list(old.get("conditions") or [])
    status["conditions"] = [
        _condition("Available", "True" if available else "False",
                   "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                   "Deployment has minimum availability." if available
                   else "Deployment does not have minimum availability.", conds, now),
        _condition("Progressing", "True", "ReplicaSetUpdated",
                   f'ReplicaSet "{rs_name}" is progressing.', conds, now),
    ]
    return status


def desired_status(obj: Obj, now: str) -> Obj:
    spec = obj.get("spec") or {}
    meta = obj["metadata"]
    replicas = int(spec.get("replicas", 1))
    unavailable = (meta.get("annotations") or {}).get(UNAVAILABLE_ANNOTATION) == "true"
    rs_name = f'{meta["name"]}-{template_hash(obj)}'
    old = list((obj.get("status") or {}).get("conditions") or [])
    ready = 0 if unavailable else replicas
    status: Obj = {"observedGeneration": meta.get("generation", 1)}
    counts = {"replicas": replicas, "updatedReplicas": replicas, "readyReplicas": ready,
              "availableReplicas": ready, "unavailableReplicas": replicas - ready}
    status.update({k: v for k, v in counts.items() if v})
    if unavailable:
        conds = [
            _condition("Available", "False", "MinimumReplicasUnavailable",
                       "Deployment does not have minimum availability.", old, now),
            _condition("Progressing", "True", "ReplicaSetUpdated",
                       f'ReplicaSet "{rs_name}" is progressing.', old, now),
        ]
    else:
        conds = [
            _condition("Available", "True", "MinimumReplicasAvailable",
                       "Deployment has minimum availability.", old, now),
            _condition("Progressing", "True", "NewReplicaSetAvailable",
                       f'ReplicaSet "{rs_name}" has successfully progressed.', old, now),
        ]
    status["conditions"] = conds
    return status


def _strip_times(status: Obj) -> Obj:
    out = copy.deepcopy(status)
    for c in out.get("conditions") or []:
        c.pop("lastUpdateTime", None)
        c.pop("lastTransitionTime", None)
    return out


class DeploymentController:
    def __init__(self, *, store: Store, registry: Registry, writer: Writer,
                 delay: float) -> None:
        self.store = store
        self.registry = registry
        self.writer = writer
        self.delay = delay
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._rolled_out: dict[tuple[str, str], str] = {}  # template hash, last completed
        store.add_listener(self.on_event)

    def on_event(self, event: Event) -> None:
        if event.resource != _KEY:
            return
        meta = event.obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if event.type == "DELETED":
            self._rolled_out.pop(key, None)
            return
        now = self.writer.clock()
        current = event.obj.get("status") or {}
        if _strip_times(desired_status(event.obj, now)) == _strip_times(current):
            return
        loop = asyncio.get_running_loop()
        observed = int(current.get("observedGeneration") or 0)
        if current and observed < int(meta.get("generation", 1)):
            self._timers[key] = loop.call_later(min(self.delay, 0.05), self._observe, key)
        else:
            self._timers[key] = loop.call_later(self.delay, self._reconcile, key)

    def _write(self, key: tuple[str, str], status: Obj, obj: Obj) -> None:
        rdef = self.registry.get(_KEY)
        if rdef is None:
            return
        body = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
                "status": status}
        try:
            self.writer.update(rdef, "v1", key[0], key[1], body, subresource="status",
                               dry_run=False, from_patch=True)
        except ApiError:
            # Deleted or changed meanwhile; the event for that change re-arms the timer.
            return

    def _observe(self, key: tuple[str, str]) -> None:
        self._timers.pop(key, None)
        obj = self.store.get(_KEY, *key)
        if obj is None:
            return
        rolled = self._rolled_out.get(key) == template_hash(obj)
        self._write(key, observed_status(obj, self.writer.clock(), rolled), obj)

    def _reconcile(self, key: tuple[str, str]) -> None:
        self._timers.pop(key, None)
        obj = self.store.get(_KEY, *key)
        if obj is None:
            return
        self._rolled_out[key] = template_hash(obj)
        self._write(key, desired_status(obj, self.writer.clock()), obj)

    def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
