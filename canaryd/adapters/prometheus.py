"""Prometheus queries through prometheus-api-client.

The client is synchronous, so calls run in a worker thread; each has a timeout; the
library's own urllib3 retry is disabled (it would also retry query timeouts) and tenacity
retries connection failures and 5xx a bounded number of times instead.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import requests
import structlog
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from urllib3.util.retry import Retry

from canaryd.core.durations import format_duration

log = structlog.get_logger("canaryd.prometheus")

Sample = tuple[Mapping[str, str], float]


class QueryError(Exception):
    """Prometheus did not answer the query (unreachable, error status, bad data)."""


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, requests.ConnectionError | requests.Timeout | TimeoutError):
        return True
    return isinstance(exc, PrometheusApiClientException) and "Status Code 5" in str(exc)


def _value(raw: str) -> float:
    return float(raw)  # Prometheus sends "NaN", "+Inf", "-Inf" as strings; float() reads them


class PrometheusClient:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        retries: int = 2,
        observe: Callable[[float, bool], None] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self._conn = self._connect()
        self.observe = observe

    def _connect(self) -> PrometheusConnect:
        return PrometheusConnect(
            url=self.url, disable_ssl=True, retry=Retry(total=0), timeout=self.timeout
        )

    def reconfigure(self, url: str, *, timeout: float, retries: int) -> bool:
        """Follow a config reload: a new URL or timeout applies from the next query on."""
        url = url.rstrip("/")
        if (url, timeout, retries) == (self.url, self.timeout, self.retries):
            return False
        self.url, self.timeout, self.retries = url, timeout, retries
        self._conn = self._connect()
        log.info("prometheus client reconfigured", url=url, timeout=timeout, retries=retries)
        return True

    def _params(self, at: datetime | None) -> dict[str, str]:
        params = {"timeout": format_duration(max(self.timeout - 0.5, 0.5))}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        return params

    def _query_sync(self, query: str, at: datetime | None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._conn.custom_query(query, params=self._params(at))
        return result

    async def _call(self, sync: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """One API call in a worker thread, with its timeout and bounded, logged retries."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("retrying prometheus query", attempt=state.attempt_number,
                        error=str(exc)[:200])

        started = time.monotonic()
        failed = True
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(_retryable),
                stop=stop_after_attempt(self.retries + 1),
                wait=wait_exponential_jitter(multiplier=0.2, max=1.0),
                before_sleep=before_sleep,
                reraise=True,
            ):
                with attempt:
                    raw = await asyncio.wait_for(asyncio.to_thread(sync),
                                                 timeout=self.timeout + 1)
            failed = False
        except (requests.RequestException, PrometheusApiClientException, TimeoutError) as exc:
            raise QueryError(f"{type(exc).__name__}: {str(exc)[:300]}") from None
        finally:
            if self.observe is not None:
                self.observe(time.monotonic() - started, failed)
        return raw

    async def query(self, query: str, *, at: datetime | None = None) -> list[Sample]:
        """An instant vector as (labels, value) pairs, evaluated at `at` (default: whenever
        Prometheus gets the request); QueryError when there is no answer."""
        raw = await self._call(lambda: self._query_sync(query, at))
        out: list[Sample] = []
        for series in raw:
            try:
                out.append((series.get("metric", {}), _value(series["value"][1])))
            except (KeyError, IndexError, ValueError, TypeError):
                raise QueryError(f"unexpected sample shape: {str(series)[:200]}") from None
        return out

    async def query_range(
        self, query: str, *, start: datetime, end: datetime, step: float
    ) -> list[tuple[Mapping[str, str], list[tuple[float, float]]]]:
        """A range query: per series, its (unix time, value) points at start + k * step up
        to end, each what an instant query at that time would answer. `start`, `end` and
        `step` go out in milliseconds, Prometheus' resolution (the library would round the
        times to whole seconds: its parameters are overridden)."""

        def sync() -> list[dict[str, Any]]:
            result: list[dict[str, Any]] = self._conn.custom_query_range(
                query, start_time=start, end_time=end, step=format_duration(step),
                params={"timeout": format_duration(max(self.timeout - 0.5, 0.5)),
                        "start": f"{start.timestamp():.3f}", "end": f"{end.timestamp():.3f}",
                        "step": f"{step:.3f}"})
            return result

        raw = await self._call(sync)
        out = []
        for series in raw:
            try:
                points = [(float(t), _value(v)) for t, v in series["values"]]
            except (KeyError, IndexError, ValueError, TypeError):
                raise QueryError(f"unexpected series shape: {str(series)[:200]}") from None
            out.append((series.get("metric", {}), points))
        return out

    async def ready(self, timeout: float = 1.0) -> bool:  # noqa: ASYNC109
        """One query, no retries, answered within `timeout` seconds (for /readyz, which must
        answer quickly even while Prometheus does not)."""
        timeout = min(timeout, self.timeout)

        def probe() -> list[dict[str, Any]]:
            raw: list[dict[str, Any]] = self._conn.custom_query("vector(1)", timeout=timeout)
            return raw

        started = time.monotonic()
        try:
            raw = await asyncio.wait_for(asyncio.to_thread(probe), timeout=timeout + 0.2)
            value = _value(raw[0]["value"][1])
        except (requests.RequestException, PrometheusApiClientException, TimeoutError,
                KeyError, IndexError, ValueError, TypeError):
            if self.observe is not None:
                self.observe(time.monotonic() - started, True)
            return False
        return not math.isnan(value)
