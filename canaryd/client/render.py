"""One human line per event, for pipeline logs. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from canaryd.client.follow import Event
from canaryd.core import units


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


MARKS = {"Pass": "ok", "Fail": "FAIL", "Inconclusive": "inconclusive",
         "NotApplicable": "not applicable"}


def step_of(status: Mapping[str, Any]) -> str:
    """status.stepProgress ("2/3", 1-based), or worked out from status written before it."""
    if status.get("stepProgress"):
        return str(status["stepProgress"])
    return f"{int(status.get('stepIndex', 0)) + 1}/{status.get('stepCount', '?')}"


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _e_value(value: float) -> str:
    text = f"{value:.3g}"
    return f"{value:.0f}" if "e" in text and value < 1e6 else text


def check_line(c: Mapping[str, Any]) -> str:
    """One check result (from status or a `check` event), saying each number once:
    `istio-latency-p99 94 ms <= 200 ms ok`,
    `istio-error-count e=52 (5 of 6 errors on 10% of traffic) < 100 FAIL`."""
    unit = str(c.get("unit") or "")
    threshold = str(c.get("threshold") or "")
    value = _float(c.get("value"))
    verdict = str(c.get("verdict") or "")
    if threshold.startswith("e-value") or c.get("canaryShare") is not None:
        canary = _float(c.get("errors"))
        stable = _float(c.get("stableErrors")) or 0.0
        share = _float(c.get("canaryShare"))
        expected = _float(c.get("expectedErrors"))
        what = "slow requests" if unit == "ms" else "errors"  # latency histograms
        seen = ""
        if canary is not None and expected is not None:
            # evidence over the whole rollout, at whatever shares the steps had
            seen = f" ({canary:.0f} {what} where its traffic share explains {expected:.1f})"
        elif canary is not None:
            on = f" on {units.quantity(share * 100, '%')} of traffic" if share else ""
            seen = f" ({canary:.0f} of {canary + stable:.0f} errors{on})"
        body = (f"e={'?' if value is None else _e_value(value)}{seen} "
                f"{threshold.removeprefix('e-value ')}")
    else:
        body = "no value" if value is None else units.quantity(value, unit)
        stable_value = _float(c.get("stableValue"))
        if stable_value is not None:
            body += f" (stable {units.quantity(stable_value, unit)})"
        body += f" {threshold}"
    line = f"{c.get('metric')} {body} {MARKS.get(verdict, verdict)}"
    if verdict in ("Inconclusive", "NotApplicable") and c.get("reason"):
        line += f": {c['reason']}"
    if c.get("dryRun"):
        line = f"[dry-run] {line}"  # recorded, never decides: shown apart
    return line


def hook_line(h: Mapping[str, Any]) -> str:
    """One hook call: `hook step/load (step 2) Passed: HTTP 200`."""
    step = h.get("step")
    where = f" (step {int(step) + 1})" if isinstance(step, int) else ""
    asks = f", asked {h['asks']}x" if (h.get("asks") or 0) > 1 else ""
    reason = f": {h['reason']}" if h.get("reason") else ""
    return f"hook {h.get('stage')}/{h.get('name')}{where} {h.get('outcome')}{asks}{reason}"


def line(event: Event) -> str | None:
    d = event.data
    if event.kind == "state":
        step = ""
        if d.get("stepCount"):
            number = d.get("stepNumber") or int(d.get("stepIndex") or 0) + 1
            step = f", step {number}/{d['stepCount']}"
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
        number = d.get("stepNumber") or int(d.get("step") or 0) + 1
        return f"{_clock(d.get('time'))}   [step {number}] {check_line(d)}"
    if event.kind == "hook":
        return f"{_clock(d.get('time'))}   {hook_line(d)}"
    if event.kind == "gap":
        return f"{_clock(None)} ({d.get('missing')} earlier events are no longer kept)"
    if event.kind == "verdict":
        return f"{_clock(None)} verdict: {d.get('phase')}: {d.get('reason', '')}"
    return None
