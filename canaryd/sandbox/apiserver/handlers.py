"""HTTP routing for the Kubernetes REST API: parse the path, pick the verb, dispatch.

One catch-all route handles every `/api` and `/apis` URL generically through the
registry (no per-type handlers). Each resource request is audited as a
`RequestRecord` and passes through the fault knobs first.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from canaryd.sandbox.apiserver import (
    discovery,
    errors,
    openapi_v2,
    patch,
    selectors,
    tables,
    watch,
)
from canaryd.sandbox.apiserver.errors import ApiError, Obj
from canaryd.sandbox.apiserver.faults import Faults, RequestRecord
from canaryd.sandbox.apiserver.resources import Registry, ResourceDef
from canaryd.sandbox.apiserver.store import Store
from canaryd.sandbox.apiserver.writes import Writer


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
            failure = self.faults.failure_for(verb, target.rdef.plural)
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

    def non_resource(self, request: web.Request, segs: list[str]) -> web.Response:
        if request.method != "GET":
            raise errors.unknown_resource()
        path = "/".join(segs)
        if path == "version":
            return json_response(discovery.version_info())
        if path in ("healthz", "livez", "readyz"):
            return web.Response(text="ok")
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
            raise errors.unknown_resource()
        return json_response(doc)

    # verbs -------------------------------------------------------------------------------
    async def dispatch(self, request: web.Request, t: Target, verb: str) -> web.StreamResponse:
        dry_run = self._dry_run(request)
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
            created = w.create(rdef, version, ns, body, dry_run=dry_run)
            return json_response(w.render(rdef, version, created), 201)
        if verb == "deletecollection":
            return self.delete_collection(request, t, dry_run)
        assert t.name is not None
        if verb == "update":
            body = await self._body(request)
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
            if isinstance(options, dict) and options.get("dryRun"):
                dry_run = self._dry_values(list(options["dryRun"]))
            last = w.delete(rdef, ns, t.name, dry_run=dry_run,
                            options=options if isinstance(options, dict) else None)
            return json_response(w.render(rdef, version, last))
        raise ApiError(405, f"the server does not allow this method on the requested resource "
                            f"({request.method})", reason="MethodNotAllowed")

    def _single(self, request: web.Request, t: Target, obj: Obj) -> web.Response:
        rendered = self.writer.render(t.rdef, t.version, obj)
        if tables.wants_table(request.headers.get("Accept", "")):
            return json_response(tables.table(
                t.rdef, t.version, [rendered], resource_version=str(self.store.rv),
                include_object=request.query.get("includeObject", "")))
        return json_response(rendered)

    def _matcher(self, request: web.Request, t: Target) -> selectors.Matcher:
        labels = selectors.parse_labels(request.query.get("labelSelector"))
        fields = selectors.parse_fields(request.query.get("fieldSelector"))
        if not t.rdef.builtin:
            allowed = {"metadata.name", "metadata.namespace",
                       *(t.rdef.version(t.version) or t.rdef.storage_version).selectable_fields}
            for f in fields:
                if f.path not in allowed:
                    raise errors.bad_request(
                        f'"{f.path}" is not a known field selector: only "metadata.name", '
                        '"metadata.namespace"')
        return selectors.Matcher(labels, fields)

    def list_response(self, request: web.Request, t: Target) -> web.Response:
        matcher = self._matcher(request, t)
        objs = [o for o in self.store.objects(t.rdef.key, t.namespace) if matcher(o)]
        start = request.query.get("continue")
        if start:
            try:
                token = json.loads(base64.urlsafe_b64decode(start.encode()))
                after = (str(token["ns"]), str(token["name"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise ApiError(410, "The provided continue parameter is too old to display a "
                                    "consistent list result.", reason="Expired") from exc
            objs = [o for o in objs if (o["metadata"].get("namespace", ""),
                                        o["metadata"]["name"]) > after]
        limit = int(request.query.get("limit") or 0)
        next_token = ""
        remaining = 0
        if limit > 0 and len(objs) > limit:
            remaining = len(objs) - limit
            objs = objs[:limit]
            last = objs[-1]["metadata"]
            next_token = base64.urlsafe_b64encode(json.dumps(
                {"ns": last.get("namespace", ""), "name": last["name"]}).encode()).decode()
        items = [self.writer.render(t.rdef, t.version, o) for o in objs]
        rv = str(self.store.rv)
        if tables.wants_table(request.headers.get("Accept", "")):
            return json_response(tables.table(
                t.rdef, t.version, items, resource_version=rv, continue_token=next_token,
                include_object=request.query.get("includeObject", "")))
        meta: Obj = {"resourceVersion": rv}
        if next_token:
            meta["continue"] = next_token
            meta["remainingItemCount"] = remaining
        return json_response({"kind": t.rdef.list_kind, "apiVersion":
                              t.rdef.api_version(t.version), "metadata": meta, "items": items})

    async def watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        matcher = self._matcher(request, t)
        timeout = request.query.get("timeoutSeconds")
        req = watch.WatchRequest(
            rdef=t.rdef, version=t.version, namespace=t.namespace, matches=matcher,
            since=request.query.get("resourceVersion"),
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
    def _dry_values(values: list[str]) -> bool:
        for v in values:
            if v != "All":
                raise ApiError(422, f'dryRun: Unsupported value: "{v}": supported values: "All"',
                               details={"causes": [errors.cause(
                                   "FieldValueNotSupported", "dryRun",
                                   f'Unsupported value: "{v}": supported values: "All"')]})
        return bool(values)

    def _dry_run(self, request: web.Request) -> bool:
        return self._dry_values(request.query.getall("dryRun", []))

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
