"""A rollout's event stream, rebuilt from its status alone. Pure.

Every transition (status.history) and every analysis run (status.checks) carries `seq`, the
value of status.sequence when it was recorded; each increment of the counter is exactly one
of the two. So any replica can replay the stream from any point, and an event id is a
position in it:

    "7"        the transition with seq 7
    "8.2"      the 2nd check result of the analysis run with seq 8
    "9.final"  the verdict, once the rollout is terminal (status.sequence was 9)

Events with an id are ordered by (seq, sub). A `Last-Event-ID` names the last one the client
saw; `events_after` returns everything after it. What status no longer keeps (history and
checks are capped) is reported as one `gap` event rather than silently skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from canaryd.core.model import Phase

FINAL = 1 << 30  # the verdict sorts after every check of the last seq
Position = tuple[int, int]
START: Position = (0, 0)


@dataclass(frozen=True)
class Event:
    kind: str
    data: dict[str, Any]
    position: Position | None = None

    @property
    def id(self) -> str | None:
        return None if self.position is None else format_id(self.position)

    def encode(self) -> bytes:
        lines = []
        if self.id is not None:
            lines.append(f"id: {self.id}")
        lines.append(f"event: {self.kind}")
        lines.append("data: " + json.dumps(self.data, separators=(",", ":")))
        return ("\n".join(lines) + "\n\n").encode()


def format_id(position: Position) -> str:
    seq, sub = position
    if sub == 0:
        return str(seq)
    return f"{seq}.final" if sub == FINAL else f"{seq}.{sub}"


def parse_id(text: str | None) -> Position | None:
    """The position a Last-Event-ID names; None when absent, ValueError when malformed."""
    if text is None or not text.strip():
        return None
    seq_text, _, sub_text = text.strip().partition(".")
    seq = int(seq_text)
    sub = FINAL if sub_text == "final" else (int(sub_text) if sub_text else 0)
    if seq < 0 or sub < 0 or seq > 1 << 40:
        raise ValueError("out of range")
    return (seq, sub)


def phase_of(obj: dict[str, Any]) -> Phase:
    try:
        return Phase((obj.get("status") or {}).get("phase", Phase.PENDING.value))
    except ValueError:
        return Phase.PENDING


def snapshot(obj: dict[str, Any]) -> Event:
    """Where the rollout stands now (no id: it is not part of the replayable history)."""
    status = obj.get("status") or {}
    meta = obj.get("metadata") or {}
    return Event("state", {
        "rollout": f"{meta.get('namespace')}/{meta.get('name')}",
        "phase": phase_of(obj).value,
        "stepIndex": status.get("stepIndex", 0),
        "stepNumber": int(status.get("stepIndex", 0)) + 1,
        "stepCount": status.get("stepCount"),
        "weights": status.get("weights"),
        "reason": status.get("reason", ""),
        "sequence": status.get("sequence", 0),
    })


def _transition(entry: dict[str, Any]) -> Event:
    data = {k: entry.get(k) for k in ("seq", "time", "source", "phase", "trigger", "reason")}
    data["weights"] = entry.get("weights")
    return Event("transition", data, (int(entry["seq"]), 0))


def _check(check: dict[str, Any], index: int) -> Event:
    keys = ("seq", "time", "metric", "value", "unit", "stableValue", "requests",
            "errors", "stableErrors", "canaryShare", "threshold", "verdict", "reason", "query")
    data = {k: check.get(k) for k in keys}
    step = int(check.get("stepIndex", check.get("step")) or 0)  # `step` in older status
    data["stepIndex"], data["stepNumber"] = step, step + 1
    data["index"] = index
    return Event("check", data, (int(check.get("seq", 0)), index))


def verdict(obj: dict[str, Any]) -> Event:
    status = obj.get("status") or {}
    phase = phase_of(obj)
    return Event("verdict", {
        "phase": phase.value,
        "succeeded": phase is Phase.SUCCEEDED,
        "reason": status.get("reason", ""),
        "weights": status.get("weights"),
        "failures": status.get("failures", 0),
    }, (int(status.get("sequence", 0)), FINAL))


def recorded(obj: dict[str, Any]) -> list[Event]:
    """Every event status still holds, in stream order (verdict last, if terminal)."""
    status = obj.get("status") or {}
    events = [_transition(h) for h in status.get("history") or [] if "seq" in h]
    subs: dict[int, int] = {}
    for check in status.get("checks") or []:
        seq = int(check.get("seq", 0))
        subs[seq] = subs.get(seq, 0) + 1
        events.append(_check(check, subs[seq]))
    events.sort(key=lambda e: e.position or START)
    if phase_of(obj).terminal:
        events.append(verdict(obj))
    return events


def events_after(obj: dict[str, Any], after: Position | None) -> list[Event]:
    """The events after `after` (all of them for None), with a `gap` event first when status
    no longer holds some of them."""
    start = after or START
    every = recorded(obj)
    events = [e for e in every if (e.position or START) > start]
    status = obj.get("status") or {}
    present = {e.position[0] for e in every if e.position is not None}
    missing = [s for s in range(start[0] + 1, int(status.get("sequence", 0)) + 1)
               if s not in present]
    if missing:
        gap = Event("gap", {"from": missing[0], "to": missing[-1], "missing": len(missing),
                            "detail": "older events are no longer kept in the rollout status"})
        return [gap, *events]
    return events


def done(obj: dict[str, Any], last: Position | None) -> bool:
    """Whether the client has seen the verdict: nothing more will ever follow."""
    return last is not None and last[1] == FINAL and phase_of(obj).terminal
