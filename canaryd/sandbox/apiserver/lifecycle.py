"""The controllers behind graceful deletion, as kube-controller-manager and apiextensions run
them: the namespace controller, the CRD finalizer and the garbage collector.

They react to store events and act on the next turn of the event loop, so a DELETE answers
first (a Namespace `Terminating`, a CRD with its cleanup finalizer) and the cleanup follows,
as on a real server, only much sooner:
- a terminating Namespace has its objects deleted; once none is left, its `kubernetes`
  finalizer goes and so does the Namespace;
- a deleted CRD (the DELETE adds `customresourcecleanup.apiextensions.k8s.io`) gets the
  condition `Terminating`, its objects are deleted, then the finalizer and the CRD go;
- an object whose owners (`metadata.ownerReferences`) are all gone is deleted; one with
  other owners left loses the dangling reference; `orphan` removes the references to the
  owner from its dependents, `foregroundDeletion` deletes them and waits for those with
  `blockOwnerDeletion`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Callable

from canaryd.sandbox.apiserver import resources
from canaryd.sandbox.apiserver.errors import ApiError, Obj
from canaryd.sandbox.apiserver.resources import Registry, ResourceDef
from canaryd.sandbox.apiserver.store import Event, Store
from canaryd.sandbox.apiserver.writes import (
    CRD_CLEANUP,
    CRD_KEY,
    FOREGROUND,
    NS_KEY,
    ORPHAN,
    Writer,
    terminating,
)

_Key = tuple[str, ...]


class Lifecycle:
    def __init__(self, *, store: Store, registry: Registry, writer: Writer) -> None:
        self.store = store
        self.registry = registry
        self.writer = writer
        self._pending: dict[_Key, Callable[[], None]] = {}
        self._stopped = False
        store.add_listener(self.on_event)

    def stop(self) -> None:
        self._stopped = True
        self._pending.clear()

    # dispatch ----------------------------------------------------------------------------
    def _schedule(self, key: _Key, work: Callable[[], None]) -> None:
        if key in self._pending or self._stopped:
            return
        self._pending[key] = work
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop yet (the server is being built): act now
            self._run(key)
            return
        loop.call_soon(self._run, key)

    def _run(self, key: _Key) -> None:
        work = self._pending.pop(key, None)
        if work is None or self._stopped:
            return
        # Changed meanwhile: the event for that change schedules the work again.
        with contextlib.suppress(ApiError):
            work()

    def on_event(self, event: Event) -> None:
        obj, res = event.obj, event.resource
        meta = obj.get("metadata", {})
        name, ns = meta.get("name", ""), meta.get("namespace", "")
        if event.type != "DELETED":
            if res == CRD_KEY and terminating(obj):
                self._schedule(("crd", name), lambda: self._drain_crd(name))
            if res == NS_KEY and terminating(obj):
                self._schedule(("ns", name), lambda: self._drain_namespace(name))
            fins = meta.get("finalizers") or []
            if terminating(obj) and ORPHAN in fins:
                self._schedule(("orphan", res, ns, name), lambda: self._orphan(res, ns, name))
            if terminating(obj) and FOREGROUND in fins:
                self._schedule(("fg", res, ns, name), lambda: self._foreground(res, ns, name))
            return
        uid = meta.get("uid")
        if uid:
            self._schedule(("gc", uid), lambda: self._collect(uid))
        for ref in meta.get("ownerReferences") or []:
            owner = self._by_uid().get(ref.get("uid"))
            if owner is not None and FOREGROUND in (owner[1]["metadata"].get("finalizers") or []):
                self._schedule_foreground(*owner)
        parent = self.store.get(NS_KEY, "", ns) if ns else None
        if parent is not None and terminating(parent):
            self._schedule(("ns", ns), lambda: self._drain_namespace(ns))
        rdef = self.registry.get(res)
        if rdef is not None and not rdef.builtin:
            crd_name = f"{rdef.plural}.{rdef.group}"
            crd = self.store.get(CRD_KEY, "", crd_name)
            if crd is not None and terminating(crd):
                self._schedule(("crd", crd_name), lambda: self._drain_crd(crd_name))

    def _schedule_foreground(self, res: str, owner: Obj) -> None:
        ns, name = owner["metadata"].get("namespace", ""), owner["metadata"]["name"]
        self._schedule(("fg", res, ns, name), lambda: self._foreground(res, ns, name))

    # helpers -----------------------------------------------------------------------------
    def _rdef(self, key: str) -> ResourceDef | None:
        return self.registry.get(key)

    def _by_uid(self) -> dict[str, tuple[str, Obj]]:
        out: dict[str, tuple[str, Obj]] = {}
        for rdef in self.registry.all():
            for obj in self.store.objects(rdef.key):
                uid = obj["metadata"].get("uid")
                if uid:
                    out[uid] = (rdef.key, obj)
        return out

    def _dependents(self, uid: str) -> list[tuple[ResourceDef, Obj]]:
        out = []
        for rdef in self.registry.all():
            for obj in self.store.objects(rdef.key):
                refs = obj["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == uid for r in refs):
                    out.append((rdef, obj))
        return out

    def _delete(self, rdef: ResourceDef, obj: Obj) -> None:
        meta = obj["metadata"]
        if terminating(obj):
            return
        with contextlib.suppress(ApiError):
            self.writer.delete(rdef, meta.get("namespace", ""), meta["name"], dry_run=False)

    # the namespace controller ------------------------------------------------------------
    def _drain_namespace(self, name: str) -> None:
        ns = self.store.get(NS_KEY, "", name)
        if ns is None or not terminating(ns):
            return
        left = 0
        for rdef in self.registry.all():
            if not rdef.namespaced:
                continue
            for obj in self.store.objects(rdef.key, name):
                self._delete(rdef, obj)
                left += self.store.get(rdef.key, name, obj["metadata"]["name"]) is not None
        ns_rdef = self._rdef(NS_KEY)
        if left == 0 and ns_rdef is not None:
            self.writer.remove_finalizer(ns_rdef, "", name, "kubernetes")

    # the CRD finalizer -------------------------------------------------------------------
    def _drain_crd(self, name: str) -> None:
        crd = self.store.get(CRD_KEY, "", name)
        crd_rdef = self._rdef(CRD_KEY)
        if crd is None or crd_rdef is None or not terminating(crd):
            return
        conds = list((crd.get("status") or {}).get("conditions") or [])
        if not any(c.get("type") == "Terminating" for c in conds):
            new = copy.deepcopy(crd)
            new["status"]["conditions"] = [*conds, {
                "type": "Terminating", "status": "True", "reason": "InstanceDeletionInProgress",
                "message": "CustomResource deletion is in progress",
                "lastTransitionTime": self.writer.clock()}]
            self.writer.put_internal(crd_rdef, new)
        served = self._rdef(resources.from_crd(crd).key)
        left = 0
        if served is not None:
            for obj in self.store.objects(served.key):
                self._delete(served, obj)
                meta = obj["metadata"]
                left += self.store.get(served.key, meta.get("namespace", ""),
                                       meta["name"]) is not None
        if left == 0:
            self.writer.remove_finalizer(crd_rdef, "", name, CRD_CLEANUP)

    # the garbage collector ---------------------------------------------------------------
    def _collect(self, uid: str) -> None:
        if uid in self._by_uid():
            return  # still there (a foreground deletion in progress)
        live = self._by_uid()
        for rdef, obj in self._dependents(uid):
            refs = obj["metadata"].get("ownerReferences") or []
            solid = [r for r in refs if r.get("uid") != uid and r.get("uid") in live]
            if not solid:
                self._delete(rdef, obj)
                continue
            new = copy.deepcopy(obj)
            new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") in live]
            self.writer.put_internal(rdef, new)

    def _orphan(self, res: str, ns: str, name: str) -> None:
        rdef = self._rdef(res)
        owner = self.store.get(res, ns, name)
        if rdef is None or owner is None:
            return
        uid = owner["metadata"].get("uid")
        for d_rdef, obj in self._dependents(uid):
            new = copy.deepcopy(obj)
            refs = [r for r in obj["metadata"].get("ownerReferences") or []
                    if r.get("uid") != uid]
            if refs:
                new["metadata"]["ownerReferences"] = refs
            else:
                new["metadata"].pop("ownerReferences", None)
            self.writer.put_internal(d_rdef, new)
        self.writer.remove_finalizer(rdef, ns, name, ORPHAN)

    def _foreground(self, res: str, ns: str, name: str) -> None:
        rdef = self._rdef(res)
        owner = self.store.get(res, ns, name)
        if rdef is None or owner is None or not terminating(owner):
            return
        uid = owner["metadata"].get("uid")
        blocking = 0
        for d_rdef, obj in self._dependents(uid):
            self._delete(d_rdef, obj)
            meta = obj["metadata"]
            still = self.store.get(d_rdef.key, meta.get("namespace", ""), meta["name"])
            if still is not None and any(r.get("uid") == uid and r.get("blockOwnerDeletion")
                                         for r in meta.get("ownerReferences") or []):
                blocking += 1
        if blocking == 0:
            self.writer.remove_finalizer(rdef, ns, name, FOREGROUND)
