"""`canaryd sandbox` as a user runs it: a subprocess, stopped by a signal, leaving nothing."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .support import REPO, descendants_named, process_alive

pytestmark = pytest.mark.prometheus


async def start_sandbox(args: list[str], stderr_path: Path) -> tuple[Any, dict[str, str]]:
    """Run `canaryd sandbox --json ...`; returns the process and its endpoints line."""
    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "canaryd",
            "sandbox",
            "--json",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,  # a file: a chatty child must never block on a full pipe
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"no endpoints line; stderr:\n{stderr_path.read_text()[-3000:]}")
    if not line:
        await proc.wait()
        pytest.fail(f"exited {proc.returncode}; stderr:\n{stderr_path.read_text()[-3000:]}")
    endpoints: dict[str, str] = json.loads(line)
    return proc, endpoints


async def get_json(url: str, **params: str) -> Any:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(url, params=params) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def stop_and_check(proc: Any, signum: int, endpoints: dict[str, str]) -> None:
    children = descendants_named(proc.pid, "prometheus")
    proc.send_signal(signum)
    try:
        code = await asyncio.wait_for(proc.wait(), timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0
    assert len(children) == 1, children
    deadline = time.monotonic() + 5
    while process_alive(children[0]) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not process_alive(children[0])
    assert not Path(endpoints["workdir"]).exists()


async def test_json_sandbox_serves_kube_api_prometheus_and_kubectl(
    prometheus_binary: str, tmp_path: Path
) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None and os.environ.get("CI"):
        pytest.fail("kubectl is required in CI but is not on PATH")
    kubeconfig = tmp_path / "kubeconfig"
    proc, endpoints = await start_sandbox(
        ["--kubeconfig", str(kubeconfig)], tmp_path / "stderr.log"
    )
    try:
        assert {"kube_api_url", "kubeconfig", "prometheus_url", "mesh_metrics_url"} <= set(
            endpoints
        )
        assert endpoints["kubeconfig"] == str(kubeconfig)
        vs = await get_json(
            f"{endpoints['kube_api_url']}/apis/networking.istio.io/v1/namespaces/demo/"
            "virtualservices/podinfo"
        )
        assert vs["spec"]["http"][0]["name"] == "primary"
        # --json reports ready only once Prometheus has the example's traffic.
        up = await get_json(f"{endpoints['prometheus_url']}/api/v1/query", query="up")
        assert up["data"]["result"][0]["value"][1] == "1"
        series = await get_json(
            f"{endpoints['prometheus_url']}/api/v1/query",
            query='istio_requests_total{destination_workload_namespace="demo"}',
        )
        assert series["data"]["result"]
        if kubectl is not None:
            out = await asyncio.to_thread(
                subprocess.run,
                [
                    kubectl,
                    "--kubeconfig",
                    str(kubeconfig),
                    "get",
                    "virtualservices",
                    "-n",
                    "demo",
                    "-o",
                    "json",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert out.returncode == 0, out.stderr
            names = [item["metadata"]["name"] for item in json.loads(out.stdout)["items"]]
            assert names == ["podinfo"]
    finally:
        if proc.returncode is None:
            await stop_and_check(proc, signal.SIGTERM, endpoints)
    # The user asked for this kubeconfig by path: it outlives the sandbox.
    assert kubeconfig.exists()
    if kubectl is None:
        pytest.skip("kubectl is not installed: everything but the kubectl check passed")


async def test_ctrl_c_stops_a_sandbox_without_the_example_app(
    prometheus_binary: str, tmp_path: Path
) -> None:
    proc, endpoints = await start_sandbox(["--no-example-app"], tmp_path / "stderr.log")
    try:
        assert Path(endpoints["kubeconfig"]).parent == Path(endpoints["workdir"])
        namespaces = await get_json(f"{endpoints['kube_api_url']}/api/v1/namespaces")
        assert "demo" not in {ns["metadata"]["name"] for ns in namespaces["items"]}
    finally:
        if proc.returncode is None:
            await stop_and_check(proc, signal.SIGINT, endpoints)


def test_a_bad_config_is_refused_before_anything_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("profiles:\n  p: {checks: [{metric: nope, min: 1}]}\n")
    result = subprocess.run([sys.executable, "-m", "canaryd", "sandbox", "--config", str(bad)],
                            capture_output=True, text=True, timeout=60, check=False, cwd=REPO)
    assert result.returncode == 2
    assert "profiles.p.checks[0].metric: unknown metric template 'nope'" in result.stderr
