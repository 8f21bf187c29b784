"""Helpers for tests against the sandbox, shipped with the package (like structlog.testing).

Tests wait on conditions, never on a hope: `eventually` polls a probe until it holds and
fails with what it was waiting for, and the last thing it saw, at the deadline. The test
fixtures are made of the rest and of `async with ApiServer(...)` (the emulator on a
loopback port): `kube_client` (a client through a kubeconfig, with CRDs and namespaces
made) and `serving` (an aiohttp app on loopback, for a stand-in endpoint a test needs).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from aiohttp import web
from kubernetes_asyncio import client, config

if TYPE_CHECKING:
    from canaryd.sandbox.apiserver import ApiServer

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float,  # noqa: ASYNC109 (the deadline is the point of this helper)
    what: str = "the condition",
    every: float = 0.1,
    tolerate: tuple[type[BaseException], ...] = (),
) -> T:
    """The first truthy result of `probe`. Exceptions listed in `tolerate` count as "not
    yet"; at the deadline, AssertionError names `what` and the last result or error."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = await probe()
        except tolerate as exc:
            result, last = None, exc
        else:
            last = result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")
        await asyncio.sleep(every)


@contextlib.asynccontextmanager
async def kube_client(
    server: ApiServer, directory: Path, *, crds: Sequence[Path] = (),
    namespaces: Sequence[str] = (),
) -> AsyncIterator[client.ApiClient]:
    """A kubernetes_asyncio client of `server`, through a kubeconfig written in `directory`:
    the same path kubectl and canaryd take. `crds` are installed (and served) and
    `namespaces` created first."""
    from canaryd.sandbox.runner import install_crds

    path = directory / "kubeconfig"
    server.write_kubeconfig(path)
    api = await config.new_client_from_config(config_file=str(path))
    try:
        if crds:
            await install_crds(api, list(crds))
        for name in namespaces:
            await client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
        yield api
    finally:
        await api.close()


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[tuple[str, int]]:
    """`app` served on a loopback port; yields (host, port)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield str(host), int(port)
    finally:
        await runner.cleanup()
