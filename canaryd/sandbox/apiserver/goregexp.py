"""Regular expressions as kube-apiserver runs them: RE2 syntax and semantics (Go's `regexp`).

CRD `pattern`s are compiled and matched by Go's regexp package, whose syntax is RE2's, not
Python's: lookarounds and backreferences are refused, `\\z`, `\\pL`, `\\Q...\\E` and `(?<name>)`
are accepted, and `[[:alpha:]]` is a POSIX class. google-re2 (the RE2 library Go's parser was
ported from) gives the same verdicts; its error texts are mapped to Go's `regexp/syntax` ones
so that a refused pattern reads as on a real server:
``error parsing regexp: missing closing ): `(a` ``.
"""

from __future__ import annotations

import functools
from typing import Any

import re2

# RE2 (C++) error code texts -> Go's regexp/syntax ErrorCode texts.
_GO_CODES = {
    "missing )": "missing closing )",
    "missing ]": "missing closing ]",
    "unexpected )": "unexpected )",
    "trailing \\": "trailing backslash at end of expression",
    "bad repetition operator": "invalid nested repetition operator",
    "invalid repetition size": "invalid repeat count",
    "invalid perl operator": "invalid or unsupported Perl syntax",
    "invalid escape sequence": "invalid escape sequence",
    "invalid character class range": "invalid character class range",
    "invalid character class": "invalid character class",
    "invalid named capture group": "invalid named capture",
    "bad named capture group": "invalid named capture",
    "missing argument to repetition operator": "missing argument to repetition operator",
    "invalid UTF-8": "invalid UTF-8",
    "pattern too large - compile failed": "expression too large",
    "pattern too large - reverse compile failed": "expression too large",
    "excessive depth": "expression nests too deeply",
}


def _options() -> Any:
    opts = re2.Options()
    opts.log_errors = False  # RE2 would print every refused pattern to stderr
    return opts


class GoRegexpError(ValueError):
    """A pattern Go's regexp refuses; `str()` is Go's error text."""


def _go_error(pattern: str, exc: Exception) -> str:
    raw = exc.args[0] if exc.args else str(exc)
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    code, _, arg = text.partition(": ")
    # Go 1.22+ reads "(?<" as the start of a named capture, so lookbehinds fail there.
    at = pattern.find("(?<")
    if code == "invalid perl operator" and at >= 0 and pattern[at:].startswith(("(?<=", "(?<!")):
        rest = pattern[at:]
        end = rest.find(">")
        arg = rest if end < 0 else rest[:end + 1]
        return f"error parsing regexp: invalid named capture: `{arg}`"
    go_code = _GO_CODES.get(code, code)
    if go_code == "trailing backslash at end of expression":
        arg = ""
    return f"error parsing regexp: {go_code}: `{arg}`"


@functools.lru_cache(maxsize=1024)
def compile_go(pattern: str) -> Any:
    """The compiled pattern; raises GoRegexpError with Go's message if Go would refuse it."""
    try:
        return re2.compile(pattern, _options())
    except re2.error as exc:
        raise GoRegexpError(_go_error(pattern, exc)) from None


def error_of(pattern: str) -> str | None:
    """Go's error text for `pattern`, or None when it compiles."""
    try:
        compile_go(pattern)
    except GoRegexpError as exc:
        return str(exc)
    return None


def search(pattern: str, value: str) -> bool:
    """`regexp.MatchString`: does `pattern` match anywhere in `value`?"""
    return compile_go(pattern).search(value) is not None
