"""The Prometheus client against a real Prometheus: values, errors as QueryError, reload."""

from __future__ import annotations

import asyncio
import math
import shutil
from collections.abc import AsyncIterator

import pytest

from canaryd.adapters.prometheus import PrometheusClient, QueryError
from canaryd.sandbox.prometheus import PrometheusServer, free_loopback_port


@pytest.fixture
async def prometheus() -> AsyncIterator[PrometheusServer]:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed")
    async with PrometheusServer([f"127.0.0.1:{free_loopback_port()}"]) as server:
        yield server


async def test_values_nan_and_errors(prometheus: PrometheusServer) -> None:
    client = PrometheusClient(prometheus.url, timeout=2, retries=0)
    assert await client.query("vector(2)") == [({}, 2.0)]
    [(_, nan)] = await client.query("vector(0) / vector(0)")
    assert math.isnan(nan)
    assert await client.query('up{job="nothing-like-this"}') == []
    with pytest.raises(QueryError, match="400"):
        await client.query("sum(")


async def test_unreachable_is_a_query_error_and_reload_fixes_it(
    prometheus: PrometheusServer,
) -> None:
    seen: list[tuple[float, bool]] = []
    client = PrometheusClient(f"http://127.0.0.1:{free_loopback_port()}", timeout=1, retries=1,
                              observe=lambda s, failed: seen.append((s, failed)))
    with pytest.raises(QueryError, match="ConnectionError"):
        await client.query("vector(1)")
    assert seen[-1][1] is True
    assert client.reconfigure(prometheus.url, timeout=2, retries=0)
    assert not client.reconfigure(prometheus.url, timeout=2, retries=0)
    assert await client.query("vector(1)") == [({}, 1.0)]
    assert seen[-1][1] is False


async def test_queries_are_evaluated_at_the_time_asked(prometheus: PrometheusServer) -> None:
    from datetime import UTC, datetime, timedelta

    client = PrometheusClient(prometheus.url, timeout=2, retries=0)
    at = datetime.now(UTC) - timedelta(minutes=3)
    [(_, evaluated)] = await client.query("vector(time())", at=at)
    assert evaluated == pytest.approx(at.timestamp(), abs=0.001)


async def test_ready_answers_while_prometheus_is_frozen(
    prometheus: PrometheusServer,
) -> None:
    client = PrometheusClient(prometheus.url, timeout=5, retries=2)
    assert await client.ready()
    prometheus.freeze()
    try:
        # A frozen Prometheus never answers: only ready()'s own timeout gets it an answer.
        async with asyncio.timeout(60):
            assert not await client.ready(timeout=0.5)
    finally:
        prometheus.thaw()
    assert await client.ready()
