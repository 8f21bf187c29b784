"""Safe PromQL rendering.

Templates contain `{{ name }}` placeholders. Every value placed into a template is escaped
for a double-quoted PromQL string (Go escape rules), and values placed into regex matchers
are RE2-escaped first. Names are also validated (DNS-1123) before they get here; this module
holds even if a bad one slipped through.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from canaryd.core.durations import format_duration

PLACEHOLDER = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
_RE2_META = re.compile(r"([\\.+*?()|\[\]{}^$])")


class TemplateError(ValueError):
    """A template names a placeholder nobody supplies, or is otherwise unusable."""


# Exactly what Prometheus' lexer reads inside a double-quoted string (promql/parser/lex.go,
# lexEscape): the Go escapes \a \b \f \n \r \t \v \\ and \" (not \' : "unknown escape
# sequence" there), \xNN, \uNNNN. A raw newline ends the string; U+FFFD, valid as it is,
# is taken for an invalid UTF-8 byte by the lexer (it reads utf8.RuneError), so it goes as
# \ufffd. Everything else passes as UTF-8.
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\a": "\\a", "\b": "\\b", "\f": "\\f",
            "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v", "\ufffd": "\\ufffd"}


def escape_string(value: str) -> str:
    """Escape `value` for the inside of a double-quoted PromQL string literal."""
    out: list[str] = []
    for ch in value:
        escaped = _ESCAPES.get(ch)
        if escaped is not None:
            out.append(escaped)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            raise TemplateError("a lone surrogate cannot be sent to Prometheus (not UTF-8)")
        else:
            out.append(ch)
    return "".join(out)


def escape_regex(value: str) -> str:
    """RE2-escape `value` so a regex matcher matches it literally."""
    return _RE2_META.sub(r"\\\1", value)


def regex_alternation(values: Iterable[str]) -> str:
    """A quoted regex matching exactly the given values (never the empty string)."""
    items = sorted({v for v in values if v})
    if not items:
        raise TemplateError("a regex matcher needs at least one non-empty value")
    return '"' + escape_string("|".join(escape_regex(v) for v in items)) + '"'


def placeholders(template: str) -> set[str]:
    return set(PLACEHOLDER.findall(template))


def render(template: str, *, strings: Mapping[str, str], raw: Mapping[str, str]) -> str:
    """Fill placeholders. `strings` are escaped (the template supplies the quotes);
    `raw` values are trusted fragments this package built itself (matchers, durations)."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in raw:
            return raw[name]
        if name in strings:
            return escape_string(strings[name])
        raise TemplateError(f"unknown placeholder {{{{ {name} }}}}")

    return PLACEHOLDER.sub(fill, template)


def duration(seconds: float) -> str:
    """A PromQL range duration; Prometheus 2.x rejects fractional forms like 1.5s."""
    return format_duration(max(seconds, 0.001))
