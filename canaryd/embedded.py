"""canaryd inside another program (the demo, `canaryd sandbox`, the tests): started around a
block, with its rollout cache synced before the block runs, and stopped, all its tasks
ended, after it. No signal handlers and nothing on stdout: the host program owns them.

`for_sandbox` is the daemon `canaryd sandbox` runs against its sandbox, with a fresh admin
token written (mode 0600) inside the sandbox's working directory, so that out of the box

    CANARYD_URL=<api_url> CANARYD_TOKEN=<token> canaryd submit -f config/examples/canary.yaml --wait

works.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
import yaml

from canaryd import aio
from canaryd.daemon import Daemon, DaemonOptions

if TYPE_CHECKING:
    from canaryd.sandbox.runner import Sandbox

log = structlog.get_logger("canaryd.embedded")
SHIPPED_CONFIG = Path(__file__).resolve().parents[1] / "config" / "canaryd.yaml"
ADMIN = "sandbox-admin"
STOP_TIMEOUT = 30.0


@contextlib.asynccontextmanager
async def embedded(
    options: DaemonOptions, *, timeout: float = 60.0  # noqa: ASYNC109 (start-up's bound)
) -> AsyncIterator[Daemon]:
    """The daemon running (serving, its cache synced) for the block; stopped after it. A
    daemon that fails to start raises its error here; one that fails while the block runs
    raises it on exit."""
    daemon = Daemon(options)
    task = asyncio.create_task(daemon.run(embedded=True), name=f"canaryd-{options.identity}")
    clean = False
    try:
        await aio.first(task, daemon.synced(), timeout=timeout)
        if task.done():
            task.result()  # start-up failed: its error
            raise RuntimeError("canaryd stopped while starting")
        if daemon.controller is None or not daemon.controller.synced.is_set():
            raise TimeoutError(f"canaryd did not sync its rollout cache in {timeout:g} s")
        yield daemon
        clean = True
    finally:
        daemon.stop.set()
        if clean:
            await asyncio.wait_for(task, timeout=STOP_TIMEOUT)
        else:  # the block's (or start-up's) error is the one to see
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True),
                                   timeout=STOP_TIMEOUT)


@dataclass(frozen=True)
class SandboxDaemon:
    url: str
    token: str
    daemon: Daemon


def _config(given: Path | None) -> Path:
    """The given config, else the repository's, else the copy shipped in the package."""
    if given is not None:
        return given
    if SHIPPED_CONFIG.is_file():
        return SHIPPED_CONFIG
    return Path(str(importlib.resources.files("canaryd").joinpath("data/canaryd.yaml")))


def _write_tokens(workdir: Path, token: str) -> Path:
    path = workdir / "canaryd-tokens.yaml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump([{"name": ADMIN, "role": "admin", "token": token}], f)
    return path


@contextlib.asynccontextmanager
async def for_sandbox(
    sandbox: Sandbox, *, config_path: Path | None = None
) -> AsyncIterator[SandboxDaemon]:
    """The daemon on 127.0.0.1 (a free port) against a started sandbox, the only replica
    (no leader election), reachable with a fresh admin token."""
    workdir = sandbox.workdir
    if workdir is None or sandbox.kubeconfig is None:
        raise RuntimeError("start the sandbox before its daemon")
    token = secrets.token_urlsafe(32)
    options = DaemonOptions(
        config=_config(config_path), kubeconfig=str(sandbox.kubeconfig),
        host="127.0.0.1", port=0, prometheus_url=sandbox.prometheus_url,
        identity="sandbox", tokens_file=str(_write_tokens(workdir, token)),
        leader_election=False,  # the only replica: it always leads
    )
    async with embedded(options) as daemon:
        assert daemon.url is not None
        log.info("sandbox.daemon.started", api_url=daemon.url)
        yield SandboxDaemon(url=daemon.url, token=token, daemon=daemon)
