"""Fixtures for the sandbox-runner tests: real binaries, a scrape target, process checks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from .support import require_binary


@pytest.fixture
def prometheus_binary() -> str:
    return require_binary("prometheus")


@pytest.fixture
def kubectl_binary() -> str:
    return require_binary("kubectl")


@pytest.fixture
async def metrics_target() -> AsyncIterator[str]:
    """A loopback /metrics endpoint with one known gauge; yields its host:port."""

    async def metrics(_request: web.Request) -> web.Response:
        body = '# TYPE sandbox_test_gauge gauge\nsandbox_test_gauge{workload="w"} 42\n'
        return web.Response(text=body, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"{host}:{port}"
    finally:
        await runner.cleanup()
