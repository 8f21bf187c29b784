"""Reading a request document: bounded in size, time, depth and count; JSON or YAML; one
mapping; no YAML aliases.

What a decoder may cost is bounded before it can cost it: at most MAX_BODY bytes are read
(within the body timeout), YAML is scanned event by event with libyaml and refused at the
first event beyond MAX_DEPTH levels or MAX_NODES values, JSON is walked the same way, and
decoding runs in a worker thread with a deadline, at most DECODE_SLOTS at once (`Decoder`),
so that no document holds the event loop.

YAML anchors and aliases are refused: a few hundred bytes of nested aliases expand into an
exponentially large document during validation (the "billion laughs"), and a Rollout
manifest has no use for them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import yaml
from aiohttp import web

from canaryd.api.problems import FieldError, Problem

MAX_BODY = 256 * 1024
MAX_DEPTH = 24  # a Rollout manifest nests 6 levels deep; its status, 5
MAX_NODES = 10_000  # values (keys, scalars, collections); a manifest has a few hundred
DECODE_SLOTS = 2  # documents decoded at once, per process
DECODE_DEADLINE = 2.0  # seconds; bounded work finishes in milliseconds
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


def too_large(limit: int) -> Problem:
    return Problem(413, "Request body too large",
                   f"the request body exceeds the limit of {limit} bytes")


def _malformed(detail: str) -> Problem:
    return Problem(400, "Malformed request body", detail)


def _too_deep() -> Problem:
    return _malformed(f"the document nests deeper than {MAX_DEPTH} levels")


def _too_many() -> Problem:
    return Problem(413, "Request body too large",
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
    Synchronous and bounded; `decode` runs it off the event loop."""
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
        raise Problem(415, "Unsupported media type",
                      "send the manifest as application/json or application/yaml")
    if not isinstance(doc, dict):
        raise Problem(422, "Invalid rollout", "the manifest must be a mapping (a JSON object)",
                      errors=[FieldError(detail="must be an object", pointer="")])
    return doc


class Decoder:
    """Runs `parse` in worker threads: at most `slots` at once, `queue` more waiting (503
    beyond), each within DECODE_DEADLINE (413 after). A slot is freed when its thread is
    done, not when its request stopped waiting: the bound holds for the work itself."""

    def __init__(self, slots: int = DECODE_SLOTS, queue: int = 64) -> None:
        self._slots = asyncio.Semaphore(slots)
        self._queue = queue
        self.waiting = 0

    async def __call__(self, raw: bytes, content_type: str) -> dict[str, Any]:
        if self.waiting >= self._queue:
            raise _busy()
        self.waiting += 1
        try:
            async with asyncio.timeout(DECODE_DEADLINE):
                await self._slots.acquire()
        except TimeoutError:
            raise _busy() from None
        finally:
            self.waiting -= 1
        loop = asyncio.get_running_loop()
        try:
            work = loop.run_in_executor(None, parse, raw, content_type)
        except BaseException:
            self._slots.release()
            raise
        work.add_done_callback(lambda _: self._slots.release())
        try:
            return await asyncio.wait_for(asyncio.shield(work), DECODE_DEADLINE)
        except TimeoutError:
            raise Problem(413, "Request body too large",
                          f"the document did not decode within {DECODE_DEADLINE:g}s") from None


def _busy() -> Problem:
    return Problem(503, "Service unavailable", "busy decoding other requests; retry",
                   headers={"Retry-After": "1"})


async def read_document(request: web.Request, decode: Decoder, *, limit: int = MAX_BODY,
                        within: float = 15.0) -> dict[str, Any]:
    """Read at most `limit` bytes (413 beyond, whatever Content-Length claims) within
    `within` seconds (408 after), then parse."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(within):
            while chunk := await request.content.read(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise Problem(408, "Request timeout",
                      f"the request body was not complete within {within:g}s") from None
    return await decode(b"".join(chunks), request.content_type)
