"""`ApiServer`: wires store, registry, controllers and HTTP together and runs them.

Besides the Kubernetes API it serves test knobs under `/sandbox/` (not a Kubernetes
prefix), so a server in another process can be driven over HTTP:
`POST /sandbox/faults` (`{"fail_next": {...}}`, `{"latency": {...}}` or `{"clear": true}`),
`POST /sandbox/compact`, `POST /sandbox/drop-watches`, `GET /sandbox/requests`.

Authentication is optional: the kubeconfig carries a bearer token, and requests are
accepted with or without it (any token is accepted).
"""

from __future__ import annotations

import asyncio
import json
import os
import traceback
from collections.abc import Awaitable, Callable

import yaml
from aiohttp import web

from canaryd.sandbox.apiserver import resources, writes
from canaryd.sandbox.apiserver.controllers import DeploymentController
from canaryd.sandbox.apiserver.errors import ApiError, Obj
from canaryd.sandbox.apiserver.faults import Faults, RequestRecord
from canaryd.sandbox.apiserver.handlers import Api, json_response
from canaryd.sandbox.apiserver.jobs import JobController
from canaryd.sandbox.apiserver.lifecycle import Lifecycle
from canaryd.sandbox.apiserver.store import Store

# A fixed, public test credential: the server accepts requests with or without it.
TOKEN = "sandbox-token"  # noqa: S105
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiServer:
    def __init__(self, *, deployment_ready_delay: float = 0.5, bookmark_interval: float = 5.0,
                 history_limit: int = 5000, job_run_delay: float = 1.0) -> None:
        self.store = Store(history_limit=history_limit)
        self.registry = resources.Registry()
        for rdef in resources.builtin_resources():
            self.registry.add(rdef)
        self.writer = writes.Writer(store=self.store, registry=self.registry)
        self.faults = Faults(_dropper=self.store.drop_watches)
        self.requests: list[RequestRecord] = []
        self.lifecycle = Lifecycle(store=self.store, registry=self.registry, writer=self.writer)
        self.controller = DeploymentController(
            store=self.store, registry=self.registry, writer=self.writer,
            delay=deployment_ready_delay)
        self.jobs = JobController(store=self.store, registry=self.registry, writer=self.writer,
                                  delay=job_run_delay)
        self.api = Api(store=self.store, registry=self.registry, writer=self.writer,
                       faults=self.faults, audit=self.requests,
                       bookmark_interval=bookmark_interval)
        self.url = ""
        self._runner: web.AppRunner | None = None
        ns = self.registry.get(writes.NS_KEY)
        assert ns is not None
        for name in ("default", "kube-system", "kube-public"):
            self.writer.create(ns, "v1", "", {"metadata": {"name": name}}, dry_run=False)

    # lifecycle ---------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application(middlewares=[self._errors], client_max_size=16 * 1024 * 1024)
        app.router.add_route("GET", "/sandbox/requests", self._get_requests)
        app.router.add_route("POST", "/sandbox/faults", self._post_faults)
        app.router.add_route("POST", "/sandbox/compact", self._post_compact)
        app.router.add_route("POST", "/sandbox/drop-watches", self._post_drop)
        app.router.add_route("*", "/{tail:.*}", self.api.handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        assert isinstance(server, asyncio.Server)
        bound = server.sockets[0].getsockname()[1]
        self.url = f"http://{host}:{bound}"

    async def stop(self) -> None:
        self.controller.stop()
        self.jobs.stop()
        self.lifecycle.stop()
        self.store.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # knobs -------------------------------------------------------------------------------
    def compact(self) -> None:
        self.store.compact()

    def write_kubeconfig(self, path: str | os.PathLike[str]) -> None:
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "sandbox", "cluster": {"server": self.url}}],
            "users": [{"name": "sandbox", "user": {"token": TOKEN}}],
            "contexts": [{"name": "sandbox", "context": {
                "cluster": "sandbox", "user": "sandbox", "namespace": "default"}}],
            "current-context": "sandbox",
        }
        with open(path, "w", encoding="utf-8") as fh:
            yaml.safe_dump(config, fh, sort_keys=False)

    # HTTP plumbing -----------------------------------------------------------------------
    @web.middleware
    async def _errors(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return json_response(exc.status(), exc.code, exc.headers)
        except web.HTTPException:
            raise
        except Exception as exc:  # every failure must still be a Status
            traceback.print_exc()
            err = ApiError(500, f"Internal error occurred: {exc}")
            return json_response(err.status(), 500)

    async def _get_requests(self, request: web.Request) -> web.Response:
        return json_response({"items": [r.to_json() for r in self.requests]})

    async def _post_faults(self, request: web.Request) -> web.Response:
        try:
            body: Obj = json.loads(await request.read() or b"{}")
            if body.get("clear"):
                self.faults.clear()
            if "fail_next" in body:
                f = body["fail_next"]
                self.faults.fail_next(int(f["count"]), int(f["status"]), verb=f.get("verb"),
                                      resource=f.get("resource"),
                                      retry_after=f.get("retry_after"),
                                      subresource=f.get("subresource"), name=f.get("name"))
            if "latency" in body:
                lat = body["latency"]
                self.faults.set_latency(float(lat["seconds"]), verb=lat.get("verb"),
                                        resource=lat.get("resource"))
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(400, f"bad fault request: {exc}") from exc
        return json_response({"ok": True})

    async def _post_compact(self, request: web.Request) -> web.Response:
        self.compact()
        return json_response({"ok": True, "resourceVersion": str(self.store.rv)})

    async def _post_drop(self, request: web.Request) -> web.Response:
        return json_response({"dropped": self.faults.drop_watches()})
