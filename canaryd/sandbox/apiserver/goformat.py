"""Values as Go's apimachinery prints them in error messages: `field.Error` bad values
(`%q` strings, JSON for everything else) and encoding/json output."""

from __future__ import annotations

import json
import math
from typing import Any


class GoJSON(str):
    """A value already encoded as Go's json.Marshal would (a struct dump)."""


def _go_float(v: float) -> str:
    if math.isfinite(v) and v == int(v) and abs(v) < 1e21:
        return str(int(v))
    return repr(v)


def go_json(v: Any) -> str:
    """encoding/json.Marshal: compact, map keys sorted, HTML characters escaped."""
    if isinstance(v, GoJSON):
        return str(v)
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, str):
        out = json.dumps(v, ensure_ascii=False)
        for a, b in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                     ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
            out = out.replace(a, b)
        return out
    if isinstance(v, dict):
        return "{" + ",".join(f"{go_json(str(k))}:{go_json(v[k])}" for k in sorted(v)) + "}"
    if isinstance(v, list | tuple):
        return "[" + ",".join(go_json(x) for x in v) + "]"
    return go_json(str(v))


def go_quote(s: str) -> str:
    """strconv.Quote / %q."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif 0x80 <= o < 0xA0:
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_value(v: Any) -> str:
    """How field.Error renders a bad value."""
    if isinstance(v, GoJSON):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, str):
        return go_quote(v)
    return go_json(v)
