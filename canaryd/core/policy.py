"""RolloutPolicy: the standing object of a GitOps target. Pure.

A policy is a Rollout spec without a version (router, workloads, plan or blueGreen, analysis,
hooks, validated by the same model) plus `onChange`. canaryd looks at the policy's canary
Deployment: when its pod template (hashed as the release lifecycle hashes it, selector
labels left out) differs from the one the policy last saw and from what stable runs, it
starts a Rollout from the policy, named `<policy>-<hash10>`, whose version is the canary
container's image. The name makes the start idempotent: a restart, or another replica,
creating it again gets AlreadyExists.

A change while another rollout of the target is active either supersedes it (the running
one is rolled back first, by the existing supersede path, then the new one starts) or waits
until it has finished, as `onChange` says.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic.json_schema import SkipJsonSchema

from canaryd.core import conditions, plan, targets
from canaryd.core import release as rel
from canaryd.core.base import Model
from canaryd.core.model import API_VERSION, KIND, Condition, RolloutSpec
from canaryd.core.settings import Settings

POLICY_KIND = "RolloutPolicy"
POLICY_PLURAL = "rolloutpolicies"
POLICY_LABEL = "canaryd.io/policy"  # on each Rollout a policy starts: the policy's name
START_ANNOTATION = "canaryd.io/policy-start"  # and which of the policy's starts it is (1, 2..)
HASH_CHARS = 10  # of the template hash, in the rollout's name
MAX_NAME = 63 - 1 - HASH_CHARS  # the rollout's name stays a DNS label
READY, WAITING = "Ready", "Waiting"
OnChange = Literal["supersede", "wait"]
_NOT_IN_A_POLICY = {
    "version": "a RolloutPolicy takes the version from the canary Deployment (its "
               "container's image); leave spec.version out",
    "supersede": "a RolloutPolicy says what a change during a rollout does with "
                 "spec.onChange (supersede or wait); leave spec.supersede out",
    "templateHash": "canaryd sets templateHash on the rollouts a policy starts; leave it out",
}


class PolicySpec(RolloutSpec):
    """A Rollout spec without a version: what every rollout of this target is started with
    when its canary Deployment's pod template changes."""

    version: SkipJsonSchema[None] = Field(default=None, exclude=True)  # type: ignore[assignment]
    supersede: SkipJsonSchema[None] = Field(default=None, exclude=True)  # type: ignore[assignment]
    template_hash: SkipJsonSchema[None] = Field(default=None, exclude=True)
    on_change: OnChange = Field(
        default="supersede",
        description="a change of the canary's pod template while a rollout of the target is "
        "active: supersede (default: the running rollout is rolled back, then the newest "
        "template is rolled out) or wait (it starts once the running one has finished)")

    @model_validator(mode="before")
    @classmethod
    def _no_version(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for key, why in _NOT_IN_A_POLICY.items():
                if key in data:
                    raise ValueError(f"{key}: {why}")
        return data


class PolicyStatus(Model):
    observed_generation: int | None = None
    observed_template_hash: str | None = Field(
        default=None, max_length=64,
        description="the canary pod template the policy last acted on (started a rollout "
        "for, or found stable already running)")
    last_rollout: str | None = Field(default=None, max_length=253,
                                     description="the rollout it last started")
    last_version: str | None = Field(default=None, max_length=512,
                                     description="that rollout's version (the image)")
    started: Annotated[int, Field(ge=0)] = Field(
        default=0, description="how many rollouts the policy has started")
    conditions: list[Condition] = Field(default_factory=list, max_length=64)
    controller: str | None = None


def check(raw: Any, settings: Settings | None = None,
          ) -> tuple[PolicySpec | None, list[tuple[str, str]]]:
    """The validated spec, or every problem as (field path, message): the model's, and with
    `settings` the plan's against the config (profile, overrides only tighten, interval
    bounds), as a Rollout of this spec would be checked on submit."""
    if not isinstance(raw, dict):
        return None, [("spec", "must be a mapping")]
    found = [(f"spec.{key}", why.split("; ", 1)[-1])
             for key, why in _NOT_IN_A_POLICY.items() if key in raw]
    try:
        spec = PolicySpec.model_validate(
            {k: v for k, v in raw.items() if k not in _NOT_IN_A_POLICY})
    except ValidationError as exc:
        return None, found + [
            (".".join(["spec", *(str(p) for p in err["loc"] if p != "[key]")]), err["msg"])
            for err in exc.errors()]
    if found:
        return None, found
    if settings is not None:
        try:
            plan.resolve_analysis(settings, spec)
            plan.steps(spec)
        except plan.PlanError as exc:
            return None, [(text.partition(": ")[0], text.partition(": ")[2])
                          if text.startswith("spec.") else ("spec", text)
                          for text in exc.problems]
    return spec, []


def parse_spec(raw: Any, settings: Settings | None = None,
               ) -> tuple[PolicySpec | None, str | None]:
    """The validated spec, or an error naming the field (spec.router..., spec.onChange)."""
    spec, problems = check(raw, settings)
    if spec is None:
        shown = "; ".join(f"{path}: {message}" for path, message in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        return None, f"invalid policy: {shown}{more}"
    return spec, None


def parse_status(raw: Any) -> PolicyStatus:
    """What canaryd wrote; anything unreadable counts as nothing seen yet (a start from it
    again is harmless: the rollout's name exists already)."""
    try:
        return PolicyStatus.model_validate(raw if isinstance(raw, dict) else {})
    except ValidationError:
        return PolicyStatus()


def rollout_name(policy: str, template_hash: str) -> str:
    return f"{policy}-{template_hash[:HASH_CHARS]}"


def name_problem(name: str) -> str | None:
    if len(name) > MAX_NAME:
        return (f"invalid policy: metadata.name: at most {MAX_NAME} characters (the rollouts "
                f"it starts are named <name>-<{HASH_CHARS} hex digits>), not {len(name)}")
    return None


@dataclass(frozen=True)
class Active:
    """An active rollout that shares an object with the policy's."""

    name: str
    phase: str
    mine: bool  # started by this policy


@dataclass(frozen=True)
class View:
    """What one look saw: both Deployments, the active rollouts on the policy's objects, and
    the rollouts the policy started that still exist (name -> which start it was)."""

    canary: rel.DeploymentView
    stable: rel.DeploymentView
    active: tuple[Active, ...] = ()
    mine: Mapping[str, int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Start:
    """Create (if absent) this Rollout from the policy."""

    name: str
    version: str
    template_hash: str
    supersede: bool
    start: int = 1  # the policy's start number (status.started after it)


@dataclass(frozen=True)
class Decision:
    status: PolicyStatus
    start: Start | None = None
    event: tuple[str, str, bool] | None = None  # (reason, message, warning), on the policy


def _status(status: PolicyStatus, now: datetime, generation: int | None,
            ready: tuple[bool, str, str], waiting: tuple[bool, str, str],
            **changes: Any) -> PolicyStatus:
    wanted: conditions.Wanted = {
        READY: ("True" if ready[0] else "False", ready[1], ready[2]),
        WAITING: ("True" if waiting[0] else "False", waiting[1], waiting[2]),
    }
    return status.model_copy(update={
        "observed_generation": generation,
        "conditions": conditions.merge(status.conditions, wanted, now), **changes})


def _was(status: PolicyStatus, ctype: str) -> Condition | None:
    return next((c for c in status.conditions if c.type == ctype), None)


def _event_once(status: PolicyStatus, ctype: str, value: str, reason: str, message: str,
                warning: bool) -> tuple[str, str, bool] | None:
    """An event when the condition becomes this (not again every look)."""
    was = _was(status, ctype)
    if was is not None and (was.status, was.reason, was.message) == (value, reason, message):
        return None
    return reason, message, warning


def version_of(spec: PolicySpec, canary: rel.DeploymentView) -> tuple[str | None, str | None]:
    """(the canary container's image, None) or (None, an error naming the field)."""
    plan = rel.ReleasePlan(stable=spec.workloads.stable, canary=spec.workloads.canary,
                           container=spec.workloads.container)
    container, error = rel.pick_container(plan, canary)
    if error is not None or container is None:
        return None, error
    image = canary.image(container)
    if not image:
        return None, f"spec.workloads.container: {canary.name}'s container {container} has " \
                     "no image"
    return image, None


def decide(name: str, generation: int | None, spec: PolicySpec | None, invalid: str | None,
           status: PolicyStatus, view: View | None, now: datetime, *,
           unreadable: str | None = None) -> Decision:
    """One look at one policy: what to record, and whether to start a rollout
    (`unreadable`: why the Deployments could not be read this time)."""
    idle = (False, "Idle", "")

    def broken(reason: str, message: str) -> Decision:
        return Decision(_status(status, now, generation, (False, reason, message), idle),
                        event=_event_once(status, READY, "False", reason, message, True))

    problem = invalid or name_problem(name)
    if spec is None or problem is not None:
        return broken("InvalidSpec", problem or "invalid policy")
    if unreadable is not None or view is None:
        return broken("Unreadable", unreadable or "the Deployments were not read")
    canary, stable = view.canary, view.stable
    for role, d in (("canary", canary), ("stable", stable)):
        if not d.exists:
            return broken(f"{role.capitalize()}NotFound",
                          f"spec.workloads.{role}: Deployment {d.name} not found")
    h = canary.template_hash
    watching = (True, "Watching", f"watching {canary.name} (template {h})")
    if h == status.observed_template_hash:
        return Decision(_status(status, now, generation, watching, idle))
    if h == stable.template_hash:
        # Nothing new: stable already runs this template (the first look, a promotion
        # done, or the canary put back as stable has it).
        return Decision(_status(status, now, generation, watching, idle,
                                observed_template_hash=h))
    image, error = version_of(spec, canary)
    if image is None:
        return broken("InvalidSpec", f"invalid policy: {error}")
    rollout, found = naming(name, h, status, view.mine)
    if found is not None:  # started before (this replica before a restart, or another one)
        return Decision(_status(status, now, generation, watching, idle,
                                observed_template_hash=h, last_rollout=rollout,
                                last_version=image, started=max(status.started, found)))
    others = [a for a in view.active if a.name != rollout]
    if others and spec.on_change == "wait":
        message = (f"template {h} ({image}) waits for rollout {others[0].name} "
                   f"({others[0].phase}) to finish (onChange: wait)")
        return Decision(_status(status, now, generation, watching, (True, "Waiting", message)),
                        event=_event_once(status, WAITING, "True", "Waiting", message, False))
    superseding = f"; supersedes {', '.join(a.name for a in others)}" if others else ""
    start = Start(name=rollout, version=image, template_hash=h,
                  supersede=spec.on_change == "supersede", start=status.started + 1)
    message = f"{canary.name}'s pod template changed ({h}): started rollout {rollout} of " \
              f"{image}{superseding}"
    return Decision(
        _status(status, now, generation, (True, "Started", message), idle,
                observed_template_hash=h, last_rollout=rollout, last_version=image,
                started=start.start),
        start=start, event=("RolloutStarted", message, False))


def naming(policy: str, h: str, status: PolicyStatus, mine: Mapping[str, int | None],
           ) -> tuple[str, int | None]:
    """The rollout for this change of template, and its start number if it exists already.

    `<policy>-<hash10>`, unless that name belongs to an earlier start of the same template
    (a git revert to a version released before, or a rolled-back one tried again after
    another): then `<policy>-<hash10>-<start>`. The first look of a policy (no status yet)
    takes an existing rollout of the template as already started: a policy re-created with
    the same name never re-releases what its predecessor released or rolled back."""
    base, nxt = rollout_name(policy, h), status.started + 1
    if base not in mine:
        return base, None
    seen = mine[base]
    if status.observed_template_hash is None or seen is None or seen >= nxt:
        return base, seen or nxt
    again = f"{base}-{nxt}"
    return again, (mine[again] or nxt) if again in mine else None


def rollout_body(policy: Mapping[str, Any], start: Start) -> dict[str, Any]:
    """The Rollout to create: the policy's spec as written, with the version, the template
    it is for, and whether it supersedes a running one."""
    meta = policy.get("metadata") or {}
    spec = {k: v for k, v in (policy.get("spec") or {}).items() if k != "onChange"}
    spec.update(version=start.version, templateHash=start.template_hash,
                supersede=start.supersede)
    RolloutSpec.model_validate(spec)  # the policy was validated: this only guards canaryd
    return {
        "apiVersion": API_VERSION, "kind": KIND,
        "metadata": {"name": start.name, "namespace": meta.get("namespace"),
                     "labels": {POLICY_LABEL: str(meta.get("name"))},
                     "annotations": {START_ANNOTATION: str(start.start)}},
        "spec": spec,
    }


def started_by(namespace: str, policy: str, rollouts: Iterable[Mapping[str, Any]],
               ) -> dict[str, int | None]:
    """The rollouts of `namespace` labelled as started by `policy`: name -> start number
    (None when the annotation is missing or unreadable)."""
    out: dict[str, int | None] = {}
    for obj in rollouts:
        meta = obj.get("metadata") or {}
        if meta.get("namespace") != namespace or \
                (meta.get("labels") or {}).get(POLICY_LABEL) != policy:
            continue
        raw = (meta.get("annotations") or {}).get(START_ANNOTATION)
        out[str(meta.get("name"))] = int(raw) if isinstance(raw, str) and raw.isdigit() \
            and len(raw) < 10 else None
    return out


def claims(spec: Mapping[str, Any]) -> frozenset[targets.Claim]:
    """What the policy's rollouts claim (their router, Services, Deployments, target)."""
    target = spec.get("target")
    out = set(targets.claims(spec))
    if isinstance(target, str):
        out.add(targets.Claim("target", target))
    return frozenset(out)


def overlapping(mine: frozenset[targets.Claim], entry: targets.Entry) -> bool:
    return any(c.overlaps(t) for c in mine for t in entry.all_claims)


def active_on(namespace: str, policy: str, spec: Mapping[str, Any],
              entries: Sequence[tuple[targets.Entry, Mapping[str, Any]]]) -> tuple[Active, ...]:
    """The active rollouts (oldest first) sharing an object with the policy's rollouts."""
    mine = claims(spec)
    out = []
    for entry, obj in sorted(entries, key=lambda pair: pair[0].order):
        if entry.namespace != namespace or not entry.active or not overlapping(mine, entry):
            continue
        labels = (obj.get("metadata") or {}).get("labels") or {}
        out.append(Active(entry.name, entry.phase.value if entry.phase else "unknown",
                          labels.get(POLICY_LABEL) == policy))
    return tuple(out)


__all__ = [
    "POLICY_KIND",
    "POLICY_LABEL",
    "POLICY_PLURAL",
    "Active",
    "Decision",
    "PolicySpec",
    "PolicyStatus",
    "Start",
    "View",
    "active_on",
    "decide",
    "parse_spec",
    "parse_status",
    "rollout_body",
    "rollout_name",
]
