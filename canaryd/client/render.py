"""One human line per event, for pipeline logs. Pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from canaryd.client.follow import Event


def _clock(text: Any) -> str:
    if isinstance(text, str):
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).strftime("%H:%M:%S")
        except ValueError:
            pass
    return datetime.now(UTC).strftime("%H:%M:%S")


def _weights(w: Any) -> str:
    if not isinstance(w, dict):
        return ""
    return f"canary {w.get('canary')}% / stable {w.get('stable')}%"


def _number(value: Any) -> str:
    if value is None:
        return "no value"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def line(event: Event) -> str | None:
    d = event.data
    if event.kind == "state":
        step = ""
        if d.get("stepCount"):
            step = f", step {int(d.get('stepIndex') or 0) + 1}/{d['stepCount']}"
        weights = _weights(d.get("weights"))
        reason = f": {d['reason']}" if d.get("reason") else ""
        return (f"{_clock(None)} rollout {d.get('rollout')} is {d.get('phase')}{step}"
                f"{' (' + weights + ')' if weights else ''}{reason}")
    if event.kind == "transition":
        weights = _weights(d.get("weights"))
        moved = (f"{d.get('source')} -> {d.get('phase')}" if d.get("source") != d.get("phase")
                 else f"{d.get('phase')}")
        return (f"{_clock(d.get('time'))} {moved}{'  [' + weights + ']' if weights else ''}"
                f"  {d.get('reason', '')}")
    if event.kind == "check":
        stable = ""
        if d.get("stableValue") is not None:
            stable = f", stable {_number(d['stableValue'])}"
        return (f"{_clock(d.get('time'))}   check {d.get('metric')} (step "
                f"{int(d.get('step') or 0) + 1}): {_number(d.get('value'))} vs "
                f"{d.get('threshold')}{stable} -> {d.get('verdict')}: {d.get('reason', '')}")
    if event.kind == "gap":
        return f"{_clock(None)} ({d.get('missing')} earlier events are no longer kept)"
    if event.kind == "verdict":
        return f"{_clock(None)} verdict: {d.get('phase')}: {d.get('reason', '')}"
    return None
