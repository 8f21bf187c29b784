"""Deliberate retry policies (tenacity): bounded, logged, and only for errors worth retrying."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import structlog
from kubernetes_asyncio.client.exceptions import ApiException
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

T = TypeVar("T")

# Observer for Kubernetes call latency and errors: (operation, seconds, failed). Set by the
# runtime for the tasks it runs (a ContextVar, so it follows them into child tasks).
KubeObserver = Callable[[str, float, bool], None]
kube_observer: contextvars.ContextVar[KubeObserver | None] = contextvars.ContextVar(
    "kube_observer", default=None
)
log = structlog.get_logger("canaryd.retry")
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


def kube_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        return exc.status in RETRYABLE_STATUS or exc.status == 0
    return isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError | ConnectionError)


def _retry_after(exc: BaseException | None) -> float:
    if isinstance(exc, ApiException) and exc.status == 429 and exc.headers:
        try:
            return min(float(exc.headers.get("Retry-After", 0)), 10.0)
        except ValueError:
            return 0.0
    return 0.0


def _log_retry(what: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "retrying", call=what, attempt=state.attempt_number,
            error=f"{type(exc).__name__}: {getattr(exc, 'status', '')} {exc}"[:300],
        )

    return before_sleep


async def kube_call(
    what: str,
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int = 5,
    max_seconds: float = 20.0,
) -> T:
    """Run a Kubernetes API call with bounded exponential backoff on transient errors.

    409 Conflict, 404 and 422 are answers, not transient failures: they surface at once.
    """
    wait = wait_exponential_jitter(multiplier=0.1, max=2.0)

    def wait_fn(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return max(wait(state), _retry_after(exc))

    retrying = AsyncRetrying(
        retry=retry_if_exception(kube_retryable),
        stop=stop_after_attempt(attempts) | stop_after_delay(max_seconds),
        wait=wait_fn,
        before_sleep=_log_retry(what),
        reraise=True,
    )
    observer = kube_observer.get()
    started = time.monotonic()
    failed = True
    try:
        async for attempt in retrying:
            with attempt:
                result = await fn()
                failed = False
                return result
    finally:
        if observer is not None:
            observer(what.split(" ", 1)[0], time.monotonic() - started, failed)
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


async def kube_json(
    what: str, fn: Callable[[], Awaitable[Any]], **kwargs: Any
) -> dict[str, Any]:
    """A call made with `_preload_content=False` (to get the raw JSON, not a model object),
    with its HTTP status checked inside the retry: kubernetes_asyncio raises nothing for a
    non-2xx response when it does not preload, so 404s and 5xxs must be raised here."""

    async def call() -> dict[str, Any]:
        response = await fn()
        if response.status >= 400:
            body = await response.text()
            raise ApiException(status=response.status, reason=response.reason or body[:200])
        result: dict[str, Any] = await response.json()
        return result

    return await kube_call(what, call, **kwargs)
