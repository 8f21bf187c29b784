"""Write semantics shared by every resource: create, update, patch, delete.

This is where the apiserver's generic registry rules live: uid/creationTimestamp/
generation on create, optimistic concurrency on update, status/scale subresource
splitting, no-op detection (no new resourceVersion, no event), dry runs, namespace
existence and graceful deletion: an object with finalizers (and a Namespace, which has
`spec.finalizers`) is only marked (`deletionTimestamp`) by a DELETE and goes once its
last finalizer is removed; `propagationPolicy` Orphan/Foreground add the garbage
collector's finalizers. What the controllers then do (empty a Namespace, remove a CRD's
objects, collect dependents) is `lifecycle.py`.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import secrets
import string
import uuid
from collections.abc import Callable

from canaryd.sandbox.apiserver import admission, errors, patch, resources
from canaryd.sandbox.apiserver.errors import ApiError, Obj
from canaryd.sandbox.apiserver.resources import ResourceDef
from canaryd.sandbox.apiserver.store import Store

CRD_KEY = "apiextensions.k8s.io/customresourcedefinitions"
NS_KEY = "/namespaces"
ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"
_VOLATILE_META = ("resourceVersion", "managedFields")
_USER_META = ("labels", "annotations", "finalizers", "ownerReferences")
_SERVER_META = ("deletionTimestamp", "deletionGracePeriodSeconds")


def terminating(obj: Obj) -> bool:
    return bool(obj.get("metadata", {}).get("deletionTimestamp"))


def _go_strings(values: list[str]) -> str:
    """Go's %#v of a []string."""
    return "[]string{" + ", ".join(json.dumps(v) for v in values) + "}"


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def get_path(obj: Obj, path: str) -> object:
    cur: object = obj
    for part in path.strip(".").split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def set_path(obj: Obj, path: str, value: object) -> None:
    parts = path.strip(".").split(".")
    cur = obj
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value


def _comparable(obj: Obj) -> Obj:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in _VOLATILE_META}
    return {**obj, "metadata": meta}


def _outside_metadata(obj: Obj, skip: str = "") -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind", skip)}


