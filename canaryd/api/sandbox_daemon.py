"""Run canaryd (controller + API) in-process against a running sandbox, with an admin token.

`canaryd sandbox` uses this so that, out of the box,

    CANARYD_URL=<api_url> CANARYD_TOKEN=<token> canaryd submit -f config/examples/canary.yaml --wait

works. The token is generated per run and written, with mode 0600, inside the sandbox's own
working directory (removed with it).
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

from canaryd.daemon import Daemon, DaemonOptions

if TYPE_CHECKING:
    from canaryd.sandbox.runner import Sandbox

log = structlog.get_logger("canaryd.sandbox")
SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "config" / "canaryd.yaml"
ADMIN = "sandbox-admin"


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
async def run_daemon_for_sandbox(
    sandbox: Sandbox, *, config_path: Path | None = None
) -> AsyncIterator[SandboxDaemon]:
    """Start the daemon on 127.0.0.1 (a free port); stop it, and its tasks, on exit.

    No signal handlers are installed: the sandbox command owns SIGINT/SIGTERM."""
    workdir = sandbox.workdir
    if workdir is None or sandbox.kubeconfig is None:
        raise RuntimeError("start the sandbox before its daemon")
    token = secrets.token_urlsafe(32)
    daemon = Daemon(DaemonOptions(
        config=_config(config_path), kubeconfig=str(sandbox.kubeconfig),
        host="127.0.0.1", port=0, prometheus_url=sandbox.prometheus_url,
        identity="sandbox", tokens_file=str(_write_tokens(workdir, token)),
        leader_election=False,  # the only replica: it always leads
    ))
    task = asyncio.create_task(daemon.run(embedded=True), name="sandbox-daemon")
    try:
        while daemon.controller is None or not daemon.controller.synced.is_set():
            if task.done():
                task.result()  # start-up failed: raise its error
            await asyncio.sleep(0.05)
        assert daemon.url is not None
        log.info("sandbox.daemon.started", api_url=daemon.url)
        yield SandboxDaemon(url=daemon.url, token=token, daemon=daemon)
    finally:
        daemon.stop.set()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), timeout=30)
