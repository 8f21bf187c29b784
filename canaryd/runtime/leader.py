"""Leader election over a coordination.k8s.io/v1 Lease, with client-go's semantics.

Every replica runs a `LeaderElector`; the one holding the Lease drives rollouts.

- A candidate tries every RetryPeriod (with jitter): GET the Lease (POST it on 404). When
  the record differs from the one last seen, it notes the local monotonic time. The Lease is
  held by someone else while that observed time + the record's leaseDurationSeconds lies in
  the future: the server's timestamps are never compared with the local clock, only their
  changes count. When the lease it watches is about to expire before the next retry, the
  candidate wakes at the expiry instead (a shorter failover, the same safety).
- Acquire and renew are a PUT carrying the resourceVersion read, so a 409 loses the race.
  A takeover increments leaseTransitions; a renewal keeps acquireTime.
- The leader renews every RetryPeriod. `is_leader()` is true only until RenewDeadline after
  the start of the last successful write: past it, leadership ends at once, whether or not
  the renewal loop has noticed yet. Seeing another holder ends it too.
- Release (clean shutdown): holderIdentity "", leaseDurationSeconds 1, so another replica
  takes over on its next try instead of waiting out the lease.

Every API call runs under a timeout, and nothing raises out of the public coroutines except
cancellation: a failed attempt is logged and counts as "not acquired" / "not renewed".
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from kubernetes_asyncio import client

from canaryd import aio
from canaryd.adapters.errors import Conflict, KubeError, NotFound, translated

log = structlog.get_logger("canaryd.leader")
GROUP, VERSION, PLURAL = "coordination.k8s.io", "v1", "leases"
JITTER = 1.2  # client-go's JitterFactor: a candidate waits RetryPeriod x [1, 1.2)


def micro_time(at: datetime) -> str:
    """Kubernetes MicroTime: UTC with microseconds, e.g. 2026-01-02T03:04:05.000000Z."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class LeaseTiming:
    """client-go's LeaseDuration / RenewDeadline / RetryPeriod, in seconds."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if self.retry_period <= 0:
            raise ValueError("retry period must be positive")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError("lease duration must be greater than the renew deadline")
        if self.renew_deadline <= JITTER * self.retry_period:
            raise ValueError(f"renew deadline must be greater than {JITTER} x retry period")

    @property
    def lease_seconds(self) -> int:
        """leaseDurationSeconds as written (an integer; rounded up, never shortened)."""
        return max(1, math.ceil(self.lease_duration))


@dataclass(frozen=True)
class LeaseRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class LeaderElector:
    def __init__(
        self,
        *,
        api: client.ApiClient,
        lease: LeaseRef,
        identity: str,
        timing: LeaseTiming | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        on_change: Callable[[bool], None] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        if not identity:
            raise ValueError("a leader election identity must not be empty")
        self.custom = client.CustomObjectsApi(api)
        self.lease = lease
        self.identity = identity
        self.timing = timing or LeaseTiming()
        self.monotonic = monotonic
        self.wall = wall
        # Jitter only spreads retries out; it protects nothing.
        self.rng = rng or random.Random()  # noqa: S311
        self.on_change = on_change
        # Written on every create and update (an update replaces the whole object): the
        # shard Leases carry labels so that every replica can list them.
        self.labels = dict(labels) if labels else None
        self._observed: dict[str, Any] | None = None  # the Lease spec last seen
        self._observed_rv: str | None = None
        self._observed_at = -math.inf  # monotonic time the record last changed, as seen here
        self._valid_until = -math.inf  # monotonic: may act as leader before this
        self._leading = False
        self.log = log.bind(lease=str(lease), identity=identity)

    # ------------------------------------------------------------------ state

    def is_leader(self) -> bool:
        """True while this replica holds the Lease and is within its renew deadline."""
        return self._leading and self.monotonic() < self._valid_until

    @property
    def holder(self) -> str:
        """The holder in the record last seen ('' when released or never seen)."""
        return str((self._observed or {}).get("holderIdentity") or "")

    def _holds_observed(self) -> bool:
        return self._observed is not None and self.holder == self.identity

    def _observed_valid(self, now: float) -> bool:
        seconds = float((self._observed or {}).get("leaseDurationSeconds") or 0)
        return self._observed_at + seconds > now

    def _observed_expiry(self) -> float:
        return self._observed_at + float((self._observed or {}).get("leaseDurationSeconds") or 0)

    def observe(self, lease: dict[str, Any], now: float) -> None:
        """A record of this Lease read elsewhere (a listing at local time `now`), judged
        as this candidate's own reads are; ignored while leading (its own write is newer)."""
        if not self._leading:
            self._observe(lease, now)

    def _observe(self, lease: dict[str, Any], now: float) -> None:
        spec = dict(lease.get("spec") or {})
        if spec != self._observed:
            self._observed = spec
            self._observed_at = now
        self._observed_rv = str(lease["metadata"]["resourceVersion"])

    def _set_leading(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        if not leading:
            self._valid_until = -math.inf
        self.log.info("leadership acquired" if leading else "leadership lost",
                      transitions=(self._observed or {}).get("leaseTransitions"))
        if self.on_change is not None:
            try:
                self.on_change(leading)
            except Exception:  # a callback must not break the election
                self.log.exception("leadership callback failed")

    # ------------------------------------------------------------------ API calls

    async def _get(self, budget: float) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await translated(
                f"get lease {self.lease}",
                self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, self.lease.namespace, PLURAL, self.lease.name,
                    _request_timeout=budget,
                ),
            )
        except NotFound:
            return None
        return result

    def _body(self, spec: dict[str, Any], resource_version: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.lease.name, "namespace": self.lease.namespace}
        if resource_version is not None:
            meta["resourceVersion"] = resource_version
        if self.labels:
            meta["labels"] = dict(self.labels)
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Lease", "metadata": meta,
                "spec": spec}

    async def _create(self, spec: dict[str, Any], budget: float) -> dict[str, Any]:
        result: dict[str, Any] = await translated(
            f"create lease {self.lease}",
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.lease.namespace, PLURAL, self._body(spec, None),
                _request_timeout=budget,
            ),
        )
        return result

    async def _replace(self, spec: dict[str, Any], rv: str, budget: float) -> dict[str, Any]:
        result: dict[str, Any] = await translated(
            f"update lease {self.lease}",
            self.custom.replace_namespaced_custom_object(
                GROUP, VERSION, self.lease.namespace, PLURAL, self.lease.name,
                self._body(spec, rv), _request_timeout=budget,
            ),
        )
        return result

    # ------------------------------------------------------------------ one attempt

    def _record(self, now: str, *, acquire_time: str, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.timing.lease_seconds,
            "acquireTime": acquire_time,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    async def _attempt(self, deadline: float) -> bool:
        def budget() -> float:
            return max(deadline - self.monotonic(), 0.01)

        now = micro_time(self.wall())
        if self._leading and self._holds_observed() and self._observed_rv is not None:
            # Fast path: the leader renews from its own last write, with no GET first.
            assert self._observed is not None
            spec = self._record(
                now, acquire_time=str(self._observed.get("acquireTime") or now),
                transitions=int(self._observed.get("leaseTransitions") or 0),
            )
            try:
                self._observe(await self._replace(spec, self._observed_rv, budget()),
                              self.monotonic())
                return True
            except Conflict:
                pass  # Someone else wrote the Lease: read it and decide as any candidate would.
        lease = await self._get(budget())
        if lease is None:
            created = await self._create(self._record(now, acquire_time=now, transitions=0),
                                         budget())
            self._observe(created, self.monotonic())
            return True
        self._observe(lease, self.monotonic())
        assert self._observed is not None and self._observed_rv is not None
        holder = self.holder
        if holder and holder != self.identity and self._observed_valid(self.monotonic()):
            return False
        transitions = int(self._observed.get("leaseTransitions") or 0)
        if holder == self.identity:
            spec = self._record(now, acquire_time=str(self._observed.get("acquireTime") or now),
                                transitions=transitions)
        else:
            spec = self._record(now, acquire_time=now, transitions=transitions + 1)
        self._observe(await self._replace(spec, self._observed_rv, budget()), self.monotonic())
        return True

    async def try_acquire_or_renew(self) -> bool:
        """One attempt. True when this replica holds the Lease afterwards."""
        started = self.monotonic()
        # A leader never waits past its deadline; anyone else gets half the renew deadline
        # (what kube-controller-manager gives its leader-election HTTP client).
        limit = self.timing.renew_deadline / 2
        if self._leading:
            limit = min(limit, self._valid_until - started)
        deadline = started + max(limit, 0.01)
        try:
            async with asyncio.timeout_at(self._loop_time(deadline)):
                ok = await self._attempt(deadline)
        except Conflict:
            self.log.info("lease attempt failed", reason="lost the race (409)")
            ok = False
        except KubeError as exc:
            emit = self.log.info if exc.status else self.log.warning  # 0: no answer at all
            emit("lease attempt failed", reason=f"{exc.status} {exc.reason}"[:200])
            ok = False
        except (TimeoutError, OSError) as exc:
            self.log.warning("lease attempt failed", error=f"{type(exc).__name__}: {exc}"[:200])
            ok = False
        except Exception as exc:  # never escape: a bad answer is a failed attempt
            self.log.warning("lease attempt failed", error=f"{type(exc).__name__}: {exc}"[:200])
            ok = False
        if ok:
            # Measured from before the request: whoever saw this write saw it later.
            self._valid_until = started + self.timing.renew_deadline
        elif self._observed is not None and self.holder not in ("", self.identity):
            # Someone else holds the Lease now: stop at once, do not wait for the deadline.
            self._valid_until = -math.inf
        return ok

    def _loop_time(self, monotonic_deadline: float) -> float:
        loop = asyncio.get_running_loop()
        return loop.time() + (monotonic_deadline - self.monotonic())

    # ------------------------------------------------------------------ loops

    def _candidate_delay(self) -> float:
        delay = self.timing.retry_period * self.rng.uniform(1.0, JITTER)
        if self._observed is not None and self.holder not in ("", self.identity):
            # Wake just after the observed lease runs out rather than up to a retry later.
            until_expiry = self._observed_expiry() - self.monotonic()
            if until_expiry < delay:
                delay = max(until_expiry, 0.0) + 0.001
        return delay

    async def try_acquire(self) -> bool:
        """One attempt to take (or keep) the Lease: True when leading afterwards (`hold`
        then renews it)."""
        if await self.try_acquire_or_renew():
            self._set_leading(True)
            return True
        return self.is_leader()

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Try until this replica leads (True) or `stop` is set (False)."""
        while not stop.is_set():
            if await self.try_acquire_or_renew():
                self._set_leading(True)
                return True
            if await aio.sleep_or_stop(stop, self._candidate_delay()):
                return False
        return False

    async def hold(self, stop: asyncio.Event) -> None:
        """Renew every RetryPeriod; return when leadership is lost or `stop` is set."""
        while self._leading and not stop.is_set():
            remaining = self._valid_until - self.monotonic()
            if remaining <= 0:
                break
            if await aio.sleep_or_stop(stop, min(self.timing.retry_period, remaining)):
                return
            if self.is_leader():
                await self.try_acquire_or_renew()
            if not self.is_leader():
                break
        if self._leading and not stop.is_set():
            self.log.warning("renew deadline passed or lease taken; stepping down",
                             holder=self.holder)
            self._set_leading(False)

    async def release(self) -> bool:
        """Give the Lease up (clean shutdown). True when released or not held."""
        held = self._holds_observed() and self._observed_rv is not None
        self._set_leading(False)
        if not held:
            return True
        assert self._observed is not None and self._observed_rv is not None
        now = micro_time(self.wall())
        spec = {
            "holderIdentity": "",
            "leaseDurationSeconds": 1,
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": int(self._observed.get("leaseTransitions") or 0),
        }
        budget = self.timing.renew_deadline / 2
        try:
            async with asyncio.timeout(budget):
                self._observe(await self._replace(spec, self._observed_rv, budget),
                              self.monotonic())
        except KubeError as exc:
            self.log.info("lease not released", status=exc.status, reason=exc.reason)
            return False
        except Exception as exc:  # shutting down: report, never raise
            self.log.warning("lease not released", error=f"{type(exc).__name__}: {exc}"[:200])
            return False
        self.log.info("lease released")
        return True


