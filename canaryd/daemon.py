"""`canaryd serve` assembled: Kubernetes client, settings, Prometheus client, controller, HTTP.

Dependencies are built here and passed down explicitly; nothing below reads globals.

Every replica serves the HTTP API and keeps the watch-fed rollout cache (the informer).
Only the replica holding the Lease runs the reconcile loop: on becoming leader it first
claims every active rollout (fencing writes prepared by a former leader), then reconciles
until it loses the Lease (stopped at once) or is told to stop.

Shutdown (SIGTERM or SIGINT): no new round starts; the round in flight may finish within
`drain_timeout` (its writes stay behind the leadership gate and resourceVersion fences);
then the Lease is released so another replica takes over at its next retry, and the process
exits. With the defaults (10 s drain, at most 5 s for the release, 3 s to close the HTTP
server's open connections) that is within 20 s, inside the Deployment's 30 s termination
grace period.
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

from canaryd import aio
from canaryd.adapters.kube import make_api_client
from canaryd.adapters.prometheus import PrometheusClient
from canaryd.api.app import build_app
from canaryd.api.context import STATE
from canaryd.api.deps import ApiDeps
from canaryd.api.transport import GuardedSite, HttpLimits
from canaryd.api.writer import RolloutWriter
from canaryd.core.settings import Settings
from canaryd.runtime.controller import Controller
from canaryd.runtime.leader import LeaderElector, LeaseRef, LeaseTiming
from canaryd.runtime.metrics import DaemonMetrics
from canaryd.runtime.settings import SettingsHolder

log = structlog.get_logger("canaryd.daemon")
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_LEASE_NAME = "canaryd-leader"
HTTP_SHUTDOWN_TIMEOUT = 3.0


def default_lease_namespace(sa_file: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """The pod's own namespace in a cluster, `default` elsewhere."""
    try:
        return sa_file.read_text(encoding="utf-8").strip() or "default"
    except OSError:
        return "default"


@dataclass
class DaemonOptions:
    config: Path | None
    kubeconfig: str | None = None
    host: str = "0.0.0.0"  # noqa: S104 (a pod serves on all its interfaces)
    port: int = 8080
    prometheus_url: str | None = None
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    tokens_file: str | None = None
    leader_election: bool = True
    lease_namespace: str | None = None  # None: default_lease_namespace()
    lease_name: str = DEFAULT_LEASE_NAME
    lease_timing: LeaseTiming = field(default_factory=LeaseTiming)
    drain_timeout: float = 10.0
    http_limits: HttpLimits = field(default_factory=HttpLimits.from_env)


class PinnedSettings(SettingsHolder):
    """Settings that follow the file, with command-line overrides kept across reloads."""

    def __init__(self, path: Path | None, *, prometheus_url: str | None = None) -> None:
        self.prometheus_url = prometheus_url  # set before the base class loads the file
        super().__init__(path)

    def adjust(self, settings: Settings) -> Settings:
        if not self.prometheus_url:
            return settings
        return settings.model_copy(update={
            "prometheus": settings.prometheus.model_copy(update={"url": self.prometheus_url})
        })


