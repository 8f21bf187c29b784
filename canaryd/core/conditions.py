"""A Rollout's status.conditions, as `kubectl wait --for=condition=...` and dashboards read them.

- Completed, Promoted, Paused: follow the phase.
- CanaryAvailable, StableUpdated, CanaryScaledDown: the parts of a release (status.release),
  reason the stage, message its progress.
- Degraded: True while canaryd cannot act on the rollout as asked (its status unreadable,
  its spec invalid mid-flight, an unknown action, the router unreachable), with the reason
  and what to fix; False (reason Resolved) once that is over; absent if it never happened.
  It is how one bad object is reported on itself.

Pure. A condition keeps its lastTransitionTime while its status stays the same; conditions
of other types (written by other tools) are kept as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from canaryd.core.model import Condition, Phase, RolloutStatus

DEGRADED = "Degraded"
ConditionStatus = Literal["True", "False", "Unknown"]
Wanted = Mapping[str, tuple[ConditionStatus, str, str]]  # type -> (status, reason, message)
Problem = tuple[str, str]  # (reason, message) of a Degraded condition


def merge(old: Sequence[Condition], wanted: Wanted, now: datetime) -> list[Condition]:
    """`old` with every type in `wanted` set; the others kept, in their order."""
    previous = {c.type: c for c in old}
    out = [c for c in old if c.type not in wanted]
    for ctype, (value, reason, message) in wanted.items():
        prev = previous.get(ctype)
        since = prev.last_transition_time if prev is not None and prev.status == value else now
        out.append(Condition(type=ctype, status=value, reason=reason, message=message,
                             last_transition_time=since))
    return out


def of(status: RolloutStatus, problem: Problem | None, now: datetime) -> list[Condition]:
    """The conditions a decided status carries."""
    phase = status.phase
    wanted: dict[str, tuple[ConditionStatus, str, str]] = {
        "Completed": ("True" if phase.terminal else "False", phase.value, status.reason),
        "Promoted": (
            "True" if phase is Phase.SUCCEEDED else ("False" if phase.terminal else "Unknown"),
            phase.value, status.reason,
        ),
        "Paused": ("True" if phase is Phase.PAUSED else "False",
                   status.paused_by or phase.value, status.reason),
    }
    wanted.update(_release(status))
    if problem is not None:
        wanted[DEGRADED] = ("True", *problem)
    elif any(c.type == DEGRADED for c in status.conditions):
        wanted[DEGRADED] = ("False", "Resolved", "")
    return merge(status.conditions, wanted, now)


_SERVING = ("Steps", "StableUpdate", "TrafficToStable")
_AFTER_UPDATE = ("TrafficToStable", "CanaryScaleDown", "Done")


def _release(status: RolloutStatus) -> Wanted:
    r = status.release
    if r is None:
        return {}
    updated = status.phase in (Phase.PROMOTING, Phase.SUCCEEDED) and r.stage in _AFTER_UPDATE
    return {
        "CanaryAvailable": ("True" if r.stage in _SERVING else "False", r.stage, r.detail),
        "StableUpdated": ("True" if updated else "False", r.stage, r.detail),
        "CanaryScaledDown": ("True" if r.stage == "Done" else "False", r.stage, r.detail),
    }


def degraded(conditions: Sequence[Condition]) -> Problem | None:
    """The (reason, message) of a Degraded=True condition among `conditions`."""
    for c in conditions:
        if c.type == DEGRADED and c.status == "True":
            return (c.reason, c.message)
    return None


def readable(raw: Any) -> list[Condition]:
    """The well-formed conditions of an unreadable status (the rest is dropped)."""
    out = []
    for item in raw if isinstance(raw, list) else ():
        try:
            out.append(Condition.model_validate(item))
        except ValidationError:
            continue
    return out


def report(raw_status: Mapping[str, Any], problem: Problem, now: datetime) -> list[dict[str, Any]]:
    """status.conditions with Degraded=True for `problem`, for a status canaryd cannot read
    (only this field is written; the rest of the status is left as it is)."""
    merged = merge(readable(raw_status.get("conditions")), {DEGRADED: ("True", *problem)}, now)
    return [c.model_dump(mode="json", by_alias=True) for c in merged]
