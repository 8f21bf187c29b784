"""The aiohttp application: health, readiness and metrics (the rollout API mounts here too)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from canaryd.daemon import Daemon

DAEMON: web.AppKey[Daemon] = web.AppKey("daemon")


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    checks: dict[str, str] = {}
    controller = daemon.controller
    checks["kubernetes"] = "ok" if controller is not None and controller.synced.is_set() else (
        "rollout cache not synced"
    )
    prom_ok = daemon.prometheus is not None and await daemon.prometheus.ready()
    checks["prometheus"] = "ok" if prom_ok else "unreachable"
    checks["config"] = "ok" if daemon.settings.last_error is None else "last reload rejected"
    ready = checks["kubernetes"] == "ok" and checks["prometheus"] == "ok"
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[DAEMON].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(daemon: Daemon) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[DAEMON] = daemon
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
