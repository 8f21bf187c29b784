"""`canaryd serve` assembled: Kubernetes client, settings, Prometheus client, controller, HTTP.

Dependencies are built here and passed down explicitly; nothing below reads globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from aiohttp import web
from kubernetes_asyncio import client

from canaryd.adapters.kube import make_api_client
from canaryd.adapters.prometheus import PrometheusClient
from canaryd.runtime.controller import Controller
from canaryd.runtime.metrics import DaemonMetrics
from canaryd.runtime.settings import SettingsHolder

log = structlog.get_logger("canaryd.daemon")


@dataclass
class DaemonOptions:
    config: Path | None
    kubeconfig: str | None = None
    host: str = "0.0.0.0"  # noqa: S104 (a pod serves on all its interfaces)
    port: int = 8080
    prometheus_url: str | None = None
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    tokens_file: str | None = None


class Daemon:
    def __init__(self, options: DaemonOptions) -> None:
        self.options = options
        self.settings = SettingsHolder(options.config)
        if options.prometheus_url:
            self.settings.current = self.settings.current.model_copy(update={
                "prometheus": self.settings.current.prometheus.model_copy(
                    update={"url": options.prometheus_url})
            })
        self.metrics = DaemonMetrics()
        self.stop = asyncio.Event()
        self.api: client.ApiClient | None = None
        self.controller: Controller | None = None
        self.prometheus: PrometheusClient | None = None
        self.url: str | None = None

    async def start(self) -> web.AppRunner:
        from canaryd.api.app import build_app

        self.api = await make_api_client(self.options.kubeconfig)
        prom = self.settings().prometheus
        self.prometheus = PrometheusClient(prom.url, timeout=prom.timeout, retries=prom.retries)
        self.controller = Controller(
            api=self.api, settings=self.settings, prometheus=self.prometheus,
            metrics=self.metrics, identity=self.options.identity,
        )
        app = build_app(self)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        # Bind the socket ourselves so port 0 works and the chosen port is known.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.options.host, self.options.port))
        site = web.SockSite(runner, sock)
        await site.start()
        self.url = f"http://{self.options.host}:{sock.getsockname()[1]}"
        return runner

    async def run(self) -> None:
        runner = await self.start()
        assert self.controller is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop.set)
        log.info("canaryd serving", url=self.url, identity=self.options.identity)
        print(f'{{"event": "ready", "url": "{self.url}"}}', flush=True)
        tasks = [
            asyncio.create_task(self.controller.run(self.stop), name="controller"),
            asyncio.create_task(self.settings.watch(self.stop), name="config-watch"),
        ]
        try:
            await self.stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await runner.cleanup()
            if self.api is not None:
                await self.api.close()
            log.info("canaryd stopped")
