"""Go-style durations ("30s", "1m30s", "500ms") as used in Kubernetes manifests."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_SECONDS = 30 * 24 * 3600.0  # longer than any pause, timeout or interval is meant to be


def parse_duration(value: object) -> float:
    """Seconds from a duration string or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a string like '30s' or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("empty duration")
        pos, seconds = 0, 0.0
        for match in _PART.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(text):
            raise ValueError(
                f"{value!r} is not a duration (use e.g. '30s', '5m', '1h30m', '500ms')"
            )
    else:
        raise ValueError("a duration must be a string like '30s' or a number of seconds")
    if not math.isfinite(seconds):
        raise ValueError("a duration must be a finite number")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_SECONDS:
        raise ValueError(f"at most {format_duration(MAX_SECONDS)} (30 days)")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest Go/Prometheus duration string for `seconds` (millisecond precision)."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    if ms % 1000:
        return f"{ms}ms"
    total = ms // 1000
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if secs:
        out += f"{secs}s"
    return out


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]
