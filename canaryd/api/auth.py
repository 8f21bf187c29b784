"""Bearer tokens with roles, from a file (a mounted Secret) and/or `CANARYD_TOKENS`.

Roles are ordered; each includes everything below it:

    read     GET rollouts, a rollout, its event stream; whoami
    submit   + POST a rollout (one that does not supersede another)
    operate  + pause / resume / promote / abort, and submit with `spec.supersede: true`
             (superseding rolls back someone else's running rollout: an operator's call)
    admin    + everything; reserved for administrative endpoints

The format (YAML or JSON) is a list of `{name, role, token}` (and optionally `namespaces`:
a list of namespaces the token may act in, or `"*"`, the default), or `{tokens: [...]}`. Tokens are
kept only as SHA-256 digests and compared with `hmac.compare_digest` against every entry
(no early exit), so neither timing nor a heap dump gives a token away. The name, never the
token, is what reaches logs. The file is re-read when its content changes (Secret rotation);
an invalid new file is rejected and the previous tokens stay in force.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from canaryd import aio
from canaryd.core.names import Label

log = structlog.get_logger("canaryd.api.auth")
ENV_VAR = "CANARYD_TOKENS"


class Role(enum.IntEnum):
    READ = 1
    SUBMIT = 2
    OPERATE = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@:-]+$")]
    role: Literal["read", "submit", "operate", "admin"]
    token: Annotated[str, Field(min_length=16, max_length=512, pattern=r"^[\x21-\x7e]+$")]
    namespaces: Literal["*"] | Annotated[list[Label], Field(min_length=1, max_length=1000)] = (
        Field(default="*", description="the namespaces this token acts in; '*': all"))


_ENTRIES = TypeAdapter(list[TokenEntry])


class TokenError(ValueError):
    """A token source is unreadable or invalid; the message never contains a token."""


@dataclass(frozen=True)
class Identity:
    name: str
    role: Role
    namespaces: frozenset[str] | None = None  # None: every namespace

    def may_act_in(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces

    @property
    def scope(self) -> str | list[str]:
        return "*" if self.namespaces is None else sorted(self.namespaces)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_entries(text: str, *, source: str) -> list[TokenEntry]:
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError:
        raise TokenError(f"{source}: not valid YAML or JSON") from None
    if isinstance(data, dict) and set(data) == {"tokens"}:
        data = data["tokens"]
    if data is None:
        data = []
    try:
        entries = _ENTRIES.validate_python(data)
    except ValidationError as exc:
        # Locations and messages only: pydantic's input echo could contain a token.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        raise TokenError(f"{source}: {problems}") from None
    return entries


class TokenTable:
    def __init__(self, entries: list[TokenEntry]) -> None:
        names = [e.name for e in entries]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise TokenError(f"duplicate token names: {', '.join(dupes)}")
        digests = [_digest(e.token) for e in entries]
        if len(set(digests)) != len(digests):
            raise TokenError("two entries share the same token")
        self._entries = [
            (d, Identity(e.name, Role[e.role.upper()],
                         None if e.namespaces == "*" else frozenset(e.namespaces)))
            for d, e in zip(digests, entries, strict=True)
        ]

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, presented: str) -> Identity | None:
        digest = _digest(presented)
        found: Identity | None = None
        for known, identity in self._entries:
            if hmac.compare_digest(digest, known):
                found = identity
        return found


class TokenSource:
    """The live token table: the file's entries plus the environment's."""

    def __init__(self, path: str | Path | None, env: Mapping[str, str]) -> None:
        self.path = Path(path) if path is not None else None
        self._env_text = env.get(ENV_VAR)
        self._file_digest: bytes | None = None
        self.last_error: str | None = None
        self.table = self._load()

    def _read_file(self) -> tuple[str, bytes] | None:
        if self.path is None:
            return None
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            if self._file_digest is None:
                raise TokenError(f"{self.path}: no such file") from None
            # Removed after it was loaded (the Secret deleted, the mount gone): its tokens
            # are revoked, as if it had been emptied. An unreadable file is different: the
            # previous tokens stay until it can be read again.
            raw = b""
        except OSError as exc:
            raise TokenError(f"{self.path}: cannot read ({exc.strerror})") from None
        return raw.decode("utf-8", "replace"), hashlib.sha256(raw).digest()

    def _load(self) -> TokenTable:
        entries: list[TokenEntry] = []
        if self._env_text:
            entries += parse_entries(self._env_text, source=ENV_VAR)
        read = self._read_file()
        if read is not None:
            text, self._file_digest = read
            entries += parse_entries(text, source=str(self.path))
        return TokenTable(entries)

    def reload_if_changed(self) -> bool:
        if self.path is None:
            return False
        try:
            read = self._read_file()
            if read is None or read[1] == self._file_digest:
                return False
            table = self._load()
        except TokenError as exc:
            if str(exc) != self.last_error:
                log.error("token file change rejected; previous tokens stay in force",
                          error=str(exc))
            self.last_error = str(exc)
            return False
        self.table = table
        self.last_error = None
        if self.path is not None and not self.path.exists():
            log.warning("api tokens file removed; its tokens are revoked", count=len(table))
        else:
            log.info("api tokens reloaded", count=len(table))
        return True

    async def watch(self, stop: asyncio.Event, interval: float = 2.0) -> None:
        await aio.watch_file(self.reload_if_changed, stop, interval)
