"""Fuzzing the real `canaryd serve` process with raw HTTP built by hypothesis: methods, paths
(documented ones with mutated segments, and noise), query parameters, header names and
values (as arbitrary bytes, Authorization included), bodies (mutated manifests, arbitrary
JSON and YAML, bytes). Whatever arrives, the answer is never a 5xx (bar /readyz, which says
503 when its Prometheus is away, and the documented 503s with Retry-After), every error is
problem+json, and the server keeps answering.

Budget: at most CANARYD_FUZZ_EXAMPLES cases (default 400) within CANARYD_FUZZ_SECONDS
(default 25) of sending; `make fuzz` runs it (and schemathesis) for ten minutes each.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile.support import TOKENS, Daemon, manifest

SECONDS = float(os.environ.get("CANARYD_FUZZ_SECONDS", "25"))
EXAMPLES = int(os.environ.get("CANARYD_FUZZ_EXAMPLES", "400"))
CHUNK = 100
PATHS = ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/api/v1/whoami",
         "/api/v1/rollouts", "/api/v1/rollouts/{ns}/{name}",
         "/api/v1/rollouts/{ns}/{name}/events", "/api/v1/rollouts/{ns}/{name}/pause",
         "/api/v1/rollouts/{ns}/{name}/resume", "/api/v1/rollouts/{ns}/{name}/promote",
         "/api/v1/rollouts/{ns}/{name}/abort"]
QUERY_NAMES = ["namespace", "target", "phase", "limit", "continue", "dryRun", "lastEventId"]
HEADER_NAMES = ["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID",
                "Content-Encoding", "Accept", "X-Forwarded-For", "Expect", "Range"]
HARD_TEXT = st.text(alphabet=st.one_of(
    st.sampled_from("\x00\x01\x7f\x85\ufffd\u2028\uff11\u00b2_-./%\"'\\{}[]*&!:#\n\r "),
    st.characters(codec="utf-8")), max_size=40)
BYTES = st.binary(max_size=60)


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False,
                        allow_infinity=False), HARD_TEXT)
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(HARD_TEXT, inner, max_size=4)),
        max_leaves=20)


@st.composite
def mutated_manifest(draw: st.DrawFn) -> Any:
    body: Any = manifest(draw(st.from_regex(r"[a-z][a-z0-9-]{0,12}[a-z0-9]",
                                            fullmatch=True)))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from([("spec",), ("spec", "plan"), ("spec", "router", "istio"),
                                     ("metadata",), ("spec", "workloads"),
                                     ("spec", "analysis")]))
        node = body
        for part in path:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node
        if isinstance(node, dict):
            key = draw(st.one_of(st.sampled_from(sorted(node) or ["x"]), HARD_TEXT))
            node[key] = draw(_json_values())
    return body


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(Content-Type, body)."""
    kind = draw(st.sampled_from(["manifest-json", "manifest-yaml", "json", "yaml", "bytes",
                                 "none"]))
    if kind == "none":
        return b"", b""
    if kind == "bytes":
        return draw(st.sampled_from([b"", b"application/json", b"text/plain",
                                     b"application/x-www-form-urlencoded"])), draw(BYTES)
    value = draw(mutated_manifest()) if kind.startswith("manifest") else draw(_json_values())
    if kind.endswith("json"):
        return b"application/json", json.dumps(value).encode()
    return b"application/yaml", yaml.safe_dump(value, allow_unicode=True).encode()


def _encoded(text: str) -> str:
    return urllib.parse.quote(text, safe="")


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"HEAD",
                                   b"OPTIONS", b"TRACE", b"G\xc3T"]))
    template = draw(st.sampled_from([*PATHS, "/{noise}", "/api/v1/{noise}"]))
    segment = st.one_of(st.sampled_from(["demo", "podinfo-v2", "fuzzed", "x" * 300]), HARD_TEXT)
    path = template.format(ns=_encoded(draw(segment)), name=_encoded(draw(segment)),
                           noise=_encoded(draw(HARD_TEXT)))
    query = [(draw(st.one_of(st.sampled_from(QUERY_NAMES), HARD_TEXT)), draw(HARD_TEXT))
             for _ in range(draw(st.integers(0, 3)))]
    target = path + ("?" + urllib.parse.urlencode(query) if query else "")
    headers = [b"Host: canaryd"]
    token = draw(st.sampled_from([*TOKENS.values(), None, "garbage"]))
    if token is not None:
        headers.append(b"Authorization: Bearer " + token.encode())
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.one_of(st.sampled_from(HEADER_NAMES), st.from_regex(
            r"X-[A-Za-z0-9-]{1,20}", fullmatch=True))).encode()
        headers.append(name + b": " + draw(st.one_of(HARD_TEXT.map(str.encode), BYTES))
                       .replace(b"\r", b"").replace(b"\n", b""))
    content_type, body = draw(bodies())
    if content_type:
        headers.append(b"Content-Type: " + content_type)
    headers.append(f"Content-Length: {len(body)}".encode())
    headers.append(b"Connection: close")
    return method + b" " + target.encode() + b" HTTP/1.1\r\n" + b"\r\n".join(headers) + \
        b"\r\n\r\n" + body


@dataclass
class Tally:
    cases: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


TALLY = Tally()


def send(port: int, data: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"closed without an answer to {data[:200]!r}")
            received += chunk
        head, _, rest = received.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(b":") for line in lines[1:])}
        if headers.get(b"content-type", b"").startswith(b"text/event-stream"):
            return status, headers, b""  # a live stream: its head is the answer
        length = int(headers.get(b"content-length", b"-1"))
        while length >= 0 and len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, headers, rest


def check(port: int, data: bytes) -> None:
    status, headers, body = send(port, data)
    TALLY.cases += 1
    TALLY.statuses[status] = TALLY.statuses.get(status, 0) + 1
    readyz = data.split(b" ", 2)[1].split(b"?")[0] == b"/readyz"
    documented_503 = status == 503 and b"retry-after" in headers
    assert status < 500 or readyz or documented_503, (status, body[:300], data[:300])
    if status >= 400 and data[:4] != b"HEAD" and not readyz:  # readyz: its own JSON
        assert headers.get(b"content-type") == b"application/problem+json", (
            status, headers, body[:200], data[:300])


def test_no_input_gets_a_server_error_and_every_error_is_problem_json(daemon: Daemon) -> None:
    """Hypothesis runs of CHUNK cases each (a failing case is shrunk as usual) until the
    budget is spent."""

    @settings(max_examples=CHUNK, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=requests())
    def chunk(data: bytes) -> None:
        check(daemon.port, data)

    deadline = time.monotonic() + SECONDS
    while True:
        chunk()
        if time.monotonic() > deadline or TALLY.cases >= EXAMPLES:
            break


def test_the_server_survived_the_fuzzing(daemon: Daemon) -> None:
    print(f"fuzz: {TALLY.cases} requests, statuses {dict(sorted(TALLY.statuses.items()))}")
    status, _, body = send(daemon.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                        b"Connection: close\r\n\r\n")
    assert status == 200, body
    assert TALLY.cases > 0
    assert not [s for s in TALLY.statuses if s >= 500 and s != 503]
