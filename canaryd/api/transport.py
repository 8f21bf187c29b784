"""The HTTP transport under the app: aiohttp's protocol, with bounds and canaryd's errors.

aiohttp answers a request it cannot parse itself, before any middleware runs: in text/plain,
quoting the offending bytes (an Authorization header, token included), and logs it with a
traceback through its own loggers. Here, instead:

- such answers are problem+json naming only the kind of error (never the bytes), and are
  logged once, redacted, by canaryd's access logger;
- a request head must be complete within `header_timeout` of its first byte (408, then
  close), and an idle keep-alive connection is closed after `idle_timeout`;
- at most `max_connections` connections are open at once: one more is answered 503 with
  Retry-After and closed, before anything of it is read.

Request bodies are bounded by `body_timeout` where they are read (`canaryd.api.body`), and
event streams per token and in total by `Guard.stream` (`canaryd.api.events`).

aiohttp has no public hook for its protocol class, so `GuardedSite` creates the protocols
itself (`RequestHandler` subclasses, from the runner's public `server`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from http import HTTPStatus
from typing import Any

import structlog
from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from canaryd.api.body import PROCESS_ABOVE, Decoder
from canaryd.api.problems import CONTENT_TYPE, FieldError, Problem

log = structlog.get_logger("canaryd.access")
ENV_PREFIX = "CANARYD_HTTP_"


@dataclass(frozen=True)
class HttpLimits:
    header_timeout: float = 10.0  # seconds from a request's first byte to its last header
    body_timeout: float = 15.0  # seconds to read a request body
    idle_timeout: float = 60.0  # an idle keep-alive connection closes after this
    max_connections: int = 1024  # open at once; beyond: 503
    max_streams: int = 512  # open event streams, in total
    max_streams_per_token: int = 32  # open event streams per token
    decode_process_above: int = PROCESS_ABOVE  # bytes: larger bodies decode in a process

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HttpLimits:
        """Defaults, overridden by CANARYD_HTTP_HEADER_TIMEOUT, ..._MAX_CONNECTIONS etc."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            text = env.get(ENV_PREFIX + f.name.upper())
            if text:
                kind = int if f.type in ("int", int) else float
                try:
                    value = kind(text)
                except ValueError:
                    raise ValueError(f"{ENV_PREFIX}{f.name.upper()}: not a number: "
                                     f"{text!r}") from None
                if not value > 0:
                    raise ValueError(f"{ENV_PREFIX}{f.name.upper()}: must be positive")
                values[f.name] = value
        return cls(**values)


def raw_problem(status: int, title: str, detail: str,
                headers: Mapping[str, str] | None = None) -> bytes:
    """A whole problem+json response, for answering outside any request (then closing)."""
    body = json.dumps({"type": "about:blank", "title": title, "status": status,
                       "detail": detail}).encode()
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            f"Content-Type: {CONTENT_TYPE}", f"Content-Length: {len(body)}",
            "Connection: close", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


# What each of aiohttp's parser errors is, in words that quote nothing of the request.
_PARSE_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (http_exceptions.LineTooLong, "a request line or header field is too long"),
    (http_exceptions.BadHttpMethod, "not an HTTP request (bad method)"),
    (http_exceptions.BadStatusLine, "malformed request line"),
    (http_exceptions.InvalidURLError, "malformed request target"),
    (http_exceptions.InvalidHeader, "malformed header"),
    (http_exceptions.ContentLengthError, "body shorter than its Content-Length"),
    (http_exceptions.TransferEncodingError, "malformed chunked body"),
    (http_exceptions.ContentEncodingError, "body cannot be decoded per Content-Encoding"),
    (http_exceptions.BadHttpMessage, "malformed request (headers or framing)"),
)


def describe(exc: BaseException | None) -> str:
    for kind, text in _PARSE_ERRORS:
        if isinstance(exc, kind):
            return text
    return "malformed request"


