"""What aiohttp itself answers (before any middleware), and the bounds under the app: against
the real `canaryd serve` process, over raw sockets."""

from __future__ import annotations

import asyncio
import re

import pytest

from canaryd.sandbox.testing import eventually
from tests.hostile.support import (
    LIMITS,
    TOKENS,
    Daemon,
    auth,
    exchange,
    pending_rollout,
    read_answer,
    request,
)

TOKEN = TOKENS["admin"].encode()
# Each is refused by aiohttp's parser, and each quotes the token somewhere in the bytes the
# parser complains about.
MALFORMED = {
    "nul in Authorization": request("GET", "/api/v1/whoami",
                                    b"Authorization: Bearer " + TOKEN + b"\x00x\r\n"),
    "control char in Authorization": request("GET", "/api/v1/whoami",
                                             b"Authorization: Bearer " + TOKEN + b"\x01\r\n"),
    "Authorization too long": request("GET", "/api/v1/whoami",
                                      b"Authorization: Bearer " + TOKEN + b"A" * 9000 + b"\r\n"),
    "token in a bad request line": b"GET /?Bearer%20" + TOKEN + b" HTTP/1.1 junk\r\n\r\n",
    "token in a bad header name": request("GET", "/", b"X-" + TOKEN + b"\xff: 1\r\n"),
    "bad Content-Length": request("POST", "/api/v1/rollouts", auth(),
                                  b"Content-Length: " + TOKEN + b"\r\n"),
    "bad Transfer-Encoding": request("POST", "/api/v1/rollouts", auth(),
                                     b"Transfer-Encoding: " + TOKEN + b"\r\n"),
    "bad chunk": request("POST", "/api/v1/rollouts", auth(), b"Transfer-Encoding: chunked\r\n")
    + TOKEN + b"\r\n",
    "not HTTP": TOKEN + b"\r\n\r\n",
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_malformed_requests_are_problem_json_and_never_echo_the_token(
    daemon: Daemon, case: str,
) -> None:
    answer = await exchange(daemon.port, MALFORMED[case])
    assert 400 <= answer.status < 500, (answer.status, answer.body[:300])
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == answer.status and problem["detail"]
    assert TOKEN not in answer.body
    assert TOKEN.decode() not in daemon.log_text()


async def test_every_malformed_case_is_logged_redacted(daemon: Daemon) -> None:
    for data in MALFORMED.values():
        await exchange(daemon.port, data)

    async def logged() -> int:
        return daemon.log_text().count('"error": "malformed')

    await eventually(logged, timeout=10, what="the parse errors in the log")
    text = daemon.log_text()
    assert TOKEN.decode() not in text and "hostile-token" not in text


@pytest.mark.parametrize(("target", "parameter"), [
    ("/api/v1/rollouts?limit=%C2%B2", "limit"),  # "²" is a digit to str.isdigit
    ("/api/v1/rollouts?limit=99999999999999999999", "limit"),
    ("/api/v1/rollouts?limit=%EF%BC%91", "limit"),  # full-width 1
    ("/api/v1/rollouts?limit=1_0", "limit"),
    ("/api/v1/rollouts?phase=%FF", "phase"),
    ("/api/v1/rollouts?continue=%FF%FE", "continue"),
    ("/api/v1/rollouts?namespace=%C3%A9", "namespace"),
])
async def test_bad_query_parameters_are_400_naming_the_parameter(
    daemon: Daemon, target: str, parameter: str,
) -> None:
    answer = await exchange(daemon.port, request("GET", target, auth("read")))
    assert answer.status == 400, answer.body
    assert answer.headers["content-type"] == "application/problem+json"
    assert [e["parameter"] for e in answer.json()["errors"]] == [parameter]


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/whoami", "/api/v1/rollouts"])
@pytest.mark.parametrize("header", [b"Authorization: Bearer \xff\xfe", b"X-Trace: \xc3\x28"])
async def test_header_bytes_that_are_not_utf8_get_400_naming_the_header(
    daemon: Daemon, path: str, header: bytes,
) -> None:
    answer = await exchange(daemon.port, request("GET", path, header + b"\r\n"))
    assert answer.status == 400, answer.body
    [error] = answer.json()["errors"]
    assert error["parameter"] == header.split(b":")[0].decode()


async def test_slow_heads_and_bodies_are_cut_and_connections_are_capped(
    daemon: Daemon,
) -> None:
    cap = int(LIMITS["MAX_CONNECTIONS"])
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        # Half the connections send an unfinished head, the other half an unfinished body.
        for i in range(cap):
            reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
            if i % 2:
                writer.write(b"GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            else:
                writer.write(request("POST", "/api/v1/rollouts", auth("submit"),
                                     b"Content-Type: application/json\r\n",
                                     b"Content-Length: 100000\r\n") + b'{"a": ')
            await writer.drain()
            held.append((reader, writer))

        async def refused() -> bool:
            answer = await exchange(daemon.port, request("GET", "/healthz"))
            return answer.status == 503 and answer.headers.get("retry-after") == "1"

        # With every slot taken, one more connection is told so at once.
        await eventually(refused, timeout=5, what="a 503 beyond the connection limit")
        # Each held connection is answered 408 (head or body too slow) and closed.
        statuses = []
        for reader, _ in held:
            async with asyncio.timeout(10):
                answer = await read_answer(reader)
                rest = await reader.read()
            statuses.append(answer.status)
            assert answer.headers["content-type"] == "application/problem+json"
            assert rest == b"" and reader.at_eof()
        assert set(statuses) == {408}
    finally:
        for _, writer in held:
            writer.close()

    async def healthy() -> bool:
        return (await exchange(daemon.port, request("GET", "/healthz"))).status == 200

    await eventually(healthy, timeout=10, what="the server answering again")


async def _metric_lines(daemon: Daemon, pattern: str) -> list[str]:
    answer = await exchange(daemon.port, request("GET", "/metrics"))
    return [line for line in answer.body.decode().splitlines() if re.search(pattern, line)]


async def test_a_client_that_goes_away_is_not_counted_as_a_server_error(
    daemon: Daemon,
) -> None:
    # A body cut off mid-way by the client closing its connection.
    _, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    writer.write(request("POST", "/api/v1/rollouts", auth("submit"),
                         b"Content-Type: application/json\r\n",
                         b"Content-Length: 1000\r\n") + b'{"apiVersion": ')
    await writer.drain()
    writer.close()

    async def counted() -> list[str]:
        return await _metric_lines(
            daemon, r'^canaryd_api_request_duration_seconds_count\{.*status="499"')

    await eventually(counted, timeout=10, what="the disconnect in the request metrics")
    # (/readyz answers 503 here, by design: this daemon has no Prometheus.)
    assert await _metric_lines(
        daemon, r'^canaryd_api_request_duration_seconds_count\{(?!.*"/readyz").*status="5\d\d"'
    ) == []


async def test_event_streams_are_bounded_per_token_and_in_total(daemon: Daemon) -> None:
    await pending_rollout(daemon, "followed")
    path = "/api/v1/rollouts/demo/followed/events"
    per_token = int(LIMITS["MAX_STREAMS_PER_TOKEN"])
    held = []
    try:
        for role in ("read", "submit", "operate"):
            for _ in range(per_token):
                reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
                writer.write(request("GET", path, auth(role)))
                held.append(writer)
                assert (await read_answer_head(reader)) == 200
        over = await exchange(daemon.port, request("GET", path, auth("read")))
        assert over.status == 429 and "read" in over.json()["detail"]
        assert over.headers["content-type"] == "application/problem+json"
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        writer.write(request("GET", path, auth("admin")))
        held.append(writer)
        assert (await read_answer_head(reader)) == 200
        # 7 open in total: the limit, whichever token asks.
        total = await exchange(daemon.port, request("GET", path, auth("admin")))
        assert total.status == 503 and total.headers["retry-after"] == "5"
    finally:
        for writer in held:
            writer.close()

    async def freed() -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        try:
            writer.write(request("GET", path, auth("read")))
            return await read_answer_head(reader) == 200
        finally:
            writer.close()

    await eventually(freed, timeout=10, what="stream slots freed by closed connections")


async def read_answer_head(reader: asyncio.StreamReader) -> int:
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1])
