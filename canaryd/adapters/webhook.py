"""HTTP calls out of canaryd (hooks and notifications): signed, bounded, retried, guarded.

- Every call has a deadline covering its retries; retries (tenacity) only for what may heal:
  no connection, 429, 5xx. Redirects are not followed (a 3xx is an answer, not a detour).
- Targets are checked against the address policy on every connection, after DNS: link-local
  and unspecified addresses never (cloud metadata), and the configured networks.
- Signatures: `X-Canaryd-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` with
  `X-Canaryd-Timestamp` (Unix seconds): a receiver refuses stale timestamps (replays).
- URLs are logged redacted (`redact`): scheme, host and port only; webhook URLs carry tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import structlog
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from canaryd.core.hooksettings import HookSettings, UrlFrom
from canaryd.core.hookspec import check_hook_url, denied_always

log = structlog.get_logger("canaryd.webhook")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
USER_AGENT = "canaryd"
NOT_YET = 425  # Too Early: a gate's "not yet, ask again"
BODY_SHOWN = 300


def redact(url: str) -> str:
    """What of a URL may be logged: scheme, host and port (paths and queries hold tokens)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    if ":" in host:
        host = f"[{host}]"
    rest = "/…" if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{rest}"


@dataclass(frozen=True)
class AddressPolicy:
    """Where canaryd may send HTTP: never link-local/unspecified; never `deny`; only `allow`
    when it is not empty."""

    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()

    def refusal(self, address: str) -> str | None:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"{address!r} is not an address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if denied_always(ip):
            return f"{ip} is link-local or unspecified (never a target)"
        if any(ip in net for net in self.deny):
            return f"{ip} is in a denied network (hooks.denyNetworks)"
        if self.allow and not any(ip in net for net in self.allow):
            return f"{ip} is outside hooks.allowNetworks"
        return None


def address_policy(hooks: HookSettings) -> AddressPolicy:
    """The address policy of the configured hooks.allowNetworks and .denyNetworks."""
    return AddressPolicy(
        allow=tuple(ipaddress.ip_network(n, strict=False) for n in hooks.allow_networks),
        deny=tuple(ipaddress.ip_network(n, strict=False) for n in hooks.deny_networks))


def receiver_url(source: UrlFrom) -> str:
    """A receiver's URL, read from its file or environment variable and validated;
    ValueError saying where it was looked for (never the URL)."""
    if source.env is not None:
        value = os.environ.get(source.env, "").strip()
        where = f"environment variable {source.env}"
    else:
        assert source.file is not None
        try:
            value = Path(source.file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read {source.file}: {exc.strerror}") from None
        where = source.file
    if not value:
        raise ValueError(f"{where} is empty or unset")
    try:
        return check_hook_url(value)
    except ValueError as exc:
        raise ValueError(f"the URL in {where} is not usable: {exc}") from None


class TargetRefused(aiohttp.ClientError):
    """The target resolves to an address the policy refuses."""


class GuardedResolver(AbstractResolver):
    """DNS, then the policy on every address: a name that resolves (or re-resolves, DNS
    rebinding) to a refused address is not connected to."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self.inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        for entry in found:
            why = self.policy.refusal(entry["host"])
            if why is not None:
                raise TargetRefused(f"{host} resolves to {why}")
        return found

    async def close(self) -> None:
        await self.inner.close()


class Guarded:
    """An HTTP session whose every target passes `policy`: names through the resolver,
    literal addresses (which skip any resolver) checked before the request."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(policy), limit=64,
                                         use_dns_cache=False)
        self.http = aiohttp.ClientSession(connector=connector,
                                          headers={"User-Agent": USER_AGENT})

    def refusal(self, url: str) -> str | None:
        host = urlsplit(url).hostname or ""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return None  # a name: the resolver checks what it resolves to
        return self.policy.refusal(host)

    async def close(self) -> None:
        await self.http.close()

    async def __aenter__(self) -> Guarded:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def session(policy: AddressPolicy) -> Guarded:
    return Guarded(policy)


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body,
                                hashlib.sha256).hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str,
           *, now: float, tolerance: float = 300.0) -> bool:
    """What a receiver does (documented, and used by the tests' receivers)."""
    try:
        fresh = abs(now - int(timestamp)) <= tolerance
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no HTTP answer at all
    detail: str  # why, for status and people (no URL beyond its redacted form)


class _Retry(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.detail)
        self.answer = answer


def _shown(text: str) -> str:
    """A receiver's answer as canaryd repeats it: its `reason`/`message` when JSON, else the
    text, printable and short."""
    try:
        doc = json.loads(text)
        if isinstance(doc, dict):
            for key in ("reason", "message", "detail", "error"):
                if isinstance(doc.get(key), str):
                    text = doc[key]
                    break
    except ValueError:
        pass
    clean = "".join(c if c.isprintable() else " " for c in text).strip()
    return clean[:BODY_SHOWN]


async def post(
    client: Guarded, url: str, payload: Any, *, deadline: float, retries: int,
    secret: bytes | None = None, headers: dict[str, str] | None = None, what: str = "webhook",
    final: Sequence[int] = (),
) -> Answer:
    """POST `payload` as JSON; the answer of the last attempt. 429 and 5xx (and no answer)
    are retried unless listed in `final`; the whole call ends within `deadline` seconds."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    shown = redact(url)
    refused = client.refusal(url)
    if refused is not None:
        return Answer(None, f"refused {shown}: {refused}")

    async def once() -> Answer:
        sent = {"Content-Type": "application/json", **(headers or {})}
        if secret is not None:
            stamp = str(int(time.time()))
            sent["X-Canaryd-Timestamp"] = stamp
            sent["X-Canaryd-Signature"] = sign(secret, stamp, body)
        try:
            async with client.http.post(url, data=body, headers=sent,
                                   allow_redirects=False) as resp:
                code = resp.status
                said = _shown((await resp.content.read(4096)).decode("utf-8", "replace"))
                answer = Answer(code, f"HTTP {code}" + (f": {said}" if said else ""))
        except TargetRefused as exc:
            return Answer(None, f"refused {shown}: {exc}")
        except (aiohttp.ClientError, OSError) as exc:
            raise _Retry(Answer(None, f"no answer from {shown}: {type(exc).__name__}"
                                      + (f" ({exc})" if "://" not in str(exc) else ""))) from None
        if (code == 429 or code >= 500) and code not in final:
            raise _Retry(answer)
        return answer

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("retrying", call=what, url=shown, attempt=state.attempt_number,
                    error=str(exc)[:300])

    last = Answer(None, f"no answer from {shown} within {deadline:g}s")
    try:
        async with asyncio.timeout(deadline):
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(retries + 1),
                wait=wait_exponential_jitter(multiplier=0.2, max=5.0),
                retry=retry_if_exception_type(_Retry), reraise=True,
                before_sleep=before_sleep,
            ):
                with attempt:
                    return await once()
    except _Retry as exc:
        return exc.answer
    except TimeoutError:
        return last
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover
