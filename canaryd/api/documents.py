"""Parsing a request document, bounded in depth, size and count: JSON or YAML; one mapping;
no YAML aliases. Light (json and yaml only): `python -m canaryd.api.documents` is the
worker process that `canaryd.api.body.Decoder` sends large documents to (`serve`), and it
imports nothing else.

YAML is scanned event by event with libyaml and refused at the first event beyond
MAX_DEPTH levels or MAX_NODES values; JSON is walked the same way after decoding. YAML
anchors and aliases are refused: a few hundred bytes of nested aliases expand into an
exponentially large document during validation (the "billion laughs"), and a Rollout
manifest has no use for them.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import sys
from dataclasses import dataclass
from typing import Any, BinaryIO

import yaml

MAX_DEPTH = 24  # a Rollout manifest nests 6 levels deep; its status, 5
MAX_NODES = 10_000  # values (keys, scalars, collections); a manifest has a few hundred
JSON_TYPES = frozenset({"application/json"})
# aiohttp reports a missing Content-Type as application/octet-stream: parse it as YAML, which
# also reads JSON.
YAML_TYPES = frozenset({
    "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain",
    "application/octet-stream",
})
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available
_OPEN = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSE = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


@dataclass(frozen=True)
class Refused(Exception):
    """Why a document is refused: an HTTP status, a title and a detail, and the offending
    member if there is one, as (JSON pointer, what is wrong with it); the API renders it as
    problem+json."""

    status: int
    title: str
    detail: str
    member: tuple[str, str] | None = None


def _malformed(detail: str) -> Refused:
    return Refused(400, "Malformed request body", detail)


def _too_deep() -> Refused:
    return _malformed(f"the document nests deeper than {MAX_DEPTH} levels")


def _too_many() -> Refused:
    return Refused(413, "Request body too large",
                   f"the document holds more than {MAX_NODES} values")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _scan_yaml(text: str) -> None:
    """Refuse, at the first offending event, aliases, anchors, depth and size."""
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _malformed("YAML anchors and aliases are not accepted")
        if isinstance(event, _OPEN):
            depth += 1
            nodes += 1
            if depth > MAX_DEPTH:
                raise _too_deep()
        elif isinstance(event, _CLOSE):
            depth -= 1
        elif isinstance(event, yaml.ScalarEvent):
            nodes += 1
        if nodes > MAX_NODES:
            raise _too_many()


def _walk_json(doc: Any) -> None:
    """The same bounds for a decoded JSON document (iterative; stops at the first excess)."""
    stack = [(doc, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise _too_many()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise _too_deep()
            items = value.values() if isinstance(value, dict) else value
            nodes += len(value) if isinstance(value, dict) else 0  # the keys
            stack.extend((item, depth + 1) for item in items)


def parse(raw: bytes, content_type: str) -> dict[str, Any]:
    """Parse a request document; `content_type` without parameters, "" when absent.
    Synchronous and bounded; `canaryd.api.body.Decoder` runs it off the event loop."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("the body is not UTF-8 text") from None
    if content_type in JSON_TYPES or content_type.endswith("+json"):
        try:
            doc = json.loads(text, parse_constant=_reject_constant)
        except RecursionError:
            raise _too_deep() from None
        except ValueError as exc:
            raise _malformed(f"not valid JSON: {exc}") from None
        _walk_json(doc)
    elif content_type in YAML_TYPES:
        try:
            _scan_yaml(text)
            docs = list(yaml.load_all(text, Loader=_Loader))
        except yaml.YAMLError as exc:
            if "maximum nesting depth" in str(exc):  # libyaml's own bound (1000 levels)
                raise _too_deep() from None
            raise _malformed(f"not valid YAML: {str(exc)[:500]}") from None
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:
            # A scalar the YAML resolver mis-reads: a 2001-13-45 "date", a 5,000-digit int.
            raise _malformed(f"not valid YAML: {type(exc).__name__}: {str(exc)[:200]}") \
                from None
        docs = [d for d in docs if d is not None]
        if len(docs) != 1:
            raise _malformed(f"expected exactly one YAML document, got {len(docs)}")
        doc = docs[0]
    else:
        raise Refused(415, "Unsupported media type",
                      "send the manifest as application/json or application/yaml")
    if not isinstance(doc, dict):
        raise Refused(422, "Invalid rollout", "the manifest must be a mapping (a JSON object)",
                      member=("", "must be an object"))
    return doc


def serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    """A worker process (`canaryd.api.workers`): read (content type, body) frames until the
    end of the input; answer each with a pickled (True, document) or (False, (status,
    title, detail, member)). The parent unpickles with `load_answer`, which accepts only
    the types a YAML safe load makes."""
    while True:
        head = stdin.read(_FRAME.size)
        if len(head) < _FRAME.size:
            return
        content_type = _exactly(stdin, _FRAME.unpack(head)[0]).decode()
        body = _exactly(stdin, _FRAME.unpack(_exactly(stdin, _FRAME.size))[0])
        answer: tuple[bool, Any]
        try:
            answer = (True, parse(body, content_type))
        except Refused as refused:
            answer = (False, (refused.status, refused.title, refused.detail, refused.member))
        data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(_FRAME.pack(len(data)) + data)
        stdout.flush()


def _exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise SystemExit(0)  # the parent went away mid-request
    return data


class _Answers(pickle.Unpickler):
    _ALLOWED = frozenset({("datetime", "date"), ("datetime", "datetime"),
                          ("datetime", "timezone"), ("datetime", "timedelta"),
                          ("builtins", "set"), ("builtins", "frozenset")})

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not a document value")
        return super().find_class(module, name)


def load_answer(data: bytes) -> tuple[bool, Any]:
    """A worker's answer, unpickled with nothing but the types a YAML safe load makes."""
    answer: tuple[bool, Any] = _Answers(io.BytesIO(data)).load()
    return answer


_FRAME = struct.Struct(">I")  # a frame: its length, big-endian, then that many bytes

if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