class Daemon:
    def __init__(self, options: DaemonOptions) -> None:
        self.options = options
        self.settings: SettingsHolder = PinnedSettings(
            options.config, prometheus_url=options.prometheus_url
        )
        self.metrics = DaemonMetrics()
        self.stop = asyncio.Event()
        self.api: client.ApiClient | None = None
        self.controller: Controller | None = None
        self.prometheus: PrometheusClient | None = None
        self.elector: LeaderElector | None = None
        self.url: str | None = None
        self.started = asyncio.Event()  # serving: the controller and the API exist

    def may_write(self) -> bool:
        """The controller's leadership gate: without election, the one replica always may."""
        return self.elector is None or self.elector.is_leader()

    async def start(self) -> web.AppRunner:
        self.api = await make_api_client(self.options.kubeconfig)
        prom = self.settings().prometheus
        self.prometheus = PrometheusClient(
            prom.url, timeout=prom.timeout, retries=prom.retries,
            observe=self.metrics.observe_prometheus,
        )
        if self.options.leader_election:
            lease = LeaseRef(self.options.lease_namespace or default_lease_namespace(),
                             self.options.lease_name)
            self.elector = LeaderElector(api=self.api, lease=lease,
                                         identity=self.options.identity,
                                         timing=self.options.lease_timing)
        self.metrics.leader.set_function(lambda: 1.0 if self.may_write() else 0.0)
        self.controller = Controller(
            api=self.api, settings=self.settings, prometheus=self.prometheus,
            metrics=self.metrics, identity=self.options.identity, may_write=self.may_write,
        )
        app = build_app(ApiDeps(
            cache=self.controller.cache, synced=self.controller.synced,
            listeners=self.controller.listeners, settings=self.settings,
            writer=RolloutWriter(self.api), registry=self.metrics.registry,
            prometheus_ready=self.prometheus.ready,
        ), tokens_file=self.options.tokens_file, limits=self.options.http_limits)
        # Bounded: open event streams must not hold a stopping replica past its grace period.
        # handler_cancellation: a client that goes away ends its handler at once (an event
        # stream frees its slot now, not at its next heartbeat write).
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT,
                               handler_cancellation=True)
        await runner.setup()
        # Bind the socket ourselves so port 0 works and the chosen port is known.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.options.host, self.options.port))
        site = GuardedSite(runner, sock, app[STATE].guard)
        await site.start()
        self.url = f"http://{self.options.host}:{sock.getsockname()[1]}"
        self.started.set()
        return runner

    async def synced(self) -> None:
        """Until the daemon serves and its rollout cache is synced."""
        await self.started.wait()
        assert self.controller is not None
        await self.controller.synced.wait()

    async def run(self, *, embedded: bool = False) -> None:
        """Serve until `stop` is set. `embedded`: inside another program (the sandbox, the
        demo, tests), which owns the signals and stdout."""
        runner = await self.start()
        assert self.controller is not None
        if not embedded:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self.stop.set)
        log.info("canaryd serving", url=self.url, identity=self.options.identity,
                 lease=str(self.elector.lease) if self.elector else None)
        if not embedded:
            print(f'{{"event": "ready", "url": "{self.url}"}}', flush=True)
        # The informer gets its own stop: it keeps the cache fresh while the last round drains.
        informer_stop = asyncio.Event()
        tasks = [
            asyncio.create_task(self.controller.informer(informer_stop), name="informer"),
            asyncio.create_task(self.settings.watch(self.stop), name="config-watch"),
        ]
        drive = asyncio.create_task(self._drive(), name="drive")
        try:
            await self.stop.wait()
            log.info("stopping", drain_timeout=self.options.drain_timeout)
            # _drive ends by itself once the round in flight is done and the Lease released;
            # the bound covers a hung release too.
            budget = self.options.drain_timeout + self.options.lease_timing.renew_deadline / 2
            await asyncio.wait({drive}, timeout=budget + 1.0)
        finally:
            informer_stop.set()
            for task in (*tasks, drive):
                task.cancel()
            await asyncio.gather(*tasks, drive, return_exceptions=True)
            if self.elector is not None and self.elector.is_leader():
                await self.elector.release()
            await self.controller.hooks.close()
            await runner.cleanup()
            if self.api is not None:
                await self.api.close()
            log.info("canaryd stopped")

    # ------------------------------------------------------------------ leadership

    async def _drive(self) -> None:
        """Reconcile while this replica may: always without election, else while leading."""
        controller = self.controller
        assert controller is not None
        if self.elector is None:
            await controller.reconcile_loop(self.stop)
            return
        while not self.stop.is_set():
            if not await self.elector.acquire(self.stop):
                return
            await self._lead(self.elector, controller)

    async def _lead(self, elector: LeaderElector, controller: Controller) -> None:
        """One term as leader: renew the Lease and reconcile, until it is lost or we stop."""
        work_stop = asyncio.Event()
        renew_stop = asyncio.Event()
        renew = asyncio.create_task(elector.hold(renew_stop), name="lease-renew")
        work = asyncio.create_task(self._work(controller, work_stop), name="reconcile")
        halt = asyncio.create_task(self.stop.wait())
        try:
            await aio.first(renew, work, halt)
            if self.stop.is_set() and not work.done() and not renew.done():
                # Stop starting rounds; the one in flight finishes unless it takes too long
                # or the Lease is lost meanwhile. Renewal goes on until then.
                work_stop.set()
                await aio.first(renew, work, timeout=self.options.drain_timeout)
        finally:
            # Leadership lost, drained, or out of time: nothing of this term keeps running.
            work_stop.set()
            for task in (work, halt):
                task.cancel()
            await asyncio.gather(work, halt, return_exceptions=True)
            renew_stop.set()
            await asyncio.gather(renew, return_exceptions=True)
        if work.done() and not work.cancelled() and work.exception() is not None:
            log.error("reconcile loop crashed; stepping down", error=repr(work.exception()))
        if self.stop.is_set() or (work.done() and not work.cancelled()):
            await elector.release()
            if not self.stop.is_set():
                # A crashed loop: give another replica the first chance.
                await aio.sleep_or_stop(self.stop, elector.timing.retry_period * 2)

    async def _work(self, controller: Controller, stop: asyncio.Event) -> None:
        await aio.first(controller.synced.wait(), stop.wait())
        if stop.is_set():
            return
        claimed = await controller.claim()
        log.info("leading: claimed active rollouts", claimed=claimed)
        await controller.reconcile_loop(stop)
