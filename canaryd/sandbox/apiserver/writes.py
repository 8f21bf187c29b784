"""Write semantics shared by every resource: create, update, patch, delete.

This is where the apiserver's generic registry rules live: uid/creationTimestamp/
generation on create, optimistic concurrency on update, status/scale subresource
splitting, no-op detection (no new resourceVersion, no event), dry runs, namespace
existence, and cascades (deleting a Namespace or a CRD deletes what it contains).
Finalizers are not honoured: a DELETE removes the object at once.
"""

from __future__ import annotations

import copy
import datetime as dt
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
_VOLATILE_META = ("resourceVersion", "managedFields")
_USER_META = ("labels", "annotations", "finalizers", "ownerReferences")


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

    def _require_namespace(self, rdef: ResourceDef, namespace: str) -> None:
        if rdef.namespaced and self.store.get(NS_KEY, "", namespace) is None:
            raise errors.not_found("namespaces", "", namespace)

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
                           reason="InternalError")
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
        self._require_namespace(rdef, namespace)
        now = self.clock()
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now
        meta["generation"] = 1
        for k in ("managedFields", "deletionTimestamp", "selfLink"):
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
            raise errors.invalid(rdef.kind, rdef.group, name, [errors.cause(
                "FieldValueInvalid", "metadata.resourceVersion",
                "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update")])
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
            if rdef.has_status(version):
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
                else:
                    new.pop("status", None)
        new["apiVersion"] = current["apiVersion"]
        new["kind"] = rdef.kind
        now = self.clock()
        admission.admit(rdef, new, version=version, old=current, now=now)
        if self._bump_generation(rdef, version, new, current):
            new["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        if _comparable(new) == _comparable(current):
            return current
        if dry_run:
            return new
        stored = self.store.put(rdef.key, new, created=False, old=current)
        self._after_write(rdef, stored)
        return stored

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
        current = self.get(rdef, namespace, name)
        pre = (options or {}).get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != current["metadata"].get("uid"):
            raise errors.conflict(rdef.plural, rdef.group, name,
                                  f"Precondition failed: UID in precondition: {pre['uid']}, "
                                  f"UID in object meta: {current['metadata'].get('uid')}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != \
                current["metadata"]["resourceVersion"]:
            raise errors.conflict(rdef.plural, rdef.group, name)
        if dry_run:
            return current
        last = self.store.remove(rdef.key, namespace, name)
        if rdef.key == NS_KEY:
            for other in self.registry.all():
                if other.namespaced:
                    for obj in self.store.objects(other.key, name):
                        self.store.remove(other.key, name, obj["metadata"]["name"])
        if rdef.key == CRD_KEY:
            served = resources.from_crd(last)
            self.registry.remove(served.key)
            self.store.drop_resource(served.key)
        return last

    def _after_write(self, rdef: ResourceDef, stored: Obj) -> None:
        if rdef.key == CRD_KEY:
            self.registry.add(resources.from_crd(stored))
