"""canaryd.aio: waiting on an event must never swallow a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from canaryd import aio


async def test_wait_set_reports_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await aio.wait_set(event, 0.01) is False
    event.set()
    assert await aio.wait_set(event, 10) is True


async def test_a_cancellation_in_the_iteration_the_event_is_set_goes_through() -> None:
    # An event stream's handler waits for the next change; its client goes away (aiohttp
    # cancels the handler) in the same loop iteration as a change arrives. asyncio.wait_for
    # on Python 3.11 returns the result then and the handler runs on until its next
    # heartbeat write, holding its stream slot (the CI failure of
    # tests/hostile/test_http_front.py::test_event_streams_are_bounded_per_token_and_in_total).
    event = asyncio.Event()
    waiting = asyncio.create_task(aio.wait_set(event, 60))
    await asyncio.sleep(0)  # let it start waiting
    event.set()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_sleep_or_stop_is_cancellable_as_it_is_stopped() -> None:
    stop = asyncio.Event()
    sleeping = asyncio.create_task(aio.sleep_or_stop(stop, 60))
    await asyncio.sleep(0)
    stop.set()
    sleeping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeping

