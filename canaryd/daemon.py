"""`canaryd serve` assembled: Kubernetes client, settings, Prometheus client, controller, HTTP.

Dependencies are built here and passed down explicitly; nothing below reads globals.

Every replica serves the HTTP API and keeps the watch-fed rollout cache (the informer).
Only the replica holding the Lease runs the reconcile loop: on becoming leader it first
claims every active rollout (fencing writes prepared by a former leader), then reconciles
until it loses the Lease (stopped at once) or is told to stop.

With `shards` > 1 (`--shards N`) the targets are split over N shards, each led through its
own Lease (`canaryd.runtime.shards.ShardManager`); every replica runs the reconcile loop,
and each round drives only the rollouts of the shards this replica leads (a shard's
rollouts are claimed when it is taken). Without it, one leader drives everything, as above.

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
from canaryd.core import shards as core_shards
from canaryd.core.settings import Settings
from canaryd.runtime.controller import Controller
from canaryd.runtime.leader import LeaderElector, LeaseRef, LeaseTiming
from canaryd.runtime.metrics import DaemonMetrics
from canaryd.runtime.settings import SettingsHolder
from canaryd.runtime.shards import ShardManager

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
    shards: int = 1  # > 1: targets split over this many Leases (needs leader election)

    def __post_init__(self) -> None:
        try:
            core_shards.check_shards(self.shards)
        except ValueError as exc:
            raise ValueError(f"--shards: {exc}") from None
        if self.shards > 1:
            if not self.leader_election:
                raise ValueError("--shards: more than one shard needs leader election "
                                 "(--leader-elect)")
            try:
                core_shards.check_group(self.lease_name)
            except ValueError as exc:
                raise ValueError(f"--lease-name: {exc}") from None


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
        self.shards: ShardManager | None = None
        self.url: str | None = None
        self.started = asyncio.Event()  # serving: the controller and the API exist

    def may_write(self, namespace: str | None = None, target: str | None = None) -> bool:
        """The controller's leadership gate: without election, the one replica always may;
        one leader: while it leads (the key is ignored); sharded: while it leads the
        target's shard (without a key: any shard)."""
        if self.shards is not None:
            if namespace is None or target is None:
                return self.shards.leading_any()
            return self.shards.may_write(namespace, target)
        return self.elector is None or self.elector.is_leader()

    async def start(self) -> web.AppRunner:
        self.api = await make_api_client(self.options.kubeconfig)
        prom = self.settings().prometheus
        self.prometheus = PrometheusClient(
            prom.url, timeout=prom.timeout, retries=prom.retries,
            observe=self.metrics.observe_prometheus,
        )
        lease_namespace = self.options.lease_namespace or default_lease_namespace()
        if self.options.leader_election and self.options.shards > 1:
            self.shards = ShardManager(
                api=self.api, namespace=lease_namespace, lease_name=self.options.lease_name,
                identity=self.options.identity, shards=self.options.shards,
                timing=self.options.lease_timing, metrics=self.metrics,
                on_acquired=self._claim_shard)
        elif self.options.leader_election:
            lease = LeaseRef(lease_namespace, self.options.lease_name)
            self.elector = LeaderElector(api=self.api, lease=lease,
                                         identity=self.options.identity,
                                         timing=self.options.lease_timing)
        self.metrics.leader.set_function(lambda: 1.0 if self.may_write() else 0.0)
        self.controller = Controller(
            api=self.api, settings=self.settings, prometheus=self.prometheus,
            metrics=self.metrics, identity=self.options.identity, may_write=self.may_write,
            sharded=self.shards is not None,
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
        sharded = {"shards": self.options.shards} if self.shards else {}
        log.info("canaryd serving", url=self.url, identity=self.options.identity,
                 lease=str(self.elector.lease) if self.elector else None, **sharded)
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
            if self.shards is not None:
                await self.shards.release_all()
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
        if self.shards is not None:
            await self._drive_sharded(self.shards, controller)
            return
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

    async def _drive_sharded(self, shards: ShardManager, controller: Controller) -> None:
        """Take, keep and give up shards beside a reconcile loop gated per rollout. On
        stop: no new round; the one in flight may take `drain_timeout`; then every shard
        is released."""
        membership_stop = asyncio.Event()
        membership = asyncio.create_task(shards.run(membership_stop), name="shards")
        work = asyncio.create_task(controller.reconcile_loop(self.stop), name="reconcile")
        halt = asyncio.create_task(self.stop.wait())
        try:
            await aio.first(work, membership, halt)
            if self.stop.is_set() and not work.done():
                await aio.first(work, timeout=self.options.drain_timeout)
            if work.done() and not work.cancelled() and work.exception() is not None:
                log.error("reconcile loop crashed", error=repr(work.exception()))
        finally:
            for task in (work, halt):
                task.cancel()
            await asyncio.gather(work, halt, return_exceptions=True)
            membership_stop.set()  # releases every shard held
            await asyncio.gather(membership, return_exceptions=True)

    async def _claim_shard(self, shard: int) -> None:
        """A shard just taken: fence its rollouts' former writer (the claim), once the
        cache is synced."""
        controller, manager = self.controller, self.shards
        assert controller is not None and manager is not None
        await aio.first(controller.synced.wait(), self.stop.wait())
        if self.stop.is_set():
            return
        claimed = await controller.claim(
            lambda ns, target: manager.shard(ns, target) == shard and manager.holds(ns, target))
        log.info("shard taken: claimed its active rollouts", shard=shard, claimed=claimed)

    async def _work(self, controller: Controller, stop: asyncio.Event) -> None:
        await aio.first(controller.synced.wait(), stop.wait())
        if stop.is_set():
            return
        claimed = await controller.claim()
        log.info("leading: claimed active rollouts", claimed=claimed)
        await controller.reconcile_loop(stop)
