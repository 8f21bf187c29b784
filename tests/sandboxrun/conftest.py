"""Fixtures for the sandbox-runner tests: real binaries, a scrape target, process checks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from canaryd.sandbox.testing import serving

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
    async with serving(app) as (host, port):
        yield f"{host}:{port}"
