"""A rollout's event stream, rebuilt from its status alone. Pure.

Every transition (status.history), every analysis run (status.checks) and every hook call's
start and finish (status.hooks: seq, finishedSeq) carries the value of status.sequence when
it was recorded; each increment of the counter is exactly one of them. So any replica can
replay the stream from any point, and an event id is a position in it:

    "7"        the transition with seq 7
    "8.2"      the 2nd check result of the analysis run with seq 8
    "9.final"  the verdict, once the rollout is terminal (status.sequence was 9)

Events with an id are ordered by (seq, sub). A `Last-Event-ID` names the last one the client
saw; `events_after` returns everything after it. What status no longer keeps (history and
checks are capped) is reported as one `gap` event rather than silently skipped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from canaryd.core import reading
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


_EVENT_ID = re.compile(r"^([0-9]{1,15})(?:\.([0-9]{1,9}|final))?$")  # ASCII digits only


def parse_id(text: str | None) -> Position | None:
    """The position a Last-Event-ID names; None when absent, ValueError when malformed.
    Only ids this server issues parse (not `1_0`, not full-width digits): the check is one
    anchored match over at most a few dozen characters."""
    if text is None or not text.strip():
        return None
    match = _EVENT_ID.match(text.strip())
    if match is None:
        raise ValueError("not an event id")
    seq, sub_text = int(match.group(1)), match.group(2)
    sub = FINAL if sub_text == "final" else (int(sub_text) if sub_text else 0)
    return (seq, sub)


def _count(value: Any) -> int | None:
    """A non-negative integer as written by canaryd, or None for anything else."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def snapshot(obj: dict[str, Any]) -> Event:
    """Where the rollout stands now (no id: it is not part of the replayable history). A
    status canaryd cannot read shows as phase Unknown, with the reason."""
    read = reading.read_status(obj)
    status = _status(obj) if read.status is not None else {"reason": read.problem}
    meta = obj.get("metadata") or {}
    return Event("state", {
        "rollout": f"{meta.get('namespace')}/{meta.get('name')}",
        "phase": read.label,
        "stepIndex": status.get("stepIndex", 0),
        "stepNumber": int(status.get("stepIndex", 0)) + 1,
        "stepCount": status.get("stepCount"),
        "weights": status.get("weights"),
        "reason": status.get("reason", ""),
        "sequence": status.get("sequence", 0),
    })


def _transition(entry: dict[str, Any], seq: int) -> Event:
    data = {k: entry.get(k) for k in ("seq", "time", "source", "phase", "trigger", "reason")}
    data["weights"] = entry.get("weights")
    return Event("transition", data, (seq, 0))


def _check(check: dict[str, Any], index: int, seq: int) -> Event:
    keys = ("seq", "time", "metric", "value", "unit", "stableValue", "requests",
            "errors", "stableErrors", "expectedErrors", "canaryShare", "threshold", "verdict",
            "reason", "query", "dryRun", "decisive")
    data = {k: check.get(k) for k in keys}
    step = _count(check.get("stepIndex", check.get("step"))) or 0  # `step` in older status
    data["stepIndex"], data["stepNumber"] = step, step + 1
    data["index"] = index
    return Event("check", data, (seq, index))


def _hook(run: dict[str, Any], seq: int, what: str) -> Event:
    """A hook call started (seq) or finished (finishedSeq): one status.sequence each."""
    data = {k: run.get(k) for k in ("id", "name", "stage", "step", "started", "finished",
                                    "reason", "asks")}
    data["outcome"] = run.get("outcome") if what == "finished" else "Running"
    data["time"] = run.get("finished") if what == "finished" else run.get("started")
    data["seq"] = seq
    return Event("hook", data, (seq, 0))


def verdict(obj: dict[str, Any]) -> Event:
    status = _status(obj)
    phase = reading.read_status(obj).phase or Phase.PENDING
    return Event("verdict", {
        "phase": phase.value,
        "succeeded": phase is Phase.SUCCEEDED,
        "reason": status.get("reason", ""),
        "weights": status.get("weights"),
        "failures": status.get("failures", 0),
    }, (_sequence(status), FINAL))


def _status(obj: dict[str, Any]) -> dict[str, Any]:
    status = obj.get("status")
    return status if isinstance(status, dict) else {}



def _sequence(status: dict[str, Any]) -> int:
    return _count(status.get("sequence")) or 0


def _entries(status: dict[str, Any], key: str) -> list[tuple[dict[str, Any], int]]:
    """The entries of status[key] that carry a usable seq (others are skipped: whoever
    wrote them, they cannot be placed in the stream)."""
    items = status.get(key)
    out = []
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and (seq := _count(item.get("seq", 0))) is not None:
            out.append((item, seq))
    return out


def recorded(obj: dict[str, Any]) -> list[Event]:
    """Every event status still holds, in stream order (verdict last, if terminal)."""
    status = _status(obj)
    events = [_transition(h, seq) for h, seq in _entries(status, "history") if "seq" in h]
    subs: dict[int, int] = {}
    for check, seq in _entries(status, "checks"):
        subs[seq] = subs.get(seq, 0) + 1
        events.append(_check(check, subs[seq], seq))
    for run, seq in _entries(status, "hooks"):
        events.append(_hook(run, seq, "started"))
        done = _count(run.get("finishedSeq"))
        if done is not None and run.get("outcome") in ("Passed", "Failed", "Cancelled"):
            events.append(_hook(run, done, "finished"))
    events.sort(key=lambda e: e.position or START)
    if reading.read_status(obj).terminal:
        events.append(verdict(obj))
    return events


def events_after(obj: dict[str, Any], after: Position | None) -> list[Event]:
    """The events after `after` (all of them for None), with a `gap` event first when status
    no longer holds some of them."""
    start = after or START
    every = recorded(obj)
    events = [e for e in every if (e.position or START) > start]
    gap = _gap(start[0] + 1, _sequence(_status(obj)),
               {e.position[0] for e in every if e.position is not None})
    return [gap, *events] if gap is not None else events


def _gap(lo: int, hi: int, present: set[int]) -> Event | None:
    """The seqs in lo..hi that status no longer holds, as one event. O(len(present)), not
    O(hi - lo): a status may claim any sequence number."""
    if hi < lo:
        return None
    held = sorted(s for s in present if lo <= s <= hi)
    missing = (hi - lo + 1) - len(held)
    if missing <= 0:
        return None
    first, last = lo, hi
    for s in held:  # ascending: skip the held run at the start
        if s != first:
            break
        first += 1
    for s in reversed(held):  # descending: skip the held run at the end
        if s != last:
            break
        last -= 1
    return Event("gap", {"from": first, "to": last, "missing": missing,
                         "detail": "older events are no longer kept in the rollout status"})


def done(obj: dict[str, Any], last: Position | None) -> bool:
    """Whether the client has seen the verdict: nothing more will ever follow."""
    return last is not None and last[1] == FINAL and reading.read_status(obj).terminal
