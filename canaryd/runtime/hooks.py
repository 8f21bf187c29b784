"""Hook calls, off the reconcile loop: each RunHook action becomes a task whose answer waits
here as a `HookReport` until the next decision folds it into status.

A call is started only after the status recording it as Running was written (the
controller performs actions after the write), so a restarted or new leader finds it there:
a gate (confirmPromotion) is asked again, asking being idempotent by its contract; any
other call is not repeated, the machine times it out (`canaryd.core.hooks.absorb`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry, Counter, Histogram

from canaryd.adapters import webhook
from canaryd.adapters.jobs import Jobs
from canaryd.adapters.secrets import SecretError, read_secret
from canaryd.core import jobhooks
from canaryd.core.hooks import HookReport, RunHook, resolve
from canaryd.core.hookspec import Hook, HookRun, job_name
from canaryd.core.model import RolloutSpec, RolloutStatus
from canaryd.core.notices import previous
from canaryd.core.settings import Settings
from canaryd.runtime.jobhooks import run_job

log = structlog.get_logger("canaryd.hooks")
Key = tuple[str, str]  # (rollout, run id)


def payload(raw: Mapping[str, Any], spec: RolloutSpec, status: RolloutStatus, run: HookRun,
            ) -> dict[str, Any]:
    """What a hook is told: the rollout, the stage, where it stands, its last checks."""
    meta = raw.get("metadata") or {}
    last = max((c.seq for c in status.checks), default=None)
    checks = [{"metric": c.metric, "value": c.value, "stableValue": c.stable_value,
               "threshold": c.threshold, "verdict": c.verdict.value, "reason": c.reason,
               "unit": c.unit, "dryRun": bool(c.dry_run)}
              for c in status.checks if c.seq == last]
    return {
        "delivery": f"{meta.get('uid', '')}/{run.id}",
        "rollout": {"namespace": meta.get("namespace"), "name": meta.get("name"),
                    "uid": meta.get("uid")},
        "hook": run.name, "stage": run.stage,
        "step": run.step + 1 if run.step is not None else status.step_index + 1,
        "stepCount": status.step_count,
        "phase": status.phase.value, "reason": status.reason,
        "target": spec.target, "version": spec.version, "previousVersion": previous(status),
        "workloads": {"stable": spec.workloads.stable, "canary": spec.workloads.canary},
        "weights": status.weights.wire() if status.weights else None,
        "checks": checks,
    }


class HookRunner:
    def __init__(
        self, *, settings: Callable[[], Settings], api: client.ApiClient | None,
        wake: Callable[[str], None], registry: CollectorRegistry | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.api = api
        self.wake = wake
        self.clock = clock
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        self._reports: dict[str, dict[str, HookReport]] = {}
        self._session: webhook.Guarded | None = None
        self.jobs = Jobs(api) if api is not None else None
        self._job_of: dict[Key, tuple[str, str]] = {}  # (namespace, name) of a run's Job
        self._swept: set[str] = set()  # rollouts whose finished runs' Jobs were deleted
        self._deletes: set[asyncio.Task[None]] = set()
        self._policy: webhook.AddressPolicy | None = None
        self.calls = Counter("canaryd_hook_calls", "Hook calls by stage and outcome",
                             ["stage", "outcome"], registry=registry)
        self.seconds = Histogram("canaryd_hook_call_seconds", "Hook call latency",
                                 ["stage"], registry=registry)

    def reports(self, key: str) -> tuple[HookReport, ...]:
        return tuple(self._reports.get(key, {}).values())

    def running(self, key: str, run_id: str) -> bool:
        task = self._tasks.get((key, run_id))
        return task is not None and not task.done()

    def _client(self) -> webhook.Guarded:
        policy = webhook.address_policy(self.settings().hooks)
        if self._session is None or policy != self._policy:
            if self._session is not None:
                old = self._session
                asyncio.get_running_loop().create_task(old.close())
            self._session, self._policy = webhook.session(policy), policy
        return self._session

    def start(self, key: str, namespace: str, run: HookRun, hook: Hook,
              body: dict[str, Any]) -> None:
        """Call `hook` for `run` unless that call is already out."""
        if self.running(key, run.id):
            return
        call = (self._job(key, namespace, run, hook, body) if hook.job is not None
                else self._call(key, namespace, run, hook, body))
        self._tasks[(key, run.id)] = asyncio.get_running_loop().create_task(
            call, name=f"hook {key} {run.id}")

    async def _job(self, key: str, namespace: str, run: HookRun, hook: Hook,
                   body: dict[str, Any]) -> None:
        if self.jobs is None:
            self._report(key, run, "Failed", "no Kubernetes client to create the Job with", 0)
            return
        ro = body["rollout"]
        manifest = jobhooks.manifest(
            hook, run, {"metadata": {"name": ro["name"], "uid": ro["uid"],
                                     "namespace": namespace}}, jobhooks.facts(body))
        self._job_of[(key, run.id)] = (namespace, manifest["metadata"]["name"])
        started = time.monotonic()

        def report(outcome: str, reason: str, asks: int) -> None:
            if outcome in ("Passed", "Failed"):
                self.calls.labels(run.stage, outcome).inc()
                self.seconds.labels(run.stage).observe(time.monotonic() - started)
            self._report(key, run, outcome, reason, asks)

        await run_job(self.jobs, manifest, run, report)

    def _delete_job(self, namespace: str, name: str) -> None:
        """Delete a finished run's Job (its pods in the background), off the loop."""
        jobs = self.jobs
        if jobs is None:
            return

        async def delete() -> None:
            try:
                if await jobs.delete(namespace, name):
                    log.info("job hook deleted", job=f"{namespace}/{name}")
            except Exception as exc:  # the ownerReference still collects it
                log.warning("job hook: delete failed; the garbage collector removes it "
                            "with the rollout", job=f"{namespace}/{name}", error=str(exc)[:300])

        task = asyncio.get_running_loop().create_task(delete(), name=f"delete job {name}")
        self._deletes.add(task)
        task.add_done_callback(self._deletes.discard)

    def settle(self, key: str, status: RolloutStatus | None) -> None:
        """Forget what status already holds: reports of finished runs, their tasks (a gate
        past its maxWait stops being asked). `None`: the rollout is gone."""
        done = {r.id for r in status.hooks if r.done} if status is not None else None
        if status is None:
            self._swept.discard(key)
        reports = self._reports.get(key, {})
        for rid in list(reports):
            if done is None or rid in done:
                reports.pop(rid)
        if not reports:
            self._reports.pop(key, None)
        for (k, rid), task in list(self._tasks.items()):
            if k == key and (done is None or rid in done or task.done()):
                if not task.done():
                    task.cancel()
                self._tasks.pop((k, rid), None)
        for (k, rid), (namespace, name) in list(self._job_of.items()):
            if k == key and (done is None or rid in done):
                self._job_of.pop((k, rid))
                if done is not None:  # a deleted rollout's Jobs go with it (ownerReference)
                    self._delete_job(namespace, name)

    def _report(self, key: str, run: HookRun, outcome: str, reason: str, asks: int) -> None:
        assert outcome in ("Running", "Waiting", "Passed", "Failed")
        self._reports.setdefault(key, {})[run.id] = HookReport(
            id=run.id, outcome=outcome, reason=reason, at=self.clock(), asks=asks)  # type: ignore[arg-type]
        self.wake(key)

    async def _call(self, key: str, namespace: str, run: HookRun, hook: Hook,
                    body: dict[str, Any]) -> None:
        where = f"hook {hook.name}"
        assert hook.webhook is not None
        url = hook.webhook.url
        try:
            secret = await read_secret(hook, namespace, self.settings(), self.api, where)
        except SecretError as exc:
            self.calls.labels(run.stage, "Failed").inc()
            self._report(key, run, "Failed", str(exc), 0)
            return
        asks = 0
        while True:
            asks += 1
            started = time.monotonic()
            answer = await webhook.post(
                self._client(), url, {**body, "asks": asks},
                deadline=hook.timeout, retries=hook.retries, secret=secret,
                headers={"X-Canaryd-Delivery": body["delivery"]}, what=f"{key} {run.id}")
            self.seconds.labels(run.stage).observe(time.monotonic() - started)
            code = answer.status
            if code is not None and 200 <= code < 300:
                outcome = "Passed"
            elif code == webhook.NOT_YET and run.stage == "confirmPromotion":
                self.calls.labels(run.stage, "Waiting").inc()
                self._report(key, run, "Waiting", f"not yet ({answer.detail}), asked {asks}x",
                             asks)
                await asyncio.sleep(hook.interval)
                continue
            else:
                outcome = "Failed"
            self.calls.labels(run.stage, outcome).inc()
            log.info("hook answered", rollout=key, hook=run.id, outcome=outcome,
                     url=webhook.redact(url), detail=answer.detail[:300])
            self._report(key, run, outcome, answer.detail, asks)
            return

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), *self._deletes, return_exceptions=True)
        self._tasks.clear()
        if self._session is not None:
            with contextlib.suppress(Exception):
                await self._session.close()
            self._session = None

    def act(self, key: str, raw: Mapping[str, Any], spec: RolloutSpec, status: RolloutStatus,
            actions: tuple[Any, ...], hooks: tuple[Hook, ...]) -> None:
        """After the status write: start the calls the decision asked for, and ask again
        the gates recorded as waiting that no task asks (a restarted or new leader)."""
        namespace = str((raw.get("metadata") or {}).get("namespace"))
        for action in actions:
            if isinstance(action, RunHook):
                self.start(key, namespace, action.run, action.hook,
                           payload(raw, spec, status, action.run))
        by_name = {h.name: h for h in hooks}
        uid = str((raw.get("metadata") or {}).get("uid"))
        name = str((raw.get("metadata") or {}).get("name"))
        sweep = key not in self._swept
        self._swept.add(key)
        for run in status.hooks:
            hook = by_name.get(run.name)
            if hook is None or hook.stage != run.stage:
                continue
            if run.done:
                if sweep and hook.job is not None:  # a previous daemon's, maybe left over
                    self._delete_job(namespace, job_name(name, uid, run.id))
                continue
            # A gate is asked again; a Job is looked for again (and adopted, never re-run),
            # unless its answer is here already, waiting for the next decision.
            answered = self._reports.get(key, {}).get(run.id)
            if ((run.stage == "confirmPromotion" or hook.job is not None)
                    and not self.running(key, run.id)
                    and (answered is None or answered.outcome not in ("Passed", "Failed"))):
                self.start(key, namespace, run, hook, payload(raw, spec, status, run))
        self.settle(key, status)


def hooks_of(settings: Settings, spec: RolloutSpec, profile: str | None) -> tuple[Hook, ...]:
    """The profile's hooks and the rollout's, the rollout's replacing same-named ones."""
    found = settings.profiles.get(profile) if profile is not None else None
    return resolve(found.hooks if found is not None else (), spec.hooks)
