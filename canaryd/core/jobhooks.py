"""Job hooks as data: the Job canaryd creates for a hook run, whether a Job found under that
name is that run's, and what a Job's status says (pure; the calls are
`canaryd.adapters.jobs`, the loop `canaryd.runtime.hooks`).

A run's Job name is a function of the rollout's uid and the run id (`hookspec.job_name`), so
a restarted daemon or a new leader creating it gets 409 AlreadyExists and adopts the Job it
finds (after checking it is this run's): a Job is never created twice for one run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from canaryd.core import model
from canaryd.core.hookspec import Hook, HookRun, Outcome, job_name

LABEL_HOOK = "canaryd.io/hook"
LABEL_ROLLOUT = "canaryd.io/rollout"
LABEL_ROLLOUT_UID = "canaryd.io/rollout-uid"
ANNOTATION_RUN = "canaryd.io/hook-run"
MANAGED_BY = "app.kubernetes.io/managed-by"
REASON_SHOWN = 300


def _label_value(value: str) -> str | None:
    return value if len(value) <= 63 else None


def manifest(hook: Hook, run: HookRun, rollout: Mapping[str, Any],
             facts: Mapping[str, str]) -> dict[str, Any]:
    """The Job of `run` (a run of `hook`, a job hook) for the Rollout whose metadata is
    `rollout`: its template, labelled and annotated as the run's, owned by the Rollout (the
    garbage collector removes what canaryd did not), its deadline the hook's timeout unless
    the template has a shorter one. `facts` become CANARYD_* environment variables of every
    container."""
    assert hook.job is not None
    meta = rollout.get("metadata") or {}
    name, uid = str(meta["name"]), str(meta["uid"])
    ours = {LABEL_HOOK: hook.name, LABEL_ROLLOUT_UID: uid, MANAGED_BY: "canaryd"}
    if (short := _label_value(name)) is not None:
        ours[LABEL_ROLLOUT] = short
    wire = hook.job.manifest()
    spec = wire["spec"]
    spec.setdefault("activeDeadlineSeconds", max(1, math.ceil(hook.timeout)))
    pod = spec["template"]
    pod["metadata"] = {**pod.get("metadata", {}),
                       "labels": {**pod.get("metadata", {}).get("labels", {}), **ours}}
    env = [{"name": k, "value": v} for k, v in facts.items()]
    for key in ("containers", "initContainers"):
        for c in pod["spec"].get(key, []):
            given = [e for e in c.get("env", []) if e.get("name") not in facts]
            c["env"] = [*given, *env]
    if not pod["spec"].get("initContainers"):
        pod["spec"].pop("initContainers", None)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": job_name(name, uid, run.id),
            "namespace": meta.get("namespace"),
            "labels": {**wire["metadata"].get("labels", {}), **ours},
            "annotations": {**wire["metadata"].get("annotations", {}), ANNOTATION_RUN: run.id},
            "ownerReferences": [{
                "apiVersion": f"{model.GROUP}/{model.VERSION}", "kind": model.KIND,
                "name": name, "uid": uid, "controller": True}],
        },
        "spec": spec,
    }


def not_ours(job: Mapping[str, Any], uid: str, rid: str) -> str | None:
    """Why a Job found under a run's name is not that run's (None: it is, adopt it)."""
    meta = job.get("metadata") or {}
    owners = [o.get("uid") for o in meta.get("ownerReferences") or []]
    if uid not in owners:
        return "it is not owned by this rollout"
    said = (meta.get("annotations") or {}).get(ANNOTATION_RUN)
    if said != rid:
        return f"it is the Job of hook run {said!r}"
    return None


def outcome(job: Mapping[str, Any]) -> tuple[Outcome, str] | None:
    """Passed or Failed with why, from the Job's conditions (Complete / Failed); None while
    it runs."""
    name = (job.get("metadata") or {}).get("name", "?")
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return "Passed", f"Job {name} complete ({status.get('succeeded', 0)} succeeded)"
        if cond.get("type") == "Failed":
            why = ": ".join(str(p) for p in (cond.get("reason"), cond.get("message")) if p)
            counts = f"{status.get('failed', 0)} failed, {status.get('succeeded', 0)} succeeded"
            said = "".join(c if c.isprintable() else " " for c in why)[:REASON_SHOWN]
            return "Failed", f"Job {name} failed: {said or 'no reason given'} ({counts})"
    return None


def facts(body: Mapping[str, Any]) -> dict[str, str]:
    """What a Job hook is told, from the webhook payload (`runtime.hooks.payload`)."""
    ro = body.get("rollout") or {}
    return {
        "CANARYD_ROLLOUT": f"{ro.get('namespace')}/{ro.get('name')}",
        "CANARYD_HOOK": str(body.get("hook", "")),
        "CANARYD_STAGE": str(body.get("stage", "")),
        "CANARYD_STEP": str(body.get("step", "")),
        "CANARYD_TARGET": str(body.get("target", "")),
        "CANARYD_VERSION": str(body.get("version", "")),
        "CANARYD_PREVIOUS_VERSION": str(body.get("previousVersion") or ""),
    }
