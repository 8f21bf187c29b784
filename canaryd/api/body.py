"""Reading a request document: bounded in size and time, decoded off the event loop.

What a decoder may cost is bounded before it can cost it: at most MAX_BODY bytes are read
(within the body timeout), `canaryd.api.documents.parse` refuses a document at the first
event past its depth and size bounds, and decoding runs off the loop with a deadline, at
most DECODE_SLOTS at once (`Decoder`), so that no document holds the event loop: a
document of up to `process_above` bytes (a manifest is 1-3 KB) in a thread, a larger one
in a worker process (`canaryd.api.workers`), since a thread still holds the interpreter
lock, and the loop with it, for most of the tens of milliseconds a 240 KB YAML takes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from canaryd.api import documents
from canaryd.api.documents import Refused
from canaryd.api.problems import FieldError, Problem
from canaryd.api.workers import WorkerLost, Workers, WorkerTimeout

MAX_BODY = 256 * 1024
DECODE_SLOTS = 2  # documents decoded at once, per process
DECODE_DEADLINE = 2.0  # seconds; bounded work finishes in milliseconds
PROCESS_ABOVE = 16 * 1024  # bytes: larger documents decode in a worker process


def too_large(limit: int) -> Problem:
    return Problem(413, "Request body too large",
                   f"the request body exceeds the limit of {limit} bytes")


def _problem(refused: Refused) -> Problem:
    errors = () if refused.member is None else (
        FieldError(detail=refused.member[1], pointer=refused.member[0]),)
    return Problem(refused.status, refused.title, refused.detail, errors=errors)


def parse(raw: bytes, content_type: str) -> dict[str, Any]:
    """`documents.parse`, refusals as Problems (synchronous; `Decoder` runs it off the loop)."""
    try:
        return documents.parse(raw, content_type)
    except Refused as refused:
        raise _problem(refused) from None


class _Line:
    """`slots` at work at once, at most `queue` waiting for one (503 beyond, or after
    DECODE_DEADLINE of waiting)."""

    def __init__(self, slots: int, queue: int) -> None:
        self.slots = asyncio.Semaphore(slots)
        self.queue = queue
        self.waiting = 0

    async def enter(self) -> None:
        if self.waiting >= self.queue:
            raise _busy()
        self.waiting += 1
        try:
            async with asyncio.timeout(DECODE_DEADLINE):
                await self.slots.acquire()
        except TimeoutError:
            raise _busy() from None
        finally:
            self.waiting -= 1


class Decoder:
    """Runs `parse` off the loop: documents larger than `process_above` bytes in worker
    processes, smaller ones in threads, each kind at most `slots` at once with `queue` more
    waiting (503 beyond), each within DECODE_DEADLINE (413 after). A slot is freed when its
    work is done, not when its request stopped waiting: the bound holds for the work
    itself."""

    def __init__(self, slots: int = DECODE_SLOTS, queue: int = 64,
                 process_above: int = PROCESS_ABOVE) -> None:
        # Small and large documents wait in lines of their own: a flood of large ones (only
        # a hostile client sends 200 KB manifests) never makes a pipeline's 2 KB submit wait.
        self._lines = {False: _Line(slots, queue), True: _Line(slots, queue)}
        self.process_above = process_above
        self.workers = Workers(slots, documents.__name__, documents.load_answer)

    async def __call__(self, raw: bytes, content_type: str) -> dict[str, Any]:
        large = len(raw) > self.process_above
        line = self._lines[large]
        await line.enter()
        if large:
            return await self._in_process(raw, content_type, line.slots)
        return await self._in_thread(raw, content_type, line.slots)

    async def _in_process(self, raw: bytes, content_type: str, slots: asyncio.Semaphore,
                          ) -> dict[str, Any]:
        # Its own task, shielded: a client that goes away does not cut the exchange with the
        # worker short (which would cost a new worker process); the slot is held until the
        # worker has answered, as for a thread.
        work = _holding(slots, lambda: asyncio.ensure_future(
            self.workers.call(content_type, raw, deadline=DECODE_DEADLINE)))
        try:
            ok, value = await asyncio.shield(work)
        except WorkerTimeout:
            raise _too_slow() from None
        except WorkerLost:
            raise _busy() from None
        if not ok:
            raise _problem(Refused(*value))
        doc: dict[str, Any] = value
        return doc

    async def _in_thread(self, raw: bytes, content_type: str, slots: asyncio.Semaphore,
                         ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        work = _holding(slots, lambda: loop.run_in_executor(None, parse, raw, content_type))
        try:
            # asyncio.timeout, not wait_for: see canaryd.aio.wait_set.
            async with asyncio.timeout(DECODE_DEADLINE):
                return await asyncio.shield(work)
        except TimeoutError:
            raise _too_slow() from None

    async def aclose(self) -> None:
        await self.workers.aclose()


def _holding(slots: asyncio.Semaphore,
             start: Callable[[], asyncio.Future[Any]]) -> asyncio.Future[Any]:
    """`start()`'s work, holding a slot of `slots` (acquired by the caller) until it is done."""
    try:
        work = start()
    except BaseException:
        slots.release()
        raise
    work.add_done_callback(lambda _: slots.release())
    return work


def _too_slow() -> Problem:
    return Problem(413, "Request body too large",
                   f"the document did not decode within {DECODE_DEADLINE:g}s")


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
