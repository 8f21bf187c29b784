"""Documents built to make a decoder work hard are refused by a bound, not by exhaustion:
against the real server process. Each used to take seconds to minutes of the event loop (a
YAML body nested 10,000 levels: 29 s), or answer 500."""

from __future__ import annotations

import base64
import json

import pytest

from tests.hostile.support import Daemon, auth, exchange, request

YAML = b"Content-Type: application/yaml\r\n"
JSON = b"Content-Type: application/json\r\n"
CASES = {
    "YAML flow nested 10,000 deep": (YAML, b"[" * 10_000 + b"]" * 10_000, 400, "deeper than"),
    "YAML block nested 300 deep": (
        YAML, b"".join(b"  " * i + b"a:\n" for i in range(300)), 400, "deeper than"),
    "JSON nested 10,000 deep": (JSON, b"[" * 10_000 + b"]" * 10_000, 400, "deeper than"),
    "JSON nested 100 deep": (JSON, b'{"a":' * 100 + b"1" + b"}" * 100, 400, "deeper than"),
    "YAML flow sequence of 120,000 integers": (
        YAML, b"spec: [" + b",".join([b"1"] * 120_000) + b"]", 413, "more than 10000"),
    "JSON array of 100,000 integers": (
        JSON, b'{"spec": [' + b",".join([b"1"] * 100_000) + b"]}", 413, "more than 10000"),
    "billion laughs": (YAML, b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a]\n"
                       b"c: [*b, *b, *b, *b]\n", 400, "anchors and aliases"),
    "a date that is no date": (YAML, b"metadata: {name: 2001-13-45}\n", 400, "not valid YAML"),
    "a 5,000-digit integer": (YAML, b"spec: {x: " + b"9" * 5000 + b"}\n", 400, "not valid"),
    "a 5,000-digit JSON integer": (JSON, b'{"spec": ' + b"9" * 5000 + b"}", 400, "not valid"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_expensive_documents_are_refused_by_their_bound(daemon: Daemon, case: str) -> None:
    content_type, body, status, detail = CASES[case]
    answer = await exchange(daemon.port, request("POST", "/api/v1/rollouts", auth("submit"),
                                                 content_type, body=body), wait=10)
    assert answer.status == status, answer.body[:300]
    assert answer.headers["content-type"] == "application/problem+json"
    assert detail in answer.json()["detail"]


async def test_a_continue_token_is_decoded_within_bounds(daemon: Daemon) -> None:
    deep = base64.urlsafe_b64encode(b"[" * 2500 + b"]" * 2500).decode().rstrip("=")
    for token in (deep, "A" * 5000, base64.urlsafe_b64encode(json.dumps(
            {"after": 7}).encode()).decode()):
        answer = await exchange(daemon.port, request(
            "GET", f"/api/v1/rollouts?continue={token}", auth("read")))
        assert answer.status == 400, answer.body[:200]
        assert answer.json()["errors"][0]["parameter"] == "continue"
