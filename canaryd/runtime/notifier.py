"""Notifications, off the reconcile loop: the leader tells people what happened and why.

Every rollout change (the informer's listener) and a periodic sweep compute the notices
status holds beyond what each routed receiver was sent (status.notified: receiver -> seq).
Each receiver has its own bounded queue and worker: a slow or dead receiver delays nobody
else, and never a rollout. A delivery is retried (tenacity, bounded, with backoff); once it
is delivered, or given up on (logged, counted in /metrics), the receiver's seq is written to
status, fenced by resourceVersion, so a new leader sends what the old one had not, and
nothing twice. Only the leader sends: the notifier runs beside the reconcile loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from canaryd.adapters import notify as render
from canaryd.adapters import webhook
from canaryd.adapters.errors import Conflict, KubeError, NotFound
from canaryd.adapters.kube import ObjectRef, RolloutStore
from canaryd.core import reading
from canaryd.core.hooksettings import EVENTS, Notifications, Receiver
from canaryd.core.model import RolloutStatus
from canaryd.core.notices import Notice, notices
from canaryd.core.reading import StatusRead
from canaryd.core.settings import Settings
from canaryd.runtime.cache import RolloutCache

log = structlog.get_logger("canaryd.notify")
SWEEP = 2.0  # seconds between sweeps of every cached rollout
WATERMARK_TRIES = 5
FETCH_TIMEOUT = 10.0  # reading a summarised finished rollout whole


@dataclass(frozen=True)
class Delivery:
    key: str
    receiver: str
    notice: Notice


class Notifier:
    def __init__(
        self, *, settings: Callable[[], Settings], cache: RolloutCache, store: RolloutStore,
        may_write: Callable[[str], bool], registry: CollectorRegistry | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings, self.cache, self.store = settings, cache, store
        self.may_write, self.clock = may_write, clock
        self._queues: dict[str, asyncio.Queue[Delivery]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._queued: dict[tuple[str, str], int] = {}  # (rollout, receiver) -> seq queued
        # rollout -> the resourceVersion last swept (and the config it was swept with): an
        # unchanged object has nothing new to tell
        self._swept: dict[str, str] = {}
        self._swept_with: object = None
        # the configuration `owes` last judged by, and the cache's put count then: a
        # rollout summarised before it was judged by an older one
        self._judged_with: object = None
        self._judged_from = 0
        self._fetching: set[str] = set()
        self._wake = asyncio.Event()
        self._session: webhook.Guarded | None = None
        self._policy: webhook.AddressPolicy | None = None
        self.sent = Counter("canaryd_notifications", "Notifications by receiver and outcome "
                            "(sent, failed: given up after retries, dropped: queue full)",
                            ["receiver", "outcome"], registry=registry)
        self.up = Gauge("canaryd_notification_receiver_up", "0 after a delivery to the "
                        "receiver was given up on, 1 after one succeeded", ["receiver"],
                        registry=registry)
        self.depth = Gauge("canaryd_notification_queue", "Notifications waiting per "
                           "receiver", ["receiver"], registry=registry)

    def changed(self, kind: str, obj: dict[str, Any]) -> None:
        """The informer's listener: look at the rollouts soon."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep and deliver until `stop` (the leader's term) ends; what is queued then is
        left to the next leader (status says it was not sent)."""
        try:
            while not stop.is_set():
                self.sweep(self.may_write)
                self._wake.clear()
                waits = {asyncio.ensure_future(self._wake.wait()),
                         asyncio.ensure_future(stop.wait())}
                await asyncio.wait(waits, timeout=SWEEP, return_when=asyncio.FIRST_COMPLETED)
                for w in waits:
                    w.cancel()
        finally:
            # Shielded: a second cancellation (the leader's term ending) must not leave the
            # HTTP session open.
            await asyncio.shield(asyncio.ensure_future(self.close()))

    # ------------------------------------------------------------------ what to send

    def _owed(self, meta: dict[str, Any], spec: dict[str, Any], status: RolloutStatus,
              conf: Notifications) -> Iterator[Delivery]:
        """What is still to be sent of one rollout's notices (queued ones included)."""
        receivers = {r.name for r in conf.receivers}
        horizon = self.clock() - timedelta(seconds=conf.backfill)
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        for notice in notices(meta, spec, status):
            for name in conf.receivers_for(notice.namespace, notice.target, notice.event):
                if name not in receivers:
                    continue
                told = status.notified.get(name)
                if told is not None and notice.seq <= told:
                    continue
                if told is None and notice.time < horizon:
                    continue  # from before this receiver was told about the rollout
                yield Delivery(key, name, notice)

    def _note(self, conf: Notifications) -> None:
        """Remember when (in cache puts) this configuration came into force."""
        if conf is not self._judged_with:
            self._judged_with, self._judged_from = conf, self.cache.puts

    def owes(self, obj: Mapping[str, Any], read: StatusRead) -> bool:
        """Whether a notice of `obj` is still to be sent: the cache keeps it whole until
        then (on every replica, leading or not)."""
        conf = self.settings().notifications
        self._note(conf)
        if not conf.receivers or read.status is None:
            return False
        meta, spec = obj.get("metadata"), obj.get("spec")
        if not isinstance(meta, dict) or not isinstance(spec, dict):
            return False
        return next(self._owed(meta, spec, read.status, conf), None) is not None

    def _maybe_owed(self, obj: dict[str, Any], status: RolloutStatus,
                    conf: Notifications) -> bool:
        """A summarised rollout (nothing was owed under the configuration it was cached
        under), under a newer one: whether its whole object could owe a notice (a routed
        receiver told some of it, or never told of it and it finished within backfill)."""
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        assert isinstance(spec, dict)
        ns, target = str(obj["metadata"].get("namespace")), str(spec.get("target", ""))
        routed = {n for event in EVENTS for n in conf.receivers_for(ns, target, event)}
        horizon = self.clock() - timedelta(seconds=conf.backfill)
        for name in routed & {r.name for r in conf.receivers}:
            told = status.notified.get(name)
            if told is not None and told < status.sequence:
                return True
            if told is None and (status.phase_started_at is None
                                 or status.phase_started_at >= horizon):
                return True
        return False

    async def _fetch(self, key: str, rv: str) -> None:
        """Read a summarised rollout whole; if it is still that version and owes a notice,
        cache it whole (`owes` keeps it so) and sweep it again."""
        namespace, name = key.split("/", 1)
        try:
            async with asyncio.timeout(FETCH_TIMEOUT):
                obj = await self.store.get(ObjectRef(namespace, name))
        except NotFound:
            return  # deleted: the watch brings it
        except (TimeoutError, KubeError) as exc:
            log.warning("finished rollout not read for notifications", rollout=key,
                        error=f"{type(exc).__name__}: {exc}"[:200])
            self._swept.pop(key, None)  # tried again at the next sweep
            return
        finally:
            self._fetching.discard(key)
        cached = self.cache.get(key)
        if (str(obj["metadata"].get("resourceVersion")) != rv or cached is None
                or str(cached["metadata"].get("resourceVersion")) != rv):
            return  # changed since: the watch brings the change, judged as it is cached
        self.cache.put(obj)
        if self.cache.whole(key):
            self._swept.pop(key, None)
            self._wake.set()

    def sweep(self, mine: Callable[[str], bool] | None = None) -> None:
        """Queue what is owed. `mine`: only the rollouts this replica may write for (the
        run loop passes the write gate; None: every cached rollout)."""
        conf = self.settings().notifications
        if not conf.receivers:
            return
        receivers = {r.name: r for r in conf.receivers}
        self._note(conf)
        if self._swept_with is not conf:
            self._swept, self._swept_with = {}, conf
        for gone in [k for k in self._swept if k not in self.cache]:
            self._swept.pop(gone)
        for key, obj in list(self.cache.items()):
            meta = obj.get("metadata") or {}
            rv = str(meta.get("resourceVersion", ""))
            if self._swept.get(key) == rv or (mine is not None and not mine(key)):
                continue  # unchanged, or not this replica's to tell (looked at once it is)
            self._swept[key] = rv
            read = self.cache.read(obj)
            if read.status is None:
                continue
            since = self.cache.summarised_at(key)
            if since is not None:
                # Summarised: nothing was owed when it was cached; under a configuration
                # newer than that, read it whole if it could owe something.
                if since >= self._judged_from or key in self._fetching:
                    continue
                small = reading.read_status(obj).status  # the cached read: phase only
                if small is not None and self._maybe_owed(obj, small, conf):
                    self._fetching.add(key)
                    asyncio.get_running_loop().create_task(self._fetch(key, rv),
                                                           name=f"notify fetch {key}")
                continue
            spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
            assert isinstance(spec, dict)
            for d in self._owed(meta, spec, read.status, conf):
                if self._queued.get((key, d.receiver), -1) >= d.notice.seq:
                    continue
                self._enqueue(receivers[d.receiver], d)

    def _enqueue(self, receiver: Receiver, delivery: Delivery) -> None:
        queue = self._queues.get(receiver.name)
        if queue is None or queue.maxsize != receiver.queue:
            queue = self._queues[receiver.name] = asyncio.Queue(maxsize=receiver.queue)
        if queue.full():
            dropped = queue.get_nowait()
            self.sent.labels(receiver.name, "dropped").inc()
            log.warning("notification dropped: queue full", receiver=receiver.name,
                        rollout=dropped.key, kind=dropped.notice.event)
        queue.put_nowait(delivery)
        self._queued[(delivery.key, receiver.name)] = delivery.notice.seq
        self.depth.labels(receiver.name).set(queue.qsize())
        worker = self._workers.get(receiver.name)
        if worker is None or worker.done():
            self._workers[receiver.name] = asyncio.get_running_loop().create_task(
                self._work(receiver.name, queue), name=f"notify {receiver.name}")

    # ------------------------------------------------------------------ delivery

    def _client(self) -> webhook.Guarded:
        policy = webhook.address_policy(self.settings().hooks)
        if self._session is None or policy != self._policy:
            if self._session is not None:
                asyncio.get_running_loop().create_task(self._session.close())
            self._session, self._policy = webhook.session(policy), policy
        return self._session

    async def _work(self, name: str, queue: asyncio.Queue[Delivery]) -> None:
        while True:
            d = await queue.get()
            self.depth.labels(name).set(queue.qsize())
            if not self.may_write(d.key):
                # No longer leading (or no longer this replica's shard): the next owner sends
                # it, or this one again once it leads again (swept afresh then).
                self._queued.pop((d.key, name), None)
                self._swept.pop(d.key, None)
                continue
            conf = self.settings().notifications
            receiver = next((r for r in conf.receivers if r.name == name), None)
            if receiver is None:
                continue
            try:
                ok = await self._deliver(receiver, d, conf.api_url)
                self.sent.labels(name, "sent" if ok else "failed").inc()
                self.up.labels(name).set(1 if ok else 0)
                if self.may_write(d.key):
                    await self._mark(d)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad delivery never stops the receiver's queue
                log.exception("notification failed", receiver=name, rollout=d.key)

    async def _deliver(self, receiver: Receiver, d: Delivery, api_url: str | None) -> bool:
        try:
            url = webhook.receiver_url(receiver.url_from)
        except ValueError as exc:
            log.error("notification not sent: receiver URL unusable", receiver=receiver.name,
                      error=str(exc))
            return False
        body = render.RENDER[receiver.kind](d.notice, api_url)
        headers = {}
        if receiver.kind in render.CONTENT_TYPES:
            headers["Content-Type"] = render.CONTENT_TYPES[receiver.kind]
        answer = await webhook.post(self._client(), url, body, deadline=receiver.timeout,
                                    retries=receiver.retries, headers=headers,
                                    what=f"notify {receiver.name}")
        ok = answer.status is not None and 200 <= answer.status < 300
        (log.info if ok else log.error)(
            "notification sent" if ok else "notification given up",
            receiver=receiver.name, url=webhook.redact(url), rollout=d.key,
            kind=d.notice.event, seq=d.notice.seq, answer=answer.detail[:200])
        return ok

    async def _mark(self, d: Delivery) -> None:
        """status.notified[receiver] = seq, fenced by resourceVersion (re-read on 409)."""
        for _ in range(WATERMARK_TRIES):
            obj = self.cache.get(d.key)
            if obj is None:
                return
            read = self.cache.read(obj)
            if read.status is None or read.status.notified.get(d.receiver, -1) >= d.notice.seq:
                return
            meta = obj["metadata"]
            try:
                self.cache.put(await self.store.write_status(
                    ObjectRef(meta["namespace"], meta["name"]),
                    {"notified": {d.receiver: d.notice.seq}}, meta["resourceVersion"]))
                return
            except Conflict:
                await asyncio.sleep(0.1)  # the controller wrote; the watch brings it
            except KubeError as exc:
                log.warning("notification progress not recorded yet", rollout=d.key,
                            receiver=d.receiver, error=str(exc)[:200])
                await asyncio.sleep(0.5)
        log.warning("notification progress not recorded", rollout=d.key, receiver=d.receiver)

    async def close(self) -> None:
        for task in self._workers.values():
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        self._workers.clear()
        self._queues.clear()
        self._queued.clear()
        self._swept.clear()
        if self._session is not None:
            with contextlib.suppress(Exception):
                await self._session.close()
            self._session = None


__all__ = ["Delivery", "Notifier"]
