"""What is due when: the controller's scheduling queue, one entry per rollout.

A rollout is due at once when something about it changed (`touch`: new, its spec or its
annotations edited) and otherwise when the time its last reconcile asked for comes (`done`).
A change that arrives while the rollout is being reconciled is not lost: that reconcile's
own "next time" cannot push it later (the dirty rule of client-go's workqueue). A rollout
never scheduled is due.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from canaryd import aio


class DueQueue:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.monotonic = monotonic
        self._at: dict[str, float] = {}
        self._busy: set[str] = set()
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()

    def touch(self, key: str) -> None:
        """`key` changed: due now, even if it is being reconciled at this moment."""
        self._at[key] = 0.0
        if key in self._busy:
            self._dirty.add(key)
        self._wake.set()

    def take(self, keys: Iterable[str]) -> list[str]:
        """Those of `keys` that are due, marked as being reconciled."""
        now = self.monotonic()
        due = [k for k in keys if k not in self._busy and self._at.get(k, 0.0) <= now]
        self._busy.update(due)
        return due

    def done(self, key: str, after: float) -> None:
        """`key` reconciled; due again in `after` seconds, or at once if it changed since it
        was taken."""
        self._busy.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self._at[key] = 0.0
        else:
            self._at[key] = self.monotonic() + max(after, 0.0)

    def busy(self, key: str) -> bool:
        """Taken and not done yet."""
        return key in self._busy

    def forget(self, key: str) -> None:
        self._at.pop(key, None)
        self._dirty.discard(key)

    def soonest(self, default: float) -> float:
        """Seconds until the next rollout is due (at most `default`)."""
        now = self.monotonic()
        waits = [at - now for k, at in self._at.items() if k not in self._busy]
        return max(min([default, *waits]), 0.0)

    async def wait(self, stop: asyncio.Event, timeout: float) -> None:  # noqa: ASYNC109
        """Until a touch, `stop`, or `timeout` seconds, whichever comes first."""
        self._wake.clear()
        await aio.first(self._wake.wait(), stop.wait(), timeout=timeout)
