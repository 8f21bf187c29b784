"""Label and field selectors: parse the query-string syntax, match against objects.

Label selectors are parsed by a port of apimachinery's `labels.Parse` (its lexer, its
grammar, its error texts and its checks of keys and values): `=`, `==`, `!=`, `in`,
`notin`, `key`, `!key`, `gt`/`lt` (`>`/`<`). Field selectors support `=`, `==` and `!=`
over dotted paths; which paths a resource allows is decided by the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from canaryd.sandbox.apiserver.errors import ApiError, Obj

_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "==", "!=", "in", "notin", "exists", "!exists", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "==", "in"):
            return present and value in self.values
        if self.op in ("gt", "lt"):
            try:
                have, want = int(str(value)), int(self.values[0])
            except (ValueError, IndexError):
                return False
            return have > want if self.op == "gt" else have < want
        # "!=" and "notin" match objects that lack the key, as in apimachinery.
        return not present or value not in self.values


# -- apimachinery's labels.Parse, ported: its lexer, parser and error texts -------------------

_TOKENS = {")": "close", ",": "comma", "!": "not", "==": "eqeq", "=": "eq", ">": "gt",
           "in": "in", "<": "lt", "!=": "neq", "notin": "notin", "(": "open"}
_SPECIAL = set("=!(),><")
_BINARY = "in, notin, =, ==, !=, gt, lt"


def _lex(text: str) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            items.append(("end", ""))
            return items
        if text[pos] in _SPECIAL:
            buf, last = "", None
            while pos < len(text) and text[pos] in _SPECIAL:
                if buf + text[pos] in _TOKENS:
                    buf += text[pos]
                    last = (_TOKENS[buf], buf)
                    pos += 1
                elif last is not None:
                    break
                else:
                    buf += text[pos]
                    pos += 1
            items.append(last or ("error", f"error expected: keyword found '{buf}'"))
            continue
        start = pos
        while pos < len(text) and text[pos] not in _SPECIAL and text[pos] not in " \t\r\n":
            pos += 1
        word = text[start:pos]
        items.append((_TOKENS.get(word, "id"), word) if word in ("in", "notin") else ("id", word))


class _Parser:
    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.pos = 0

    def peek(self, values: bool = True) -> tuple[str, str]:
        tok, lit = self.items[self.pos]
        return ("id", lit) if values and tok in ("in", "notin") else (tok, lit)

    def take(self, values: bool = True) -> tuple[str, str]:
        item = self.peek(values)
        self.pos += 1
        return item

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self.peek()
            if tok in ("id", "not"):
                try:
                    reqs.append(self.requirement())
                except ValueError as exc:
                    raise ValueError(f"unable to parse requirement: {exc}") from None
                t, lit2 = self.take()
                if t == "end":
                    return reqs
                if t == "comma":
                    t2, l2 = self.peek()
                    if t2 not in ("id", "not"):
                        raise ValueError(f"found '{l2}', expected: identifier after ','")
                    continue
                raise ValueError(f"found '{lit2}', expected: ',' or 'end of string'")
            if tok == "end":
                return reqs
            raise ValueError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def requirement(self) -> Requirement:
        tok, key = self.take()
        op = ""
        if tok == "not":
            op = "!exists"
            tok, key = self.take()
        if tok != "id":
            raise ValueError(f"found '{key}', expected: identifier")
        if (err := _key_error(key)) is not None:
            raise ValueError(err)
        if op == "!exists" or self.peek()[0] in ("end", "comma"):
            return _requirement(key, op or "exists", [])
        tok, lit = self.take(values=False)
        ops = {"in": "in", "notin": "notin", "eq": "=", "eqeq": "==", "neq": "!=", "gt": "gt",
               "lt": "lt"}
        if tok not in ops:
            raise ValueError(f"found '{lit}', expected: {_BINARY}")
        op = ops[tok]
        values = self.set_values() if op in ("in", "notin") else self.exact_value()
        return _requirement(key, op, sorted(set(values)))

    def set_values(self) -> list[str]:
        tok, lit = self.take()
        if tok != "open":
            raise ValueError(f"found '{lit}' expected: '('")
        tok, lit = self.peek()
        if tok in ("id", "comma"):
            out = self.identifiers()
            if self.take()[0] != "close":
                raise ValueError(f"found '{lit}', expected: ')'")
            return out
        if tok == "close":
            self.take()
            return [""]
        raise ValueError(f"found '{lit}', expected: ',', ')' or identifier")

    def identifiers(self) -> list[str]:
        out: list[str] = []
        while True:
            tok, lit = self.take()
            if tok == "id":
                out.append(lit)
                t2, l2 = self.peek()
                if t2 == "comma":
                    continue
                if t2 == "close":
                    return out
                raise ValueError(f"found '{l2}', expected: ',' or ')'")
            if tok == "comma":
                if not out:
                    out.append("")
                t2, _ = self.peek()
                if t2 in ("close", "comma"):
                    out.append("")
                    if t2 == "close":
                        return out
                continue
            raise ValueError(f"found '{lit}', expected: ',', or identifier")

    def exact_value(self) -> list[str]:
        tok, _ = self.peek()
        if tok in ("end", "comma"):
            return [""]
        tok, lit = self.take()
        if tok == "id":
            return [lit]
        raise ValueError(f"found '{lit}', expected: identifier")


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    eg = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {eg}regex used for validation is '{fmt}')"


_KEY_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character")
_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"


def _key_error(key: str) -> str | None:
    errs: list[str] = []
    parts = key.split("/")
    if len(parts) > 2:
        errs.append("a valid label key " + _regex_error(_KEY_MSG, _KEY_FMT, "MyName", "my.name",
                                                        "123-abc") +
                    " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')")
        name = ""
    else:
        name = parts[-1]
        if len(parts) == 2:
            prefix = parts[0]
            if not prefix:
                errs.append("prefix part must be non-empty")
            else:
                if len(prefix) > 253:
                    errs.append("prefix part must be no more than 253 bytes")
                if not _DNS_SUBDOMAIN.match(prefix):
                    errs.append("prefix part " + _regex_error(
                        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                        "characters, '-' or '.', and must start and end with an alphanumeric "
                        "character", "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*"
                        "[a-z0-9])?)*", "example.com"))
    if len(parts) <= 2:
        if not name:
            errs.append("name part must be non-empty")
        elif len(name) > 63:
            errs.append("name part must be no more than 63 bytes")
        if not _LABEL_NAME.match(name):
            errs.append("name part " + _regex_error(_KEY_MSG, _KEY_FMT, "MyName", "my.name",
                                                    "123-abc"))
    if not errs:
        return None
    return f'key: Invalid value: "{key}": ' + "; ".join(errs)


def _requirement(key: str, op: str, values: list[str]) -> Requirement:
    """labels.NewRequirement: the value checks, worded as field errors on `values`."""
    errs: list[str] = []
    for i, v in enumerate(values):
        msgs = []
        if len(v) > 63:
            msgs.append("must be no more than 63 bytes")
        if not _LABEL_VALUE.match(v):
            msgs.append(_regex_error(
                "a valid label must be an empty string or consist of alphanumeric characters, "
                "'-', '_' or '.', and must start and end with an alphanumeric character",
                "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", "MyValue", "my_value", "12345"))
        if msgs:
            errs.append(f'values[{i}][{key}]: Invalid value: "{v}": ' + "; ".join(msgs))
    if op in ("gt", "lt"):
        for i, v in enumerate(values):
            if not re.fullmatch(r"[+-]?\d+", v):
                errs.insert(0, f'values[{i}]: Invalid value: "{v}": for \'Gt\', \'Lt\' '
                               "operators, the value must be an integer")
    if errs:
        raise ValueError(errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]")
    return Requirement(key, op, tuple(values))


def parse_labels(text: str | None) -> list[Requirement]:
    if not text:
        return []
    try:
        return _Parser(text).parse()
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def labels_match(reqs: list[Requirement], obj: Obj) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in reqs)


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    negate: bool
    value: str

    def matches(self, obj: Obj) -> bool:
        actual = field_value(obj, self.path)
        return (actual != self.value) if self.negate else (actual == self.value)


def field_value(obj: Obj, path: str) -> str:
    cur: object = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_fields(text: str | None) -> list[FieldRequirement]:
    if not text:
        return []
    out: list[FieldRequirement] = []
    for part in text.split(","):
        if not part.strip():
            continue
        m = re.match(r"^\s*([A-Za-z0-9._-]+)\s*(==|!=|=)\s*(.*?)\s*$", part)
        if not m:
            raise ApiError(400, f"invalid selector: '{text}'; can't understand '{part}'")
        out.append(FieldRequirement(m.group(1), m.group(2) == "!=", m.group(3)))
    return out


def fields_match(reqs: list[FieldRequirement], obj: Obj) -> bool:
    return all(r.matches(obj) for r in reqs)


@dataclass(frozen=True)
class Matcher:
    """A parsed label plus field selector; callable on an object."""

    labels: list[Requirement]
    fields: list[FieldRequirement]

    def __call__(self, obj: Obj) -> bool:
        return labels_match(self.labels, obj) and fields_match(self.fields, obj)
