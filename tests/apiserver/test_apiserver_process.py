"""`python -m canaryd.sandbox.apiserver` as its own process, driven over HTTP."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

pytestmark = pytest.mark.emulator_only


async def test_runs_as_a_process_and_stops_on_sigterm(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kc.yaml"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "canaryd.sandbox.apiserver", "--host", "127.0.0.1",
        "--port", "0", "--kubeconfig", str(kubeconfig), stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(10):
            ready = json.loads(await proc.stdout.readline())
        assert ready["kubeconfig"] == str(kubeconfig)
        cfg = yaml.safe_load(kubeconfig.read_text())
        assert cfg["current-context"] == "sandbox"
        assert cfg["contexts"][0]["context"]["namespace"] == "default"
        assert cfg["clusters"][0]["cluster"]["server"] == ready["kube_api_url"]
        async with aiohttp.ClientSession(base_url=ready["kube_api_url"]) as http:
            await http.post("/sandbox/faults", json={"fail_next": {
                "count": 1, "status": 500, "resource": "namespaces"}})
            assert (await http.get("/api/v1/namespaces")).status == 500
            assert (await http.get("/api/v1/namespaces")).status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            rc = await proc.wait()
    assert rc == 0
