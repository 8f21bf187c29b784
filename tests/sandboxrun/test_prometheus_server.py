"""PrometheusServer runs the real binary, survives kill/restart and leaves nothing behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from canaryd.sandbox.prometheus import (
    PrometheusError,
    PrometheusNotFoundError,
    PrometheusServer,
)

from .support import process_alive

pytestmark = pytest.mark.prometheus


async def query(url: str, promql: str) -> list[Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.get(f"{url}/api/v1/query", params={"query": promql}) as resp,
    ):
        body = await resp.json()
        assert resp.status == 200, body
        result: list[Any] = body["data"]["result"]
        return result


async def eventually_query(url: str, promql: str, timeout: float = 15) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        result = await query(url, promql)
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.2)


async def test_server_scrapes_its_target_and_answers_queries(
    prometheus_binary: str, metrics_target: str
) -> None:
    async with PrometheusServer([metrics_target], binary=prometheus_binary) as prom:
        assert prom.url.startswith("http://127.0.0.1:")
        result = await eventually_query(prom.url, 'sandbox_test_gauge{job="mesh"}')
        assert result and result[0]["value"][1] == "42"
        # honor_labels keeps the target's own labels unprefixed.
        assert result[0]["metric"]["workload"] == "w"


async def test_kill_then_restart_serves_again_on_the_same_port(
    prometheus_binary: str, metrics_target: str
) -> None:
    async with PrometheusServer([metrics_target], binary=prometheus_binary) as prom:
        url, old_pid = prom.url, prom.pid
        assert old_pid is not None
        await eventually_query(url, "sandbox_test_gauge")
        prom.kill()
        with pytest.raises(aiohttp.ClientError):
            for _ in range(50):
                await query(url, "up")
                await asyncio.sleep(0.05)
        await prom.restart()
        assert prom.url == url and prom.pid != old_pid
        assert await eventually_query(url, "sandbox_test_gauge")


async def test_stop_leaves_no_process_and_no_files(
    prometheus_binary: str, metrics_target: str, tmp_path: Path
) -> None:
    prom = PrometheusServer([metrics_target], binary=prometheus_binary, workdir=tmp_path)
    await prom.start()
    pid, own_dir = prom.pid, prom.workdir
    assert pid is not None and own_dir is not None and own_dir.parent == tmp_path
    await prom.stop()
    assert not process_alive(pid)
    assert list(tmp_path.iterdir()) == []
    await prom.stop()  # idempotent


async def test_missing_binary_names_the_package(tmp_path: Path) -> None:
    prom = PrometheusServer(["127.0.0.1:1"], binary="no-such-prometheus", workdir=tmp_path)
    with pytest.raises(PrometheusNotFoundError, match="apt-get install -y prometheus"):
        await prom.start()
    assert list(tmp_path.iterdir()) == []


async def test_startup_failure_reports_prometheus_log(
    prometheus_binary: str, tmp_path: Path
) -> None:
    prom = PrometheusServer(
        ["127.0.0.1:1"],
        binary=prometheus_binary,
        workdir=tmp_path,
        extra_args=["--no-such-flag"],
    )
    with pytest.raises(PrometheusError, match="no-such-flag"):
        await prom.start(timeout=10)
    assert prom.pid is None
    assert list(tmp_path.iterdir()) == []


def test_prometheus_dies_with_its_parent(prometheus_binary: str, tmp_path: Path) -> None:
    # A parent that is SIGKILLed cannot clean up; the kernel must take the child with it.
    script = textwrap.dedent(
        f"""
        import asyncio, pathlib
        from canaryd.sandbox.prometheus import PrometheusServer

        async def main():
            prom = PrometheusServer(["127.0.0.1:1"], binary={prometheus_binary!r},
                                    workdir=pathlib.Path({str(tmp_path)!r}))
            await prom.start()
            print(prom.pid, flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert process_alive(child_pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    while process_alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(child_pid)
