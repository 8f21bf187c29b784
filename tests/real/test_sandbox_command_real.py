"""`canaryd sandbox --kube real` as a user runs it: the whole sandbox on a real control
plane of its own, kubectl against it, SIGTERM, and no process or file left behind."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest

from tests.realkube import require_binaries
from tests.sandboxrun.support import descendants_named, process_alive
from tests.sandboxrun.test_sandbox_command import start_sandbox

pytestmark = pytest.mark.prometheus
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok",
              "prometheus")


async def test_sandbox_on_the_real_control_plane_starts_serves_and_cleans_up(
    tmp_path: Path,
) -> None:
    require_binaries()
    stderr = tmp_path / "stderr"
    proc, endpoints = await start_sandbox(["--kube", "real", "--no-daemon"], stderr)
    try:
        # /proc/PID/comm keeps 15 characters of a name.
        children = {name: descendants_named(proc.pid, name[:15]) for name in COMPONENTS}
        assert all(len(pids) == 1 for pids in children.values()), children
        kubectl = await asyncio.create_subprocess_exec(
            "kubectl", "--kubeconfig", endpoints["kubeconfig"], "get", "--raw", "/version",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(kubectl.communicate(), timeout=30)
        assert kubectl.returncode == 0, err.decode()
        assert json.loads(out)["gitVersion"] == "v1.36.3"
        kubectl = await asyncio.create_subprocess_exec(
            "kubectl", "--kubeconfig", endpoints["kubeconfig"], "get", "deploy", "-n", "demo",
            "-o", "json", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(kubectl.communicate(), timeout=30)
        deployments = {d["metadata"]["name"]: d["status"].get("availableReplicas")
                       for d in json.loads(out)["items"]}
        assert deployments and all(deployments.values()), deployments
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(proc.wait(), timeout=60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert code == 0, stderr.read_text()[-2000:]
    deadline = time.monotonic() + 10
    pids = [pid for group in children.values() for pid in group]
    while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not [p for p in pids if process_alive(p)], "a component outlived the sandbox"
    assert not Path(endpoints["workdir"]).exists()
    assert not Path(endpoints["kube_workdir"]).exists()