class Writer:
    def __init__(self, *, store: Store, registry: resources.Registry,
                 clock: Callable[[], str] = now_rfc3339) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock

    # helpers -----------------------------------------------------------------------------
    @staticmethod
    def render(rdef: ResourceDef, version: str, obj: Obj) -> Obj:
        """The stored object as served under `version` (apiVersion rewritten)."""
        out = {"apiVersion": rdef.api_version(version), "kind": rdef.kind}
        out.update({k: v for k, v in obj.items() if k not in ("apiVersion", "kind")})
        return copy.deepcopy(out)

    def get(self, rdef: ResourceDef, namespace: str, name: str) -> Obj:
        obj = self.store.get(rdef.key, namespace, name)
        if obj is None:
            raise errors.not_found(rdef.plural, rdef.group, name)
        return obj

    def _require_namespace(self, rdef: ResourceDef, namespace: str, name: str) -> None:
        if not rdef.namespaced:
            return
        ns = self.store.get(NS_KEY, "", namespace)
        if ns is None:
            raise errors.not_found("namespaces", "", namespace)
        if terminating(ns):
            raise ApiError(
                403, f'{errors.qualified(rdef.plural, rdef.group)} "{name}" is forbidden: unable '
                     f"to create new content in namespace {namespace} because it is being "
                     "terminated", reason="Forbidden",
                details=errors.details(name, rdef.group, rdef.plural, causes=[{
                    "reason": "NamespaceTerminating", "field": "metadata.namespace",
                    "message": f"namespace {namespace} is being terminated"}]))

    def _bump_generation(self, rdef: ResourceDef, version: str, new: Obj, old: Obj) -> bool:
        if rdef.generation_from_all:
            # With the status subresource on, status lives apart and never bumps generation.
            skip = "status" if rdef.has_status(version) else ""
            return _outside_metadata(new, skip) != _outside_metadata(old, skip)
        if rdef.key == "apps/deployments":
            old_ann = old["metadata"].get("annotations") or {}
            if (new["metadata"].get("annotations") or {}) != old_ann:
                return True
        return new.get("spec") != old.get("spec")

    # create ------------------------------------------------------------------------------
    def create(self, rdef: ResourceDef, version: str, namespace: str, body: object, *,
               dry_run: bool) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        obj: Obj = copy.deepcopy(body)
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        if meta.get("resourceVersion"):
            raise ApiError(500, "resourceVersion should not be set on objects to be created",
                           reason="")
        if rdef.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise errors.bad_request("the namespace of the provided object does not match "
                                         "the namespace sent on the request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if meta.get("generateName"):
                alphabet = string.ascii_lowercase + string.digits
                meta["name"] = meta["generateName"] + "".join(
                    secrets.choice(alphabet) for _ in range(5))
            else:
                raise errors.invalid(rdef.kind, rdef.group, "", [errors.cause(
                    "FieldValueRequired", "metadata.name",
                    "metadata.name: Required value: name or generateName is required")])
        self._require_namespace(rdef, namespace, meta["name"])
        now = self.clock()
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now
        if rdef.has_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        for k in ("managedFields", "selfLink", *_SERVER_META):
            meta.pop(k, None)
        obj["apiVersion"] = rdef.api_version(rdef.storage_version.name)
        obj["kind"] = rdef.kind
        if rdef.has_status(version) and rdef.key != NS_KEY:
            obj.pop("status", None)
        admission.admit(rdef, obj, version=version, old=None, now=now)
        if self.store.get(rdef.key, meta.get("namespace", ""), meta["name"]) is not None:
            raise errors.already_exists(rdef.plural, rdef.group, meta["name"])
        if dry_run:
            return obj
        stored = self.store.put(rdef.key, obj, created=True)
        self._after_write(rdef, stored)
        return stored

    # update ------------------------------------------------------------------------------
    def update(self, rdef: ResourceDef, version: str, namespace: str, name: str, body: object,
               *, subresource: str | None, dry_run: bool, from_patch: bool = False) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        current = self.get(rdef, namespace, name)
        body_meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        assert isinstance(body_meta, dict)
        if body_meta.get("name") not in (None, name):
            raise errors.bad_request(f"the name of the object ({body_meta['name']}) does not "
                                     f"match the name on the URL ({name})")
        rv = body_meta.get("resourceVersion")
        if rv:
            if str(rv) != current["metadata"]["resourceVersion"]:
                raise errors.conflict(rdef.plural, rdef.group, name)
        elif rdef.update_requires_rv and not from_patch:
            # Refused by the registry, which names the resource, not the kind.
            raise errors.invalid(rdef.plural, rdef.group, name, [errors.cause(
                "FieldValueInvalid", "metadata.resourceVersion",
                "metadata.resourceVersion: Invalid value: 0: must be specified for an update")])
        if subresource == "status":
            new = copy.deepcopy(current)
            if "status" in body:
                new["status"] = copy.deepcopy(body["status"])
            else:
                new.pop("status", None)
        else:
            new = copy.deepcopy(body)
            new_meta = copy.deepcopy(current["metadata"])
            for k in _USER_META:
                if k in body_meta:
                    new_meta[k] = copy.deepcopy(body_meta[k])
                else:
                    new_meta.pop(k, None)
            new["metadata"] = new_meta
            for k in _SERVER_META:
                if k in current["metadata"]:
                    new_meta[k] = current["metadata"][k]
            if rdef.has_status(version):
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
                else:
                    new.pop("status", None)
        new["apiVersion"] = current["apiVersion"]
        new["kind"] = rdef.kind
        now = self.clock()
        if terminating(current):
            added = [f for f in new["metadata"].get("finalizers") or []
                     if f not in (current["metadata"].get("finalizers") or [])]
            if added:
                why = ("Forbidden: no new finalizers can be added if the object is being "
                       f"deleted, found new finalizers {_go_strings(added)}")
                # kube-apiserver reports this cause twice (metadata and update validation).
                raise errors.invalid(rdef.kind, rdef.group, name, [
                    {"reason": "FieldValueForbidden", "message": why,
                     "field": "metadata.finalizers"}] * 2)
        admission.admit(rdef, new, version=version, old=current, now=now)
        if not rdef.has_generation:
            new["metadata"].pop("generation", None)
        elif self._bump_generation(rdef, version, new, current):
            new["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        if _comparable(new) == _comparable(current):
            return current
        if dry_run:
            return new
        if terminating(current) and not self._finalizers(rdef, new):
            self.store.put(rdef.key, new, created=False, old=current)
            return self._remove(rdef, namespace, name)
        stored = self.store.put(rdef.key, new, created=False, old=current)
        self._after_write(rdef, stored)
        return stored

    @staticmethod
    def _finalizers(rdef: ResourceDef, obj: Obj) -> list[str]:
        out = list(obj["metadata"].get("finalizers") or [])
        if rdef.key == NS_KEY:
            out += (obj.get("spec") or {}).get("finalizers") or []
        return out

    def patch(self, rdef: ResourceDef, version: str, namespace: str, name: str, raw: bytes,
              content_type: str, *, subresource: str | None, dry_run: bool) -> Obj:
        current = self.render(rdef, version, self.get(rdef, namespace, name))
        before_rv = current["metadata"]["resourceVersion"]
        patched = patch.apply(current, raw, content_type, builtin=rdef.builtin)
        meta = patched.get("metadata")
        if not isinstance(meta, dict):
            meta = patched["metadata"] = {}
        # Unconditional unless the patch itself carries a resourceVersion.
        if not meta.get("resourceVersion"):
            meta["resourceVersion"] = before_rv
        return self.update(rdef, version, namespace, name, patched, subresource=subresource,
                           dry_run=dry_run, from_patch=True)

    # scale -------------------------------------------------------------------------------
    def scale_of(self, rdef: ResourceDef, version: str, obj: Obj) -> Obj:
        paths = (rdef.version(version) or rdef.storage_version).scale
        if paths is None:
            raise errors.unknown_resource()
        meta = obj["metadata"]
        status: Obj = {"replicas": get_path(obj, paths.status_replicas) or 0}
        selector = get_path(obj, paths.label_selector) if paths.label_selector else None
        if rdef.key == "apps/deployments":
            match = (obj.get("spec") or {}).get("selector", {}).get("matchLabels") or {}
            selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
        if selector:
            status["selector"] = selector
        return {
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                              "creationTimestamp") if k in meta},
            "spec": {"replicas": get_path(obj, paths.spec_replicas) or 0},
            "status": status,
        }

    def write_scale(self, rdef: ResourceDef, version: str, namespace: str, name: str,
                    scale: object, *, dry_run: bool) -> Obj:
        paths = (rdef.version(version) or rdef.storage_version).scale
        if paths is None or not isinstance(scale, dict):
            raise errors.unknown_resource()
        current = self.get(rdef, namespace, name)
        new = self.render(rdef, version, current)
        replicas = (scale.get("spec") or {}).get("replicas", 0)
        set_path(new, paths.spec_replicas, replicas)
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        new["metadata"]["resourceVersion"] = rv or current["metadata"]["resourceVersion"]
        stored = self.update(rdef, version, namespace, name, new, subresource=None,
                             dry_run=dry_run, from_patch=True)
        return self.scale_of(rdef, version, stored)

    # delete ------------------------------------------------------------------------------
    def delete(self, rdef: ResourceDef, namespace: str, name: str, *, dry_run: bool,
               options: Obj | None = None) -> Obj:
        """The object as the DELETE leaves it: gone (its last state, with the deletion's
        resourceVersion), or marked for deletion while finalizers remain."""
        current = self.get(rdef, namespace, name)
        opts = options or {}
        pre = opts.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != current["metadata"].get("uid"):
            raise errors.conflict(rdef.plural, rdef.group, name,
                                  f"Precondition failed: UID in precondition: {pre['uid']}, "
                                  f"UID in object meta: {current['metadata'].get('uid')}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != \
                current["metadata"]["resourceVersion"]:
            raise errors.conflict(rdef.plural, rdef.group, name)
        if terminating(current):
            return current
        finalizers = list(current["metadata"].get("finalizers") or [])
        policy = opts.get("propagationPolicy")
        if opts.get("orphanDependents") is True:
            policy = "Orphan"
        extra = {"Orphan": ORPHAN, "Foreground": FOREGROUND}.get(str(policy))
        if extra and extra not in finalizers:
            finalizers.append(extra)
        if rdef.key == CRD_KEY and CRD_CLEANUP not in finalizers:
            finalizers.append(CRD_CLEANUP)
        if not finalizers and rdef.key != NS_KEY:
            if dry_run:
                return current
            return self._remove(rdef, namespace, name)
        marked = copy.deepcopy(current)
        meta = marked["metadata"]
        meta["deletionTimestamp"] = self.clock()
        meta["deletionGracePeriodSeconds"] = 0
        if finalizers:
            meta["finalizers"] = finalizers
        if rdef.key == NS_KEY:
            meta.pop("deletionGracePeriodSeconds")
            marked.setdefault("status", {})["phase"] = "Terminating"
        elif rdef.has_generation:
            meta["generation"] = int(meta.get("generation", 1)) + 1
        if dry_run:
            return marked
        return self.store.put(rdef.key, marked, created=False, old=current)

    def _remove(self, rdef: ResourceDef, namespace: str, name: str) -> Obj:
        last = self.store.remove(rdef.key, namespace, name)
        if rdef.key == CRD_KEY:
            served = resources.from_crd(last)
            self.registry.remove(served.key)
            self.store.drop_resource(served.key)
        return last

    def remove_finalizer(self, rdef: ResourceDef, namespace: str, name: str,
                         finalizer: str) -> None:
        """What a controller does when its cleanup is done (the object may then go)."""
        current = self.store.get(rdef.key, namespace, name)
        if current is None:
            return
        new = copy.deepcopy(current)
        if rdef.key == NS_KEY and finalizer == "kubernetes":
            spec = new.setdefault("spec", {})
            spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != finalizer]
            if not spec["finalizers"]:
                spec.pop("finalizers")
        else:
            fins = [f for f in new["metadata"].get("finalizers") or [] if f != finalizer]
            if fins:
                new["metadata"]["finalizers"] = fins
            else:
                new["metadata"].pop("finalizers", None)
        if new == current:
            return
        if terminating(current) and not self._finalizers(rdef, new):
            self.store.put(rdef.key, new, created=False, old=current)
            self._remove(rdef, namespace, name)
            return
        self.store.put(rdef.key, new, created=False, old=current)

    def put_internal(self, rdef: ResourceDef, obj: Obj) -> Obj:
        """A controller's write that skips admission (finalizers, conditions)."""
        meta = obj["metadata"]
        current = self.store.get(rdef.key, meta.get("namespace", ""), meta["name"])
        return self.store.put(rdef.key, obj, created=current is None, old=current)

    def _after_write(self, rdef: ResourceDef, stored: Obj) -> None:
        if rdef.key == CRD_KEY:
            self.registry.add(resources.from_crd(stored))
