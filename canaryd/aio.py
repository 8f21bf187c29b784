"""The asyncio helpers canaryd shares: wait for an event with a timeout, sleep unless
stopped, wait for the first of several things, and poll a file for changes until stopped.

(The embedded daemon, started and stopped around a block, is `canaryd.embedded`.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any


async def wait_set(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds` for `event`; True if it is set.

    Not `asyncio.wait_for`: on Python 3.11 it swallows a cancellation that arrives in the
    loop iteration in which the event is set (it returns the result instead), so a task
    cancelled then (an event stream whose client went away) runs on; `asyncio.timeout`
    lets the cancellation through.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(seconds, 0.0)):
            await event.wait()
    return event.is_set()


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`, less if `stop` is set meanwhile; True if it was."""
    return await wait_set(stop, seconds)


async def first(*waits: Awaitable[Any], timeout: float | None = None) -> None:  # noqa: ASYNC109
    """Until the first of `waits` is done (or `timeout` seconds). The waits made here from
    coroutines are cancelled then; a task or future passed in is the caller's and is left
    running."""
    futures = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(futures, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for fut, given in zip(futures, waits, strict=True):
            if fut is not given:
                fut.cancel()


async def watch_file(check: Callable[[], object], stop: asyncio.Event,
                     interval: float) -> None:
    """Call `check` now and every `interval` seconds until `stop`: the reload loop of the
    settings and the API tokens. Whether the file changed is `check`'s to tell (both compare
    the content's digest: Kubernetes swaps a mounted ConfigMap or Secret through a symlink,
    so the modification time says nothing)."""
    while not stop.is_set():
        check()
        await sleep_or_stop(stop, interval)
