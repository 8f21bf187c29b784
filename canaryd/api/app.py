"""The aiohttp application of `canaryd serve`: health, metrics, OpenAPI, the rollout API and
the web dashboard (/ui/).

Middlewares, outermost first: the access log (method, path, status, duration, the token's
name, never the token) and the error renderer (every error is problem+json). Background
work (the token file watch, the hub's controller listener) starts and stops with the app
through `cleanup_ctx`; open event streams are told to end on shutdown so that a stopping
daemon does not wait for its followers.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Mapping

import structlog
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
)

from canaryd.api import events, liststream, openapi, problems, profiles, rollouts, ui
from canaryd.api.auth import TokenSource
from canaryd.api.body import MAX_BODY, too_large
from canaryd.api.context import IDENTITY, STATE, ApiState, Handler, Hub
from canaryd.api.deps import ApiDeps
from canaryd.api.problems import Problem
from canaryd.api.transport import Guard, HttpLimits

access_log = structlog.get_logger("canaryd.access")
log = structlog.get_logger("canaryd.api")
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
CLIENT_CLOSED = 499  # nginx's code for "client closed the request" (metrics and logs only)
OPENAPI: web.AppKey[bytes] = web.AppKey("canaryd_openapi", bytes)


class ApiMetrics:
    """Request counts and latencies per route template (bounded label values)."""

    def __init__(self, registry: CollectorRegistry, hub: Hub, guard: Guard) -> None:
        self.requests = Histogram(
            "canaryd_api_request_duration_seconds", "API request latency (streams: lifetime)",
            ["method", "route", "status"], registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 10),
        )
        self.streams = Gauge("canaryd_api_event_streams", "Open rollout event streams",
                             registry=registry)
        self.streams.set_function(lambda: float(hub.followers))
        self.connections = Gauge("canaryd_api_connections", "Open HTTP connections",
                                 registry=registry)
        self.connections.set_function(lambda: float(guard.open))
        self.decode_restarts = Gauge(
            "canaryd_api_decode_worker_restarts",
            "Decode worker pools killed after a document ran past its deadline",
            registry=registry)
        self.decode_restarts.set_function(lambda: float(guard.decode.workers.restarts))


API_METRICS: web.AppKey[ApiMetrics] = web.AppKey("canaryd_api_metrics", ApiMetrics)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(unmatched)"


@web.middleware
async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except (asyncio.CancelledError, ConnectionError):
        status = CLIENT_CLOSED  # the client went away: not a server error
        raise
    finally:
        elapsed = time.perf_counter() - started
        identity = request.get(IDENTITY)
        quiet = request.path in QUIET_PATHS or request.path.startswith("/ui/")  # probes, files
        emit = access_log.debug if quiet else access_log.info
        emit("http request", method=request.method, path=request.path, status=status,
             duration_ms=round(elapsed * 1000, 2),
             token_name=identity.name if identity is not None else None)
        request.app[API_METRICS].requests.labels(
            request.method, _route(request), str(status)).observe(elapsed)


def _undecodable_header(request: web.Request) -> str | None:
    """The first header whose value is not UTF-8 (aiohttp keeps such bytes as surrogates)."""
    for name, value in request.headers.items():
        if not value.isascii() and any("\udc80" <= ch <= "\udcff" for ch in value):
            return name
    return None


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        if (name := _undecodable_header(request)) is not None:
            raise problems.bad_parameter(name, "the header value is not UTF-8 text")
        return await handler(request)
    except Problem as problem:
        return problem.response(request.path)
    except web.HTTPRequestEntityTooLarge:
        return too_large(MAX_BODY).response(request.path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return Problem(exc.status, exc.reason, headers=headers).response(request.path)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error", method=request.method, path=request.path)
        return Problem(500, "Internal server error", "see the canaryd log").response(
            request.path)


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    deps = request.app[STATE].deps
    checks: dict[str, str] = {}
    checks["kubernetes"] = "ok" if deps.synced.is_set() else "rollout cache not synced"
    checks["prometheus"] = "ok" if await deps.prometheus_ready() else "unreachable"
    checks["config"] = "ok" if deps.settings.last_error is None else "last reload rejected"
    tokens = request.app[STATE].tokens
    checks["tokens"] = "ok" if tokens.last_error is None else "last reload rejected"
    ready = checks["kubernetes"] == "ok" and checks["prometheus"] == "ok"
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[STATE].deps.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


async def _background(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    stop = asyncio.Event()
    listeners = state.deps.listeners
    listeners.append(state.hub.notify)
    watcher = asyncio.create_task(state.tokens.watch(stop), name="api-token-watch")
    yield
    stop.set()
    state.hub.close()
    await asyncio.gather(watcher, return_exceptions=True)
    if state.hub.notify in listeners:
        listeners.remove(state.hub.notify)
    await state.guard.decode.aclose()


async def _closing(app: web.Application) -> None:
    app[STATE].hub.close()  # event streams end now, not after the shutdown timeout


def build_app(
    deps: ApiDeps, *, tokens_file: str | None = None, limits: HttpLimits | None = None,
    env: Mapping[str, str] | None = None, heartbeat: float = 15.0,
) -> web.Application:
    tokens = TokenSource(tokens_file, os.environ if env is None else env)
    if len(tokens.table) == 0:
        log.warning("no API tokens configured: every /api/v1 call will be refused (401)")
    app = web.Application(middlewares=[access, errors], client_max_size=MAX_BODY)
    app[STATE] = state = ApiState(deps=deps, tokens=tokens, heartbeat=heartbeat,
                                  guard=Guard(limits or HttpLimits()))
    app[API_METRICS] = ApiMetrics(deps.registry, state.hub, state.guard)
    app[OPENAPI] = json.dumps(openapi.document(), indent=2, sort_keys=True).encode()
    app.cleanup_ctx.append(_background)
    app.on_shutdown.append(_closing)
    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics)
    r.add_get("/api/v1/openapi.json", openapi_json)
    r.add_get("/api/v1/whoami", rollouts.whoami)
    r.add_get("/api/v1/profiles", profiles.list_profiles)
    r.add_get(rollouts.BASE, rollouts.list_rollouts)
    r.add_post(rollouts.BASE, rollouts.create)
    r.add_get(rollouts.BASE + "/{namespace}/{name}", rollouts.get)
    r.add_get(rollouts.BASE + "/{namespace}/{name}/events", events.events)
    r.add_get(rollouts.BASE + "/{namespace}/{name}/analysis", profiles.analysis)
    for action in rollouts.ACTION_PHASES:
        r.add_post(f"{rollouts.BASE}/{{namespace}}/{{name}}/{action}", rollouts.action(action))
    liststream.add_routes(app)
    ui.add_routes(app)
    return app
