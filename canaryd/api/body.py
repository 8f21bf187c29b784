"""Reading a request document: bounded size, JSON or YAML, one mapping, no YAML aliases.

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
JSON_TYPES = frozenset({"application/json"})
# aiohttp reports a missing Content-Type as application/octet-stream: parse it as YAML, which
# also reads JSON.
YAML_TYPES = frozenset({
    "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain",
    "application/octet-stream",
})


def _refuse_aliases(text: str) -> None:
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _malformed("YAML anchors and aliases are not accepted")


def too_large(limit: int) -> Problem:
    return Problem(413, "Request body too large",
                   f"the request body exceeds the limit of {limit} bytes")


def _malformed(detail: str) -> Problem:
    return Problem(400, "Malformed request body", detail)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse(raw: bytes, content_type: str) -> dict[str, Any]:
    """Parse a request document; `content_type` without parameters, "" when absent."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("the body is not UTF-8 text") from None
    if content_type in JSON_TYPES or content_type.endswith("+json"):
        try:
            doc = json.loads(text, parse_constant=_reject_constant)
        except ValueError as exc:
            raise _malformed(f"not valid JSON: {exc}") from None
    elif content_type in YAML_TYPES:
        try:
            _refuse_aliases(text)
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError as exc:
            raise _malformed(f"not valid YAML: {exc}") from None
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


async def read_document(request: web.Request, *, limit: int = MAX_BODY,
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
    return parse(b"".join(chunks), request.content_type)