class _Refuse(asyncio.Protocol):
    """Over the connection limit: say so and close, without reading anything."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(raw_problem(503, "Service unavailable",
                                    "too many open connections; retry later",
                                    {"Retry-After": "1"}))
        transport.close()


class GuardedRequestHandler(RequestHandler):
    __slots__ = ("_awaiting_head", "_counted", "_guard", "_head_timer")

    def __init__(self, manager: web.Server, *, guard: Guard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._head_timer: asyncio.TimerHandle | None = None
        self._awaiting_head = True
        self._counted = False
        app = self._request_handler
        assert app is not None

        async def handle(request: BaseRequest) -> web.StreamResponse:
            # aiohttp answers Expect before any middleware, in text/plain (and fails with
            # 500 on a value that is not UTF-8): only 100-continue goes on to it.
            expect = request.headers.get("Expect")
            if expect is not None and expect.lower() != "100-continue":
                log.info("http request", method=request.method, status=417,
                         error="unsupported Expect")
                return Problem(417, "Expectation failed",
                               "the only Expect this server meets is 100-continue",
                               errors=[FieldError(detail="only 100-continue",
                                                  parameter="Expect")]).response(request.path)
            return await app(request)

        self._request_handler = handle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._guard.open += 1
        self._counted = True
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._counted:
            self._guard.open -= 1
            self._counted = False
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head and self._head_timer is None and data:
            self._head_timer = self._loop.call_later(self._guard.limits.header_timeout,
                                                     self._head_expired)
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:  # a whole head was parsed (or refused)
            self._disarm()
            self._awaiting_head = False

    def log_access(self, request: BaseRequest, response: web.StreamResponse,
                   time: float | None) -> None:
        super().log_access(request, response, time)
        if not self._messages:
            self._awaiting_head = True  # the next bytes start the next request's head

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        transport = self.transport
        if transport is None or not self._awaiting_head:
            return
        log.info("http request", status=408, error="request head timeout",
                 timeout_s=self._guard.limits.header_timeout)
        self._guard.timeouts += 1
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(raw_problem(
            408, "Request timeout",
            f"the request head was not complete within {self._guard.limits.header_timeout:g}s"))
        self.force_close()

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """aiohttp's answer to what it could not parse (or an escaped 500): problem+json,
        never echoing the request's bytes; logged without them either."""
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already sent; cannot send an error")
        if status >= 500:
            log.error("http request", status=status, error=type(exc).__name__)
            problem = Problem(status, "Internal server error", "see the canaryd log")
        else:
            detail = describe(exc)
            log.info("http request", status=status, error=detail)
            problem = Problem(status, HTTPStatus(status).phrase, detail)
        response = problem.response("")
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        log.error("http protocol error", message=str(args[0]) if args else "",
                  error=type(exc).__name__ if isinstance(exc, BaseException) else None)

    def log_debug(self, *args: Any, **kw: Any) -> None:
        if self.debug and args:
            log.debug("http protocol", message=str(args[0]))


class Guard:
    """Connection and event-stream bookkeeping for one server."""

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.open = 0
        self.refused = 0
        self.timeouts = 0
        self.streams: Counter[str] = Counter()
        self.decode = Decoder(process_above=limits.decode_process_above)

    def protocol(self, server: web.Server, loop: asyncio.AbstractEventLoop,
                 ) -> asyncio.BaseProtocol:
        if self.open >= self.limits.max_connections:
            self.refused += 1
            return _Refuse()
        return GuardedRequestHandler(
            server, guard=self, loop=loop, keepalive_timeout=self.limits.idle_timeout,
            access_log=None, lingering_time=2.0, max_headers=64,
        )

    @contextlib.contextmanager
    def stream(self, token_name: str) -> Iterator[None]:
        """Hold one event-stream slot for `token_name`, or refuse with 429/503."""
        if sum(self.streams.values()) >= self.limits.max_streams:
            raise Problem(503, "Service unavailable",
                          f"{self.limits.max_streams} event streams are open; retry later",
                          headers={"Retry-After": "5"})
        if self.streams[token_name] >= self.limits.max_streams_per_token:
            raise Problem(429, "Too many requests",
                          f"token {token_name!r} already has "
                          f"{self.limits.max_streams_per_token} event streams open",
                          headers={"Retry-After": "5"})
        self.streams[token_name] += 1
        try:
            yield
        finally:
            self.streams[token_name] -= 1
            if self.streams[token_name] <= 0:
                del self.streams[token_name]


class GuardedSite(web.BaseSite):
    """`web.SockSite` with `Guard`'s protocols."""

    __slots__ = ("_guard", "_name", "_sock")

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, guard: Guard) -> None:
        super().__init__(runner)
        self._sock = sock
        self._guard = guard
        host, port = sock.getsockname()[:2]
        self._name = f"http://{host}:{port}"

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: self._guard.protocol(server, loop), sock=self._sock, backlog=self._backlog)
