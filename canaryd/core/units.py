"""Numbers as people read them: with the metric template's unit and a precision that fits.

Latency quantiles read from histogram buckets are only as fine as the buckets (see
docs/analysis.md), so milliseconds print as whole numbers; success rates keep four
significant digits (99.87%), counts print as integers. Pure.
"""

from __future__ import annotations

import math

_TIGHT_UNITS = frozenset({"%"})  # written without a space: 99.5%


def number(value: float, unit: str = "") -> str:
    """`value` rounded for display (no unit)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    size = abs(value)
    if unit == "ms":
        text = f"{value:.0f}" if size >= 10 else f"{value:.2g}"
    elif size >= 1000 or (size >= 1 and value == round(value)):
        text = f"{value:.0f}"
    else:
        text = f"{value:.4g}"
    if "e" in text:  # tiny values: no exponent notation
        text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "0.0") else text


def with_unit(text: str, unit: str) -> str:
    if not unit:
        return text
    return f"{text}{unit}" if unit in _TIGHT_UNITS else f"{text} {unit}"


def quantity(value: float, unit: str = "") -> str:
    """A measured value with its unit: `94 ms`, `99.87%`, `12`."""
    return with_unit(number(value, unit), unit)


def limit(value: float, unit: str = "") -> str:
    """A configured threshold with its unit, exactly as written (`200 ms`, `99.5%`)."""
    return with_unit(f"{value:g}", unit)
