"""What the API uses of the daemon, as small interfaces: the watch-fed cache (read only),
the event saying it is synced, its listeners (the change hub subscribes), the settings, the
one Kubernetes writer, the metrics registry and Prometheus' readiness.

`canaryd.daemon` builds an `ApiDeps` from its parts; a test can build one from fakes. The API
never sees the `Daemon` (no import circle between them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping, ValuesView
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from canaryd.api.writer import RolloutWriter
from canaryd.core.reading import StatusRead
from canaryd.core.settings import Settings

Listener = Callable[[str, dict[str, Any]], None]


class RolloutView(Protocol):
    """The watch-fed Rollout cache as the API reads it (`canaryd.runtime.cache`)."""

    def __getitem__(self, key: str, /) -> dict[str, Any]: ...

    def __iter__(self) -> Iterator[str]: ...

    def __len__(self) -> int: ...

    def __contains__(self, key: object, /) -> bool: ...

    def get(self, key: str, /) -> dict[str, Any] | None: ...

    def values(self) -> ValuesView[dict[str, Any]]: ...

    def read(self, obj: Mapping[str, Any], /) -> StatusRead: ...

    def whole(self, key: str, /) -> bool: ...


class SettingsSource(Protocol):
    """The settings in force, and why the last reload was rejected (None: it was not)."""

    def __call__(self) -> Settings: ...

    @property
    def last_error(self) -> str | None: ...


@dataclass(frozen=True)
class ApiDeps:
    cache: RolloutView
    synced: asyncio.Event
    listeners: list[Listener]
    settings: SettingsSource
    writer: RolloutWriter
    registry: CollectorRegistry
    prometheus_ready: Callable[[], Awaitable[bool]]
