"""Deliberate retry policies (tenacity): bounded, logged, and only for errors worth retrying."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

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

from canaryd.adapters.errors import NETWORK_ERRORS, Unavailable, classify

T = TypeVar("T")

# Observer for Kubernetes call latency and errors: (operation, seconds, failed). Set by the
# runtime for the tasks it runs (a ContextVar, so it follows them into child tasks).
KubeObserver = Callable[[str, float, bool], None]
kube_observer: contextvars.ContextVar[KubeObserver | None] = contextvars.ContextVar(
    "kube_observer", default=None
)
log = structlog.get_logger("canaryd.retry")


def kube_retryable(exc: BaseException) -> bool:
    """Unavailable (429, 5xx, no answer at all) is worth another try; any other answer of
    the API server is final (canaryd.adapters.errors)."""
    return isinstance(exc, (ApiException, *NETWORK_ERRORS)) and isinstance(
        classify(exc, ""), Unavailable)


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
        shown = classify(exc, what) if isinstance(exc, (ApiException, *NETWORK_ERRORS)) else exc
        log.warning("retrying", call=what, attempt=state.attempt_number,
                    error=f"{type(shown).__name__}: {shown}"[:300])

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
    Whatever fails is raised classified (`canaryd.adapters.errors`: NotFound, Conflict,
    Invalid, Forbidden, Unavailable).
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
    except (ApiException, *NETWORK_ERRORS) as exc:
        raise classify(exc, what) from exc
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
            exc = ApiException(status=response.status, reason=response.reason or body[:200])
            exc.body = body  # the Status: classified like any other answer
            raise exc
        result: dict[str, Any] = await response.json()
        return result

    return await kube_call(what, call, **kwargs)
