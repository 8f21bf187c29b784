"""`CanarydClient`: the API calls, each with a timeout, errors mapped to `errors.ClientError`."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from canaryd.client import errors
from canaryd.client.sse import Decoder, Message

API = "/api/v1"
# An idle stream gets a keep-alive comment every 15s; three missed ones mean it is dead.
STREAM_IDLE_TIMEOUT = 45.0


def _problem_of(status: int, text: str, reason: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and "title" in body:
        return body
    return {"title": reason or "error", "status": status, "detail": text[:300]}


def _raise_for(status: int, text: str, reason: str) -> None:
    if status < 400:
        return
    problem = _problem_of(status, text, reason)
    if status in (401, 403):
        raise errors.AuthFailed(status, problem)
    if status == 404:
        raise errors.NotFound(status, problem)
    if status >= 500:
        raise errors.Unreachable(f"canaryd answered {status}: {problem.get('detail', '')}")
    raise errors.ProblemError(status, problem)


_WARNING = re.compile(r'\d{3} \S+ "((?:[^"\\]|\\.)*)"')


def _warning_texts(header: str) -> list[str]:
    """The texts of a Warning header (`299 canaryd "..."`, comma-separated)."""
    return [m.group(1).replace('\\"', '"') for m in _WARNING.finditer(header)]


def rollout_path(namespace: str, name: str, *rest: str) -> str:
    return "/".join([f"{API}/rollouts", quote(namespace, safe=""), quote(name, safe=""), *rest])


class CanarydClient:
    def __init__(self, url: str, token: str | None, *, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: aiohttp.ClientSession | None = None
        self.warnings: list[str] = []  # the server's Warning headers, in order

    async def __aenter__(self) -> CanarydClient:
        self._session = aiohttp.ClientSession(headers=self._headers)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use CanarydClient as an async context manager")
        return self._session

    async def request(
        self, method: str, path: str, *, body: bytes | None = None,
        headers: Mapping[str, str] | None = None, params: Mapping[str, str] | None = None,
    ) -> tuple[dict[str, Any], Mapping[str, str]]:
        try:
            async with self.session.request(
                method, self.url + path, data=body, headers=headers, params=params,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                text = await resp.text()
                for header in resp.headers.getall("Warning", []):
                    self.warnings.extend(_warning_texts(header))
                _raise_for(resp.status, text, resp.reason or "")
                return (json.loads(text) if text else {}), resp.headers
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise errors.Unreachable(
                f"cannot reach canaryd at {self.url}: {type(exc).__name__} {exc}".strip()
            ) from None
        except ValueError:
            raise errors.Unreachable(f"{self.url} did not answer with JSON") from None

    async def submit(
        self, manifest: dict[str, Any], *, idempotency_key: str, attempts: int = 4,
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Create the rollout: (the rollout, whether the server replayed an earlier one).
        With `dry_run`, the server (and Kubernetes, dryRun=All) validates everything and
        creates nothing: the answer is the rollout as it would have been created.

        Retried on Unreachable: the Idempotency-Key makes a retry return the same rollout."""
        body = json.dumps(manifest).encode()
        headers = {"Content-Type": "application/json"}
        if not dry_run:
            headers["Idempotency-Key"] = idempotency_key
        params = {"dryRun": "All"} if dry_run else None
        for attempt in range(attempts):
            try:
                created, resp_headers = await self.request(
                    "POST", f"{API}/rollouts", body=body, headers=headers, params=params
                )
                return created, resp_headers.get("Idempotent-Replayed") == "true"
            except errors.Unreachable:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(min(0.5 * 2**attempt, 4.0))
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self, namespace: str, name: str) -> dict[str, Any]:
        return (await self.request("GET", rollout_path(namespace, name)))[0]

    async def whoami(self) -> dict[str, Any]:
        return (await self.request("GET", f"{API}/whoami"))[0]

    async def list(self, *, limit: int = 100, **filters: str | None) -> list[dict[str, Any]]:
        """Every rollout matching the filters, following the pages."""
        params = {k: v for k, v in filters.items() if v}
        params["limit"] = str(limit)
        items: list[dict[str, Any]] = []
        while True:
            page, _ = await self.request("GET", f"{API}/rollouts", params=params)
            items.extend(page.get("items") or [])
            more = (page.get("metadata") or {}).get("continue")
            if not more:
                return items
            params["continue"] = more

    async def act(self, namespace: str, name: str, action: str) -> dict[str, Any]:
        return (await self.request("POST", rollout_path(namespace, name, action)))[0]

    async def stream(
        self, namespace: str, name: str, *, last_event_id: str | None = None
    ) -> AsyncIterator[Message]:
        """One connection to the event stream; ends when the server ends it.

        Raises Unreachable when the connection fails or stays silent too long."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout,
                                        sock_read=STREAM_IDLE_TIMEOUT)
        decoder = Decoder()
        try:
            async with self.session.get(
                self.url + rollout_path(namespace, name, "events"), headers=headers,
                timeout=timeout,
            ) as resp:
                if resp.status >= 400:
                    _raise_for(resp.status, await resp.text(), resp.reason or "")
                async for raw in resp.content:
                    message = decoder.feed(raw.decode("utf-8").rstrip("\r\n"))
                    if message is not None:
                        yield message
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise errors.Unreachable(f"event stream dropped: {type(exc).__name__}") from None
