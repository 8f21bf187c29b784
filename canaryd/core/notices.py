"""What people are told about a rollout, derived from its status alone. Pure.

Each notice is placed at a status.sequence value (a transition's seq, a hook run's
finished_seq), so a receiver's progress is one number per rollout (status.notified): any
replica that leads can send exactly what was not sent yet, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from canaryd.core import units
from canaryd.core.model import CheckResult, HistoryEntry, Phase, RolloutStatus, Verdict

ENDINGS = {Phase.ROLLED_BACK: "rolledBack", Phase.SUCCEEDED: "succeeded",
           Phase.FAILED: "failed", Phase.ABORTED: "aborted"}


@dataclass(frozen=True)
class Notice:
    event: str  # one of canaryd.core.hooksettings.EVENTS
    seq: int
    time: datetime
    namespace: str
    name: str
    uid: str
    target: str
    version: str
    phase: str
    reason: str
    step: str | None = None  # "2/3"
    weights: dict[str, int] | None = None
    failing: tuple[str, ...] = ()  # the failing checks, each "metric value threshold"
    checks: tuple[dict[str, Any], ...] = field(default=())  # their numbers
    hook: str | None = None
    previous: str | None = None  # what stable ran before (status.release.from)


def check_text(c: CheckResult) -> str:
    """A failed check as people read it: `istio-success-rate 94.84% (threshold >= 99%)`."""
    value = "no value" if c.value is None else units.quantity(c.value, c.unit or "")
    stable = (f", stable {units.quantity(c.stable_value, c.unit or '')}"
              if c.stable_value is not None else "")
    return f"{c.metric} {value} (threshold {c.threshold}{stable})"


def _event(entry: HistoryEntry) -> str | None:
    if entry.phase in ENDINGS:
        return ENDINGS[entry.phase]
    if entry.trigger == "CanaryReady":
        return "started"
    if entry.phase is Phase.PAUSED:
        return "paused"
    if entry.trigger == "StepPassed" and entry.source is Phase.PROGRESSING:
        return "stepPassed"
    return None


def _failing(status: RolloutStatus, upto: int) -> list[CheckResult]:
    """The failed checks of the last analysis run that failed at or before `upto`."""
    failed = [c for c in status.checks if c.verdict is Verdict.FAIL and not c.dry_run
              and c.seq <= upto]
    if not failed:
        return []
    last = max(c.seq for c in failed)
    return [c for c in failed if c.seq == last]


def previous(status: RolloutStatus) -> str | None:
    """What stable ran when the rollout started, as people name versions: its images."""
    release = status.release
    if release is None or release.from_ is None or not release.from_.images:
        return None
    return ", ".join(sorted(set(release.from_.images.values())))


def notices(meta: dict[str, Any], spec: dict[str, Any], status: RolloutStatus) -> list[Notice]:
    """Every notice status still holds, by seq."""
    before = previous(status)
    def make(**fields: Any) -> Notice:
        return Notice(namespace=str(meta.get("namespace", "")), name=str(meta.get("name", "")),
                      uid=str(meta.get("uid", "")), target=str(spec.get("target", "")),
                      version=str(spec.get("version", "")), previous=before, **fields)

    out: list[Notice] = []
    for entry in status.history:
        event = _event(entry)
        if event is None:
            continue
        failing: list[CheckResult] = []
        if event in ("rolledBack", "failed"):
            failing = _failing(status, entry.seq)
        step = (f"{status.step_index + 1}/{status.step_count}"
                if status.step_count else None)
        out.append(make(
            event=event, seq=entry.seq, time=entry.time, phase=entry.phase.value,
            reason=entry.reason, step=step,
            weights=entry.weights.wire() if entry.weights else None,
            failing=tuple(check_text(c) for c in failing),
            checks=tuple({"metric": c.metric, "value": c.value, "threshold": c.threshold,
                          "unit": c.unit, "stableValue": c.stable_value} for c in failing)))
    for run in status.hooks:
        if run.outcome == "Failed" and run.finished_seq is not None:
            where = f" (step {run.step + 1})" if run.step is not None else ""
            out.append(make(
                event="hookFailed", seq=run.finished_seq, time=run.finished or run.started,
                phase=status.phase.value, reason=f"{run.stage} hook {run.name}{where} "
                f"failed: {run.reason}", hook=run.id))
    out.sort(key=lambda n: n.seq)
    return out
