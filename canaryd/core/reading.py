"""Reading a Rollout object that any client may have written. Pure and total.

`kubectl`, a GitOps tool or a script with status access can put anything into a Rollout's
status. Everything that reads one (the controller, the API, the event stream) goes through
`read_status`, which never raises: a status canaryd can act on comes back parsed; anything
else (an unknown phase, wrong types, fields a phase needs missing, more than canaryd ever
writes) comes back as *unknown*, with the reason, for that object alone. `entry` is the one
place a cached object becomes a `targets.Entry` for arbitration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from canaryd.core import targets
from canaryd.core.model import RETIRED_STATUS_FIELDS, Phase, RolloutStatus

UNKNOWN = "Unknown"  # the phase label of a status canaryd cannot read
_PHASES = frozenset(p.value for p in Phase)
_CONVERGED = (Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING, Phase.ROLLING_BACK)


@dataclass(frozen=True)
class StatusRead:
    """A status as read: `status` when canaryd can act on it, else None and `problem`."""

    status: RolloutStatus | None
    problem: str = ""

    @property
    def phase(self) -> Phase | None:
        return self.status.phase if self.status is not None else None

    @property
    def label(self) -> str:
        """The phase as shown (API, metrics, stream): its value, or "Unknown"."""
        return self.status.phase.value if self.status is not None else UNKNOWN

    @property
    def terminal(self) -> bool:
        return self.status is not None and self.status.phase.terminal

    @property
    def active(self) -> bool:
        """Not finished as far as canaryd can tell: an unreadable status may still hold
        traffic, so it keeps its target (and is never treated as done)."""
        return not self.terminal


def errors_text(exc: ValidationError, root: str, limit: int = 5) -> str:
    """Pydantic errors as `root.path: message; ...` (the first `limit` of them)."""
    parts = []
    for err in exc.errors()[:limit]:
        path = ".".join([root, *(str(p) for p in err["loc"])])
        parts.append(f"{path}: {err['msg']}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _phase_problem(raw: Mapping[str, Any]) -> str | None:
    value = raw.get("phase")
    if value is None or (isinstance(value, str) and value in _PHASES):  # a list: unhashable
        return None
    shown = repr(value)[:60]
    return f"status.phase: {shown} is not a phase ({', '.join(p.value for p in Phase)})"


def _consistency(status: RolloutStatus) -> str | None:
    """What a phase needs that canaryd always records on entering it."""
    phase = status.phase
    if phase not in _CONVERGED:
        return None
    missing = [name for name, value in (("weights", status.weights),
                                        ("phaseStartedAt", status.phase_started_at))
               if value is None]
    if phase in (Phase.PROGRESSING, Phase.PAUSED) and status.step_started_at is None:
        missing.append("stepStartedAt")
    if missing:
        return f"status.{missing[0]}: missing, and phase {phase.value} needs it" + (
            f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else "")
    weights = status.weights
    assert weights is not None
    if not (0 <= weights.canary <= 100 and weights.stable + weights.canary == 100):
        return (f"status.weights: {weights.stable}/{weights.canary} are not two percentages "
                "adding up to 100")
    if status.step_count is not None and status.step_index >= max(status.step_count, 1):
        return f"status.stepIndex: {status.step_index} is beyond stepCount {status.step_count}"
    return None


def read_status(obj: Mapping[str, Any]) -> StatusRead:
    """The status of Rollout `obj`, parsed, or unknown with the reason. Never raises."""
    raw = obj.get("status")
    if raw is None or raw == {}:
        return StatusRead(RolloutStatus())
    if not isinstance(raw, Mapping):
        return StatusRead(None, f"status: a {type(raw).__name__}, not an object")
    problem = _phase_problem(raw)
    if problem is not None:
        return StatusRead(None, problem)
    if any(name in raw for name in RETIRED_STATUS_FIELDS):
        raw = {k: v for k, v in raw.items() if k not in RETIRED_STATUS_FIELDS}
    try:
        status = RolloutStatus.model_validate(raw)
    except ValidationError as exc:
        return StatusRead(None, errors_text(exc, "status"))
    problem = _consistency(status)
    if problem is not None:
        return StatusRead(None, problem)
    return StatusRead(status)


def key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def entry(obj: Mapping[str, Any], read: StatusRead | None = None) -> targets.Entry:
    """The object's part in target arbitration (`read`: its status, if already read)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    read = read if read is not None else read_status(obj)
    return targets.Entry(
        namespace=str(meta.get("namespace", "")), name=str(meta.get("name", "")),
        target=str(spec.get("target", "")), created=str(meta.get("creationTimestamp", "")),
        phase=read.phase, supersede=spec.get("supersede") is True,
        claims=targets.claims(spec),
    )
