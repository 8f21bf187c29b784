"""HTTP routing for the Kubernetes REST API: parse the path, pick the verb, dispatch.

One catch-all route handles every `/api` and `/apis` URL generically through the
registry (no per-type handlers). Each resource request is audited as a
`RequestRecord` and passes through the fault knobs first.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from canaryd.sandbox.apiserver import crd_fields as fe
from canaryd.sandbox.apiserver import (
    discovery,
    errors,
    openapi_v2,
    pagination,
    patch,
    selectors,
    tables,
    watch,
)
from canaryd.sandbox.apiserver.errors import ApiError, Obj
from canaryd.sandbox.apiserver.faults import Faults, RequestRecord
from canaryd.sandbox.apiserver.goformat import GoJSON, go_json
from canaryd.sandbox.apiserver.resources import Registry, ResourceDef
from canaryd.sandbox.apiserver.store import Store
from canaryd.sandbox.apiserver.writes import CRD_KEY, Writer
from canaryd.sandbox.apiserver.writes import terminating as writes_terminating


def go_bool(value: str | None) -> bool:
    """Query booleans as kube-apiserver reads them: only `0`/`false` (any case) are false."""
    if value is None:
        return False
    return value.lower() not in ("0", "false")


@dataclass
class Target:
    group: str
    version: str
    rdef: ResourceDef
    namespace: str | None
    name: str | None
    subresource: str | None
    legacy_watch: bool


def json_response(body: Obj, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), status=status,
                        content_type="application/json", headers=headers)


class Api:
    def __init__(self, *, store: Store, registry: Registry, writer: Writer, faults: Faults,
                 audit: list[RequestRecord], bookmark_interval: float) -> None:
        self.store = store
        self.registry = registry
        self.writer = writer
        self.faults = faults
        self.audit = audit
        self.bookmark_interval = bookmark_interval

    # routing -----------------------------------------------------------------------------
    def parse(self, segs: list[str]) -> Target | None:
        if segs[0] == "api" and len(segs) >= 3:
            group, version, rest = "", segs[1], segs[2:]
        elif segs[0] == "apis" and len(segs) >= 4:
            group, version, rest = segs[1], segs[2], segs[3:]
        else:
            return None
        legacy = False
        if rest[0] == "watch":
            legacy, rest = True, rest[1:]
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            return None
        rdef = self.registry.lookup(group, version, rest[0])
        if rdef is None or (namespace is not None and not rdef.namespaced):
            return None
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if name is not None and rdef.namespaced and namespace is None:
            return None
        v = rdef.version(version)
        assert v is not None
        if sub is not None and not ((sub == "status" and v.status) or
                                    (sub == "scale" and v.scale is not None)):
            return None
        return Target(group, version, rdef, namespace, name, sub, legacy)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        segs = [s for s in request.path.split("/") if s]
        if not segs:
            return json_response({"paths": ["/api", "/api/v1", "/apis", "/version"]})
        target = self.parse(segs) if segs[0] in ("api", "apis") else None
        if target is None:
            return self.non_resource(request, segs)
        verb = self.verb(request, target)
        record = {"verb": verb, "api_group": target.group, "resource": target.rdef.plural,
                  "subresource": target.subresource or "", "namespace": target.namespace or "",
                  "name": target.name or "", "method": request.method, "path": request.path}
        status = 500
        try:
            delay = self.faults.latency_for(verb, target.rdef.plural)
            if delay > 0:
                await asyncio.sleep(delay)
            failure = self.faults.failure_for(verb, target.rdef.plural,
                                              target.subresource or "", target.name or "")
            if failure is not None:
                raise failure
            resp = await self.dispatch(request, target, verb)
            status = resp.status
            return resp
        except ApiError as exc:
            status = exc.code
            raise
        finally:
            self.audit.append(RequestRecord(status=status, **record))

    def verb(self, request: web.Request, t: Target) -> str:
        m = request.method
        if m == "GET":
            if t.name is not None:
                return "get"
            return "watch" if t.legacy_watch or go_bool(request.query.get("watch")) else "list"
        if t.name is None:
            return {"POST": "create", "DELETE": "deletecollection"}.get(m, m.lower())
        return {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(m, m.lower())

    def _not_found(self, segs: list[str]) -> web.Response:
        """404 for a path kube-apiserver does not route: Go's mux answers in plain text
        outside /api and known /apis/<group>; inside, a Status."""
        known = segs[0] == "api" or (segs[0] == "apis" and (
            len(segs) == 1 or segs[1] in self.registry.groups()))
        if known:
            raise errors.unknown_resource()
        return web.Response(status=404, text="404 page not found\n", content_type="text/plain")

    def non_resource(self, request: web.Request, segs: list[str]) -> web.Response:
        path = "/".join(segs)
        if request.method != "GET":
            if segs[0] in ("api", "apis") and path not in ("api", "apis"):
                return self._not_found(segs)
            raise errors.unknown_resource()
        if path == "version":
            return json_response(discovery.version_info())
        if path in ("healthz", "livez", "readyz"):
            return web.Response(text="ok")
        if path in ("api", "apis") and discovery.wants_aggregated(
                request.headers.get("Accept", "")):
            doc_agg = discovery.aggregated(self.registry, core=path == "api")
            return web.Response(body=json.dumps(doc_agg).encode(),
                                headers={"Content-Type": discovery.AGGREGATED})
        if path == "api":
            return json_response(discovery.core_versions(request.host))
        if path == "apis":
            return json_response(discovery.group_list(self.registry))
        if path == "openapi/v3":
            return json_response(discovery.openapi_v3_root(self.registry))
        if path == "openapi/v2":
            doc_v2 = openapi_v2.document(self.registry)
            if "protobuf" in request.headers.get("Accept", ""):
                return web.Response(body=openapi_v2.encode(doc_v2),
                                    content_type=openapi_v2.PROTOBUF.replace("@", "."))
            return json_response(doc_v2)
        doc: Obj | None = None
        if path.startswith("openapi/v3/"):
            doc = discovery.openapi_v3_group(self.registry, path[len("openapi/v3/"):])
        elif segs[0] == "api" and len(segs) == 2:
            doc = discovery.resource_list(self.registry, "", segs[1])
        elif segs[0] == "apis" and len(segs) == 2:
            doc = discovery.group(self.registry, segs[1])
        elif segs[0] == "apis" and len(segs) == 3:
            doc = discovery.resource_list(self.registry, segs[1], segs[2])
        if doc is None:
            return self._not_found(segs)
        return json_response(doc)

    # verbs -------------------------------------------------------------------------------
    async def dispatch(self, request: web.Request, t: Target, verb: str) -> web.StreamResponse:
        dry_run = self._dry_run(request, verb)
        ns = t.namespace or ""
        rdef, version, w = t.rdef, t.version, self.writer
        if verb == "get":
            assert t.name is not None
            obj = w.get(rdef, ns, t.name)
            if t.subresource == "scale":
                return json_response(w.scale_of(rdef, version, obj))
            return self._single(request, t, obj)
        if verb == "list":
            return self.list_response(request, t)
        if verb == "watch":
            return await self.watch(request, t)
        if verb == "create":
            body = await self._body(request)
            self._check_kind(request, t, body, await request.read())
            self._check_crd_alive(t, body)
            created = w.create(rdef, version, ns, body, dry_run=dry_run)
            return json_response(w.render(rdef, version, created), 201)
        if verb == "deletecollection":
            return self.delete_collection(request, t, dry_run)
        assert t.name is not None
        if verb == "update":
            body = await self._body(request)
            if t.subresource != "scale":
                self._check_kind(request, t, body, await request.read())
            if t.subresource == "scale":
                return json_response(w.write_scale(rdef, version, ns, t.name, body,
                                                   dry_run=dry_run))
            obj = w.update(rdef, version, ns, t.name, body, subresource=t.subresource,
                           dry_run=dry_run)
            return json_response(w.render(rdef, version, obj))
        if verb == "patch":
            raw = await request.read()
            ctype = request.headers.get("Content-Type", "")
            if t.subresource == "scale":
                scale = w.scale_of(rdef, version, w.get(rdef, ns, t.name))
                new_scale = patch.apply(scale, raw, ctype, builtin=True)
                return json_response(w.write_scale(rdef, version, ns, t.name, new_scale,
                                                   dry_run=dry_run))
            obj = w.patch(rdef, version, ns, t.name, raw, ctype, subresource=t.subresource,
                          dry_run=dry_run)
            return json_response(w.render(rdef, version, obj))
        if verb == "delete":
            options = await self._body(request, optional=True)
            opts: Obj = dict(options) if isinstance(options, dict) else {}
            if opts.get("dryRun"):
                dry_run = self._dry_values(list(opts["dryRun"]), "DeleteOptions")
            for key in ("propagationPolicy", "orphanDependents"):
                if key in request.query and key not in opts:
                    value = request.query[key]
                    opts[key] = go_bool(value) if key == "orphanDependents" else value
            last = w.delete(rdef, ns, t.name, dry_run=dry_run, options=opts)
            return self._deleted(t, last, dry_run)
        raise ApiError(405, "the server does not allow this method on the requested resource",
                       reason="MethodNotAllowed", details={})

    def _single(self, request: web.Request, t: Target, obj: Obj) -> web.Response:
        rendered = self.writer.render(t.rdef, t.version, obj)
        if tables.wants_table(request.headers.get("Accept", "")):
            return json_response(tables.table(
                t.rdef, t.version, [rendered], resource_version=str(self.store.rv),
                include_object=request.query.get("includeObject", "")))
        return json_response(rendered)

    def _deleted(self, t: Target, last: Obj, dry_run: bool) -> web.Response:
        """What a DELETE answers: the object while it is still there (finalizers) or for the
        types that return it (Namespaces, Pods, Services...), else a Status."""
        meta = last["metadata"]
        still = self.store.get(t.rdef.key, meta.get("namespace", ""), meta["name"]) is not None
        if (still and not dry_run) or t.rdef.return_deleted or writes_terminating(last):
            return json_response(self.writer.render(t.rdef, t.version, last))
        return json_response({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": errors.details(meta["name"], t.rdef.group, t.rdef.plural,
                                      uid=meta.get("uid"))})

    def _check_kind(self, request: web.Request, t: Target, body: Any, raw: bytes) -> None:
        """A custom resource's body names its kind and apiVersion (they are how the
        unstructured decoder reads it); a built-in's may leave them out but not contradict."""
        if not isinstance(body, dict):
            return
        kind, api_version = body.get("kind"), body.get("apiVersion")
        expected = t.rdef.api_version(t.version)
        if t.rdef.builtin:
            if kind and kind != t.rdef.kind:
                version = str(api_version or expected).rsplit("/", 1)[-1]
                internal = (t.rdef.group or "core").split(".")[0]
                raise errors.bad_request(
                    f'{kind} in version "{version}" cannot be handled as a {t.rdef.kind}: '
                    f"converting ({version}.{kind}) to ({internal}.{t.rdef.kind}): unknown "
                    "conversion")
            return
        if not kind:
            text = raw.decode(errors="replace")
            summary = text if len(raw) <= 30 else raw[:30].decode(errors="replace") + " ..."
            raise errors.bad_request(
                f"the object provided is unrecognized (must be of type {t.rdef.kind}): Object "
                f"'Kind' is missing in '{text}' ({summary})")
        if api_version != expected:
            raise errors.bad_request(f"the API version in the data ({api_version or ''}) does "
                                     f"not match the expected API version ({expected})")
        if kind != t.rdef.kind:
            name = str((body.get("metadata") or {}).get("name", ""))
            raise errors.invalid(str(kind), t.rdef.group, name, [errors.cause(
                "FieldValueInvalid", "kind", f'Invalid value: "{kind}": must be {t.rdef.kind}')])

    def _check_crd_alive(self, t: Target, body: Any) -> None:
        if t.rdef.builtin:
            return
        crd = self.store.get(CRD_KEY, "", f"{t.rdef.plural}.{t.rdef.group}")
        if crd is not None and writes_terminating(crd):
            name = str(((body or {}).get("metadata") or {}).get("name", "")) \
                if isinstance(body, dict) else ""
            raise ApiError(403, f'{errors.qualified(t.rdef.plural, t.rdef.group)} "{name}" is '
                                "forbidden: create not allowed while custom resource definition "
                                "is terminating", reason="Forbidden",
                           details=errors.details(name, t.rdef.group, t.rdef.plural))

    def _matcher(self, request: web.Request, t: Target) -> selectors.Matcher:
        labels = selectors.parse_labels(request.query.get("labelSelector"))
        fields = selectors.parse_fields(request.query.get("fieldSelector"))
        defaults = ("metadata.name", "metadata.namespace")
        if not t.rdef.builtin:
            allowed: tuple[str, ...] | None = (*defaults, *(
                t.rdef.version(t.version) or t.rdef.storage_version).selectable_fields)
        else:
            allowed = t.rdef.field_labels
        for f in fields:
            if allowed is None and f.path not in defaults:
                raise errors.bad_request(
                    f'"{f.path}" is not a known field selector: only "metadata.name", '
                    '"metadata.namespace"')
            if allowed is not None and f.path not in allowed:
                raise errors.bad_request(f"field label not supported: {f.path}")
        return selectors.Matcher(labels, fields)

    def _list_options(self, request: web.Request, watching: bool) -> None:
        """ValidateListOptions: 422 for combinations kube-apiserver refuses."""
        q = request.query
        match = q.get("resourceVersionMatch", "")
        initial = q.get("sendInitialEvents")
        errs: list[Any] = []
        if watching:
            if initial is not None and match != "NotOlderThan":
                errs.append(fe.forbidden("resourceVersionMatch", "sendInitialEvents requires "
                                                                 "setting resourceVersionMatch to "
                                                                 "NotOlderThan"))
            if match:
                if initial is None:
                    errs.append(fe.forbidden("resourceVersionMatch", "resourceVersionMatch is "
                                             "forbidden for watch unless sendInitialEvents is "
                                             "provided"))
                if match != "NotOlderThan":
                    errs.append(fe.not_supported("resourceVersionMatch", match, ["NotOlderThan"]))
                if q.get("continue"):
                    errs.append(fe.forbidden("resourceVersionMatch", "resourceVersionMatch is "
                                             "forbidden when continue is provided"))
        else:
            if match:
                if not q.get("resourceVersion"):
                    errs.append(fe.forbidden("resourceVersionMatch", "resourceVersionMatch is "
                                             "forbidden unless resourceVersion is provided"))
                if q.get("continue"):
                    errs.append(fe.forbidden("resourceVersionMatch", "resourceVersionMatch is "
                                             "forbidden when continue is provided"))
                if match not in ("Exact", "NotOlderThan"):
                    errs.append(fe.not_supported("resourceVersionMatch", match,
                                                 ["Exact", "NotOlderThan", ""]))
                if match == "Exact" and q.get("resourceVersion") == "0":
                    errs.append(fe.forbidden("resourceVersionMatch", 'resourceVersionMatch '
                                             '"exact" is forbidden for resourceVersion "0"'))
            if initial is not None:
                errs.append(fe.forbidden("sendInitialEvents",
                                         "sendInitialEvents is forbidden for list"))
        if errs:
            raise errors.invalid("ListOptions", "meta.k8s.io", "", [e.cause() for e in errs])

    def list_response(self, request: web.Request, t: Target) -> web.Response:
        self._list_options(request, watching=False)
        matcher = self._matcher(request, t)
        q = request.query
        snapshot_rv: int | None = None
        after: tuple[str, str] | None = None
        if q.get("continue"):
            after, snapshot_rv = pagination.decode(q["continue"], t.namespace)
            if snapshot_rv < 0:  # "continue at the latest", offered after a 410
                snapshot_rv = None
        elif q.get("resourceVersionMatch") == "Exact":
            snapshot_rv = pagination.parse_rv(q.get("resourceVersion", ""))
        if snapshot_rv is None:
            rv_now = self.store.rv
            every = self.store.objects(t.rdef.key, t.namespace)
        else:
            snap = self.store.snapshot(t.rdef.key, snapshot_rv, t.namespace)
            if snap is None:
                raise pagination.expired(after, t.namespace) if after is not None else ApiError(
                    410, "The resourceVersion for the provided list is too old.",
                    reason="Expired")
            rv_now, every = snapshot_rv, snap
        objs = [o for o in every if matcher(o)]
        if after is not None:
            start = after
            objs = [o for o in objs if pagination.after(o, start)]
        limit = int(q.get("limit") or 0)
        next_token = ""
        remaining: int | None = None
        if limit > 0 and len(objs) > limit:
            if not q.get("labelSelector") and not q.get("fieldSelector"):
                remaining = len(objs) - limit
            objs = objs[:limit]
            next_token = pagination.encode(pagination.key(objs[-1]), t.namespace, rv_now)
        items = [self.writer.render(t.rdef, t.version, o) for o in objs]
        rv = str(rv_now)
        if tables.wants_table(request.headers.get("Accept", "")):
            return json_response(tables.table(
                t.rdef, t.version, items, resource_version=rv, continue_token=next_token,
                include_object=request.query.get("includeObject", "")))
        meta: Obj = {"resourceVersion": rv}
        if next_token:
            meta["continue"] = next_token
            if remaining is not None:
                meta["remainingItemCount"] = remaining
        return json_response({"kind": t.rdef.list_kind, "apiVersion":
                              t.rdef.api_version(t.version), "metadata": meta, "items": items})

    async def watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        self._list_options(request, watching=True)
        matcher = self._matcher(request, t)
        timeout = request.query.get("timeoutSeconds")
        initial = request.query.get("sendInitialEvents")
        since = request.query.get("resourceVersion")
        req = watch.WatchRequest(
            rdef=t.rdef, version=t.version, namespace=t.namespace, matches=matcher,
            since=since,
            initial_events=(go_bool(initial) if initial is not None
                            else since in (None, "", "0")),
            timeout=float(timeout) if timeout else None,
            bookmarks=go_bool(request.query.get("allowWatchBookmarks")),
            table=tables.wants_table(request.headers.get("Accept", "")),
            include_object=request.query.get("includeObject", ""),
        )
        return await watch.serve(request, req, store=self.store,
                                 bookmark_interval=self.bookmark_interval)

    def delete_collection(self, request: web.Request, t: Target, dry_run: bool) -> web.Response:
        matcher = self._matcher(request, t)
        deleted = []
        for o in self.store.objects(t.rdef.key, t.namespace):
            if matcher(o):
                meta = o["metadata"]
                last = self.writer.delete(t.rdef, meta.get("namespace", ""), meta["name"],
                                          dry_run=dry_run)
                deleted.append(self.writer.render(t.rdef, t.version, last))
        return json_response({"kind": t.rdef.list_kind,
                              "apiVersion": t.rdef.api_version(t.version),
                              "metadata": {"resourceVersion": str(self.store.rv)},
                              "items": deleted})

    # request parsing ---------------------------------------------------------------------
    @staticmethod
    def _dry_values(values: list[str], options_kind: str) -> bool:
        if any(v != "All" for v in values):
            raise errors.invalid(options_kind, "meta.k8s.io", "", [
                fe.not_supported("dryRun", GoJSON(go_json(values)), ["All"]).cause()])
        return bool(values)

    def _dry_run(self, request: web.Request, verb: str) -> bool:
        kind = {"create": "CreateOptions", "update": "UpdateOptions", "patch": "PatchOptions",
                "delete": "DeleteOptions", "deletecollection": "DeleteOptions"}.get(verb)
        if kind is None:
            return False
        return self._dry_values(request.query.getall("dryRun", []), kind)

    @staticmethod
    async def _body(request: web.Request, *, optional: bool = False) -> Any:
        raw = await request.read()
        if not raw:
            if optional:
                return None
            raise errors.bad_request("the body of the request was empty")
        ctype = request.headers.get("Content-Type", "application/json").split(";")[0].strip()
        try:
            if ctype in ("application/yaml", "application/x-yaml"):
                return yaml.safe_load(raw)
            if ctype not in ("application/json", "", "*/*", "text/plain"):
                raise ApiError(415, 'the body of the request was in an unknown format - '
                                    'accepted media types include: application/json, '
                                    'application/yaml', reason="UnsupportedMediaType")
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(f"error decoding request body: {exc}") from exc
