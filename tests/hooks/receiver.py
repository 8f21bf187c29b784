"""A real HTTP receiver for hook calls and notifications: an aiohttp server in the test,
recording every request and answering as the test tells it to."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from canaryd.adapters.webhook import verify


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def signed_by(self, secret: bytes) -> bool:
        return verify(secret, self.headers.get("X-Canaryd-Timestamp", ""), self.body,
                      self.headers.get("X-Canaryd-Signature", ""), now=time.time())


@dataclass
class Receiver:
    url: str = ""
    calls: list[Call] = field(default_factory=list)
    # path -> (status, JSON body) answered; default 200 {}
    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)

    def to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()

    async def handle(request: web.Request) -> web.Response:
        rec.calls.append(Call(request.path, dict(request.headers), await request.read()))
        status, body = rec.answers.get(request.path, (200, {}))
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}"
    try:
        yield rec
    finally:
        await runner.cleanup()


def now(check: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    """A synchronous condition as a probe for `eventually`."""
    async def probe() -> Any:
        return check()
    return probe
