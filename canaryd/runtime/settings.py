"""Settings that follow the config file on disk (a mounted ConfigMap changes in place).

A valid new file takes effect for checks from then on and is logged with a summary of what
changed; an invalid one is rejected with its errors and the old settings stay in force.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import structlog

from canaryd import aio
from canaryd.config import load_settings
from canaryd.core.settings import ConfigError, Settings

log = structlog.get_logger("canaryd.config")


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _flatten(f"{prefix}[{i}]", v, out)
    else:
        out[prefix] = value


def diff_summary(old: Settings, new: Settings) -> list[str]:
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    _flatten("", old.wire(), a)
    _flatten("", new.wire(), b)
    changes = []
    for key in sorted(set(a) | set(b)):
        if key not in a:
            changes.append(f"+ {key}={b[key]!r}")
        elif key not in b:
            changes.append(f"- {key}")
        elif a[key] != b[key]:
            changes.append(f"~ {key}: {a[key]!r} -> {b[key]!r}")
    return changes


class SettingsHolder:
    def __init__(self, path: str | Path | None, initial: Settings | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.current = self.adjust(initial if initial is not None else (
            load_settings(self.path) if self.path is not None else Settings()
        ))
        self._digest = self._read_digest()
        self.reloads = 0
        self.rejected = 0
        self.last_error: str | None = None

    def adjust(self, settings: Settings) -> Settings:
        """Applied to every loaded config (subclasses keep command-line overrides here)."""
        return settings

    def __call__(self) -> Settings:
        return self.current

    def _read_digest(self) -> str | None:
        if self.path is None:
            return None
        try:
            # Kubernetes swaps ConfigMap files through a symlink: compare content, not mtime.
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def check(self) -> bool:
        """Reload if the file changed. True when new settings took effect."""
        digest = self._read_digest()
        if self.path is None or digest is None or digest == self._digest:
            return False
        self._digest = digest
        try:
            new = self.adjust(load_settings(self.path))
        except (ConfigError, OSError) as exc:
            self.rejected += 1
            self.last_error = str(exc)
            log.error("config change rejected; previous config stays in force", error=str(exc))
            return False
        changes = diff_summary(self.current, new)
        self.current = new
        self.reloads += 1
        self.last_error = None
        log.info("config reloaded", changes=len(changes), summary=changes[:20])
        return True

    async def watch(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        await aio.watch_file(self.check, stop, interval)
