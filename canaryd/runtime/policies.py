"""RolloutPolicies at run time: every replica keeps them in a watch-fed cache; the leader
looks at each policy's two Deployments at most once per controller.tick (never less than
POLL_MIN seconds apart) and, when the canary's pod template changed, creates the Rollout
`canaryd.core.policy.decide` asks for, then records it in the policy's status.

Create-if-absent by name (`<policy>-<hash10>`): AlreadyExists means already started (by this
replica before a restart, or by another one), so nothing starts twice. One policy's trouble
is reported on its own status (condition Ready, reason, message naming the field) and in an
Event; it never stops the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from kubernetes_asyncio import client

from canaryd.adapters.errors import Conflict, KubeError
from canaryd.adapters.kube import ObjectRef, RolloutStore
from canaryd.adapters.policies import PolicyStore
from canaryd.adapters.workloads import Releases
from canaryd.core import policy, reading, shards
from canaryd.core import release as rel
from canaryd.core.settings import Settings
from canaryd.runtime.cache import RolloutCache
from canaryd.runtime.informer import list_and_watch
from canaryd.runtime.metrics import DaemonMetrics

log = structlog.get_logger("canaryd.policies")
POLL_MIN = 0.5  # seconds between two looks at one policy's Deployments
PARALLEL = 16


class Policies:
    def __init__(self, *, api: client.ApiClient, rollouts: RolloutStore, cache: RolloutCache,
                 identity: str, clock: Callable[[], datetime],
                 may_write: Callable[[str, str], bool],
                 settings: Callable[[], Settings],
                 metrics: DaemonMetrics | None = None) -> None:
        self.store = PolicyStore(api)
        self.rollouts, self.cache = rollouts, cache
        self.releases = Releases(api)
        self.identity, self.clock = identity, clock
        # The write gate by (namespace, target): a policy is its target's (one leader: the
        # key is ignored; sharded: the shard of the rollouts it starts).
        self.gate, self.settings = may_write, settings
        self.metrics = metrics
        self._not_ready: set[str] = set()
        self.objects: dict[str, dict[str, Any]] = {}
        self.synced = asyncio.Event()
        self.started = 0  # rollouts this replica created
        self.looks = 0  # looks at a policy's Deployments finished (decided and recorded)
        self._looked: dict[str, float] = {}

    # ------------------------------------------------------------------ cache (every replica)

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        key = reading.key(obj)
        if kind == "DELETED":
            self.objects.pop(key, None)
            self._looked.pop(key, None)
            return
        old = self.objects.get(key)
        self.objects[key] = obj
        if old is None or old.get("spec") != obj.get("spec"):
            self._looked.pop(key, None)  # a new or edited policy is looked at now

    async def run(self, stop: asyncio.Event) -> None:
        """List, then watch; re-list after any error (410 Expired included)."""
        await list_and_watch(self.store, self.objects, self.apply, self.synced, stop, "policy")

    # ------------------------------------------------------------------ the leader's looks

    async def sweep(self) -> int:
        """Look at every policy that is due; how many rollouts were started."""
        if not self.synced.is_set():
            return 0
        now, every = time.monotonic(), max(self.settings().controller.tick, POLL_MIN)
        due = [k for k, o in self.objects.items()
               if now - self._looked.get(k, -1e9) >= every and self.may_write(o)]
        if not due:
            return 0
        sem = asyncio.Semaphore(PARALLEL)
        before = self.started

        async def one(key: str) -> None:
            async with sem:
                self._looked[key] = time.monotonic()
                obj = self.objects.get(key)
                if obj is None:
                    return
                try:
                    decision = await self.look(obj)
                    self.looks += 1
                    self._count("ok", key, decision)
                except Exception:  # one policy never stalls the others
                    log.exception("policy look failed", policy=key)
                    self._count("error", key, None)

        await asyncio.gather(*(one(k) for k in due))
        return self.started - before

    def _count(self, outcome: str, key: str, decision: policy.Decision | None) -> None:
        if decision is not None:
            ready = next((c for c in decision.status.conditions if c.type == policy.READY),
                         None)
            (self._not_ready.add if ready is not None and ready.status == "False"
             else self._not_ready.discard)(key)
        self._not_ready &= set(self.objects)
        if self.metrics is not None:
            self.metrics.policy_looks.labels(outcome=outcome).inc()
            self.metrics.policies_not_ready.set(len(self._not_ready))

    def may_write(self, obj: dict[str, Any]) -> bool:
        return self.gate(*shards.owner_key(obj))

    async def _view(self, namespace: str, name: str, spec: policy.PolicySpec,
                    raw_spec: dict[str, Any]) -> policy.View:
        plan = rel.ReleasePlan(stable=spec.workloads.stable, canary=spec.workloads.canary)
        seen = await self.releases.observe(namespace, plan, autoscalers=False)
        entries = [(self.cache.entry(o), o) for o in self.cache.values()]
        return policy.View(canary=seen.canary, stable=seen.stable,
                           active=policy.active_on(namespace, name, raw_spec, entries),
                           mine=policy.started_by(namespace, name, self.cache.values()))

    async def look(self, obj: dict[str, Any]) -> policy.Decision:
        """One look at one policy: decide, start (if asked), record, tell."""
        meta = obj.get("metadata") or {}
        ns, name = str(meta.get("namespace")), str(meta.get("name"))
        ref = ObjectRef(ns, name)
        raw_spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        assert isinstance(raw_spec, dict)
        spec, invalid = policy.parse_spec(raw_spec, self.settings())
        status = policy.parse_status(obj.get("status"))
        view, unreadable = None, None
        if spec is not None and invalid is None and policy.name_problem(name) is None:
            try:
                view = await self._view(ns, name, spec, raw_spec)
            except KubeError as exc:
                unreadable = f"cannot read the Deployments: {exc}"[:1000]
        decision = policy.decide(name, meta.get("generation"), spec, invalid, status, view,
                                 self.clock(), unreadable=unreadable)
        if not self.may_write(obj):
            return decision
        if decision.start is not None:
            body = policy.rollout_body(obj, decision.start)
            try:
                created = await self.rollouts.create(body)
                self.cache.put(created)  # seen at once, not only once the watch brings it
                self.started += 1
                if self.metrics is not None:
                    self.metrics.policy_starts.inc()
                log.info("rollout started by policy", policy=str(ref),
                         rollout=decision.start.name, version=decision.start.version,
                         template_hash=decision.start.template_hash,
                         supersede=decision.start.supersede)
            except Conflict as exc:
                if not exc.already_exists:
                    raise
                log.info("rollout already started", policy=str(ref),
                         rollout=decision.start.name)
                decision = dataclasses.replace(decision, event=None)  # told when it was
        mine = decision.status.model_copy(update={"controller": self.identity})
        if mine.model_dump() != status.model_dump():
            try:
                updated = await self.store.write_status(
                    ref, mine.model_dump(mode="json", by_alias=True), meta["resourceVersion"])
                self.objects[reading.key(updated)] = updated
            except Conflict:  # changed since read: looked at again next time
                self._looked.pop(reading.key(obj), None)
        if decision.event is not None:
            reason, message, warning = decision.event
            await self.rollouts.emit_event({**obj, "kind": policy.POLICY_KIND},
                                           reason=reason, message=message, warning=warning)
        return decision
