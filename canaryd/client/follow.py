"""Follow a rollout's events to the verdict, reconnecting with Last-Event-ID on any drop.

The server rebuilds the stream from the rollout's status, so a reconnect (to the same or
another replica) resumes exactly after the last event received: nothing lost, nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from canaryd.client import errors
from canaryd.client.http import CanarydClient
from canaryd.client.sse import Message


@dataclass(frozen=True)
class Event:
    kind: str
    id: str | None
    data: dict[str, Any]

    @classmethod
    def of(cls, message: Message) -> Event:
        try:
            data = json.loads(message.data)
        except ValueError:
            data = {"raw": message.data}
        return cls(message.event, message.id, data if isinstance(data, dict) else {"raw": data})


class RolloutDeleted(errors.ClientError):
    exit_code = errors.FAILED


async def follow(
    client: CanarydClient, namespace: str, name: str, *, last_event_id: str | None = None,
    give_up_after: float = 120.0, on_reconnect: Callable[[str], None] | None = None,
) -> AsyncIterator[Event]:
    """Every event until (and including) the verdict.

    Raises Unreachable after `give_up_after` seconds without a working connection, AuthFailed
    or NotFound at once, RolloutDeleted if the rollout is deleted while followed."""
    failing_since: float | None = None
    delay = 0.25
    while True:
        try:
            async for message in client.stream(namespace, name, last_event_id=last_event_id):
                failing_since, delay = None, 0.25
                event = Event.of(message)
                if event.id is not None:
                    last_event_id = event.id
                if event.kind == "deleted":
                    raise RolloutDeleted(f"rollout {namespace}/{name} was deleted")
                yield event
                if event.kind == "verdict":
                    return
            reason = "stream ended before the verdict"
        except errors.Unreachable as exc:
            reason = str(exc)
        now = time.monotonic()
        if failing_since is None:
            failing_since = now
        elif now - failing_since > give_up_after:
            raise errors.Unreachable(f"gave up following {namespace}/{name} after "
                                     f"{give_up_after:g}s: {reason}")
        if on_reconnect is not None:
            on_reconnect(f"{reason}; reconnecting after event {last_event_id or '(none)'}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)
