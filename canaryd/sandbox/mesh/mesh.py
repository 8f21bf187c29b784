"""The I/O shell of the simulated mesh: watch the API, tick the traffic model, serve /metrics.

All routing and counting is pure (`topology`, `traffic`, `exporter`); this module only moves
data in and out. One task per watched resource keeps a snapshot current (list, then watch
from the list's resourceVersion; re-list after 410 or any error with bounded backoff). A
custom resource that is not installed lists as 404: it counts as synced-and-empty and is
listed again every `crd_retry` seconds, so CRDs may be created after the mesh starts. A tick
task recomputes routing when the snapshot changed and advances the model by the monotonic
time elapsed, so annotation and weight changes show within one tick plus watch latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from canaryd.sandbox.mesh import exporter, topology, traffic

ListCall = Callable[..., Awaitable[Any]]
_REQUEST_TIMEOUT = 10.0  # every list call; a hung API server must not stall a watcher
_WATCH_SECONDS = 30  # server-side watch timeout; the stream is resumed from the last rv
_MAX_DT = 10.0  # a stalled loop must not inject minutes of traffic in one tick


@dataclass(frozen=True)
class Resource:
    """A watched collection: snapshot field, and how to list it for each candidate version."""

    field: str
    group: str  # "" for the core API
    versions: tuple[str, ...]
    plural: str

    def call(self, api: client.ApiClient, version: str) -> ListCall:
        if not self.group:
            # Only Services are core; list them raw through the typed API.
            core: ListCall = client.CoreV1Api(api).list_service_for_all_namespaces
            return core
        custom = client.CustomObjectsApi(api)

        async def list_all(**kwargs: Any) -> Any:
            return await custom.list_cluster_custom_object(
                self.group, version, self.plural, **kwargs
            )

        # Watch.stream inspects the docstring for the watch parameter's name.
        list_all.__doc__ = custom.list_cluster_custom_object.__doc__
        return list_all


RESOURCES = (
    Resource("services", "", ("v1",), "services"),
    Resource("deployments", "apps", ("v1",), "deployments"),
    Resource("virtual_services", "networking.istio.io", ("v1", "v1beta1", "v1alpha3"),
             "virtualservices"),
    Resource("destination_rules", "networking.istio.io", ("v1", "v1beta1", "v1alpha3"),
             "destinationrules"),
    Resource("http_routes", "gateway.networking.k8s.io", ("v1", "v1beta1"), "httproutes"),
    Resource("http_routes", "policy.linkerd.io", ("v1beta3", "v1beta2", "v1beta1"), "httproutes"),
    Resource("traffic_splits", "split.smi-spec.io",
             ("v1alpha4", "v1alpha3", "v1alpha2", "v1alpha1"), "trafficsplits"),
)  # fmt: skip


class _NotInstalled(Exception):
    """No candidate version of a resource is served (its CRD is absent)."""


class Mesh:
    """A simulated service mesh fed by a Kubernetes API; see the package docstring."""

    def __init__(
        self,
        kubeconfig: str,
        tick: float = 0.25,
        seed: int | None = None,
        *,
        crd_retry: float = 1.0,
        max_backoff: float = 5.0,
        source_workload: str = exporter.UNKNOWN,
        source_namespace: str = exporter.UNKNOWN,
        logger: Any = None,
    ) -> None:
        self._kubeconfig = kubeconfig
        self._tick = tick
        self._crd_retry = crd_retry
        self._max_backoff = max_backoff
        self._log = logger if logger is not None else structlog.get_logger("canaryd.mesh")
        # A simulation, not cryptography: a seed makes runs reproducible.
        self._model = traffic.TrafficModel(rng=random.Random(seed))  # noqa: S311
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(
            exporter.MeshCollector(
                lambda: list(self._model.counters.values()),
                source_workload=source_workload,
                source_namespace=source_namespace,
            )
        )
        # Per watched resource (group/plural): objects by (namespace, name).
        self._store: dict[Resource, dict[tuple[str, str], dict[str, Any]]] = {
            r: {} for r in RESOURCES
        }
        self._synced: dict[Resource, asyncio.Event] = {r: asyncio.Event() for r in RESOURCES}
        self._changes = 0  # bumped on every store change; topology recomputed when it moves
        self._routes_at = -1
        self._routes: dict[tuple[str, str], topology.ServiceRoutes] = {}
        # Per watched resource: watch errors seen, the last one, and (re)lists done.
        self._watch_health: dict[Resource, dict[str, Any]] = {
            r: {"lists": 0, "events": 0, "errors": 0, "last_error": None} for r in RESOURCES
        }
        self._api: client.ApiClient | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.metrics_url = ""

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        configuration = client.Configuration()
        await config.load_kube_config(
            config_file=self._kubeconfig, client_configuration=configuration
        )
        self._api = client.ApiClient(configuration=configuration)
        app = web.Application()
        app.router.add_get("/metrics", self._handle_metrics)
        app.router.add_get("/healthz", self._handle_healthz)
        # Prometheus keeps its scrape connection open; don't wait a minute for it on stop.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.metrics_url = f"http://{bound_host}:{bound_port}/metrics"
        self._tasks = [asyncio.create_task(self._watch_forever(r)) for r in RESOURCES]
        self._tasks.append(asyncio.create_task(self._tick_forever()))
        self._log.info("mesh_started", metrics_url=self.metrics_url)

    # The interface takes a timeout like asyncio.wait_for does; callers need not nest one.
    async def wait_synced(self, timeout: float = 10) -> None:  # noqa: ASYNC109
        """Until every resource has been listed once (absent CRDs count as listed)."""
        async with asyncio.timeout(timeout):
            for event in self._synced.values():
                await event.wait()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._api is not None:
            await self._api.close()
            self._api = None

    async def __aenter__(self) -> Mesh:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    # -- inspection -------------------------------------------------------------------------

    def snapshot_routes(self) -> dict[str, Any]:
        """The routing currently applied, as plain JSON-able data keyed by "ns/name"."""
        self._refresh_routes()
        return {
            f"{ns}/{name}": {
                "rps": routes.rps,
                "via": routes.via,
                "flows": [_flow_json(flow) for flow in routes.flows],
            }
            for (ns, name), routes in sorted(self._routes.items())
        }

    def describe(self) -> dict[str, Any]:
        """What the mesh believes, for a failing test's report: each watch's health, the
        Deployments as last seen (replicas, availability, latency/error annotations) and the
        routes computed from them."""
        deployments = {}
        for res in RESOURCES:
            if res.field != "deployments":
                continue
            for (ns, name), obj in sorted(self._store[res].items()):
                meta, spec, status = (obj.get(k) or {} for k in ("metadata", "spec", "status"))
                deployments[f"{ns}/{name}"] = {
                    "generation": meta.get("generation"),
                    "observedGeneration": status.get("observedGeneration"),
                    "replicas": spec.get("replicas"),
                    "availableReplicas": status.get("availableReplicas"),
                    "annotations": {
                        k: v for k, v in (meta.get("annotations") or {}).items()
                        if k.startswith("sandbox.canaryd.io/")
                    },
                }
        return {
            "watches": {
                f"{r.plural}.{r.group or 'core'}": {
                    **self._watch_health[r], "synced": self._synced[r].is_set(),
                    "objects": len(self._store[r]),
                }
                for r in RESOURCES
            },
            "deployments": deployments,
            "routes": self.snapshot_routes(),
        }

    # -- ticking ----------------------------------------------------------------------------

    def _refresh_routes(self) -> None:
        if self._routes_at == self._changes:
            return
        snap = topology.Snapshot(
            **{
                field: tuple(
                    obj for r in RESOURCES if r.field == field for obj in self._store[r].values()
                )
                for field in {r.field for r in RESOURCES}
            }
        )
        self._routes = topology.compute_routes(snap)
        self._routes_at = self._changes

    async def _tick_forever(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self._tick)
            now = time.monotonic()
            dt, last = min(now - last, _MAX_DT), now
            try:
                self._refresh_routes()
                self._model.advance(self._routes.values(), dt)
            except Exception:  # one odd object must not stop the traffic
                self._log.exception("mesh_tick_failed")

    # -- watching ---------------------------------------------------------------------------

    async def _watch_forever(self, res: Resource) -> None:
        backoff = 0.2
        while True:
            try:
                version, rv = await self._relist(res)
                self._synced[res].set()
                backoff = 0.2
                await self._watch(res, version, rv)  # returns only on 410
            except _NotInstalled:
                self._synced[res].set()
                await asyncio.sleep(self._crd_retry)
            except (ApiException, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                health = self._watch_health[res]
                health["errors"] += 1
                health["last_error"] = f"{type(exc).__name__}: {exc}"[:300]
                self._log.warning(
                    "mesh_watch_error", resource=f"{res.plural}.{res.group}", error=str(exc)
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    async def _relist(self, res: Resource) -> tuple[str, str]:
        """Replace the resource's snapshot with a fresh list; returns (version, rv)."""
        assert self._api is not None
        for version in res.versions:
            resp = await res.call(self._api, version)(
                _preload_content=False, _request_timeout=_REQUEST_TIMEOUT
            )
            try:
                if resp.status == 404:
                    continue
                if resp.status != 200:
                    raise ApiException(status=resp.status, reason=await resp.text())
                body = json.loads(await resp.read())
            finally:
                resp.release()
            items = {_key(obj): obj for obj in body.get("items") or []}
            self._watch_health[res]["lists"] += 1
            self._replace(res, items)
            return version, str((body.get("metadata") or {}).get("resourceVersion") or "")
        self._replace(res, {})
        raise _NotInstalled(res.plural)

    async def _watch(self, res: Resource, version: str, rv: str) -> None:
        """Apply watch events from `rv` on; resume after server timeouts; return on 410."""
        assert self._api is not None
        while True:
            stream = watch.Watch(return_type="object")  # raw dicts: no model round trip
            try:
                async for event in stream.stream(
                    res.call(self._api, version),
                    resource_version=rv,
                    timeout_seconds=_WATCH_SECONDS,
                    allow_watch_bookmarks=True,
                    _request_timeout=(_REQUEST_TIMEOUT, _WATCH_SECONDS + _REQUEST_TIMEOUT),
                ):
                    self._watch_health[res]["events"] += 1
                    self._apply(res, str(event["type"]), event["raw_object"])
            except ApiException as exc:
                if exc.status == 410:
                    return
                raise
            finally:
                await stream.close()
            rv = stream.resource_version or rv

    def _apply(self, res: Resource, kind: str, obj: dict[str, Any]) -> None:
        if kind in ("ADDED", "MODIFIED"):
            self._store[res][_key(obj)] = obj
        elif kind == "DELETED":
            self._store[res].pop(_key(obj), None)
        else:
            return  # BOOKMARK: only moves the resourceVersion
        self._changes += 1

    def _replace(self, res: Resource, items: dict[tuple[str, str], dict[str, Any]]) -> None:
        if items != self._store[res]:
            self._store[res] = items
            self._changes += 1

    # -- HTTP ---------------------------------------------------------------------------------

    async def _handle_metrics(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _handle_healthz(self, _request: web.Request) -> web.Response:
        synced = all(event.is_set() for event in self._synced.values())
        return web.json_response({"ok": True, "synced": synced})


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _flow_json(flow: topology.Flow) -> dict[str, Any]:
    dest, wl = flow.destination, flow.workload
    out: dict[str, Any] = {
        "destination": f"{dest.namespace}/{dest.name}" if dest else None,
        "workload": f"{wl.namespace}/{wl.name}" if wl else None,
        "share": flow.share,
    }
    if wl is not None:
        out.update(error_ratio=wl.error_ratio, latency_p50_ms=wl.p50_ms, latency_p99_ms=wl.p99_ms)
    return out
