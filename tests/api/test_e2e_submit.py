"""End to end, as a pipeline runs it: `canaryd submit --wait` (a process) against
`canaryd serve` (a process) in a full sandbox with real Prometheus. A healthy canary exits 0,
a faulty one (5% errors) exits 1; both print their checks."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client, config

from canaryd.sandbox.realkube import RealKube
from canaryd.sandbox.runner import Sandbox
from tests.api.support import CONFIG, EXAMPLE, TOKENS, tokens_yaml

pytestmark = pytest.mark.prometheus
CANARYD = [sys.executable, "-m", "canaryd"]
# The pipeline's path, against the embedded emulator and the real control plane.
KUBE_BACKENDS = ("emulator", "real")


@pytest.fixture
async def sandbox(kube_backend: RealKube | None) -> AsyncIterator[Sandbox]:
    if shutil.which("prometheus") is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is required in CI")
        pytest.skip("prometheus is not installed")
    async with Sandbox(rps=200, kube=kube_backend) as sb:
        await sb.wait_for_traffic(timeout=30)
        yield sb


@pytest.fixture
async def serve(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[str]:
    """`canaryd serve` in its own process; yields its URL once it says it is ready."""
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(tokens_yaml())
    log = (tmp_path / "serve.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        *CANARYD, "serve", "--config", str(CONFIG), "--kubeconfig", str(sandbox.kubeconfig),
        "--host", "127.0.0.1", "--port", "0", "--prometheus-url", sandbox.prometheus_url,
        "--tokens-file", str(tokens), "--identity", "e2e-api",
        stdout=asyncio.subprocess.PIPE, stderr=log,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        ready = json.loads(line)
        assert ready["event"] == "ready", line
        yield str(ready["url"])
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


def rollout_file(tmp_path: Path, **analysis: Any) -> Path:
    body = yaml.safe_load(EXAMPLE.read_text())
    body["spec"]["plan"] = {"steps": [{"weight": 20}, {"weight": 50}]}
    body["spec"]["analysis"] = {"profile": "sandbox", "interval": "3s", **analysis}
    path = tmp_path / "rollout.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


async def submit_wait(url: str, path: Path, *extra: str) -> tuple[int, str, str]:
    env = {**os.environ, "CANARYD_URL": url, "CANARYD_TOKEN": TOKENS["submit"]}
    proc = await asyncio.create_subprocess_exec(
        *CANARYD, "submit", "-f", str(path), *extra, "--wait", "--timeout", "130s",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=150)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_a_healthy_canary_is_promoted_and_submit_exits_0(
    serve: str, tmp_path: Path,
) -> None:
    code, out, err = await submit_wait(serve, rollout_file(tmp_path))
    print(out)
    assert code == 0, out + err
    # stable rides along in the same grouped query and is shown beside the canary
    assert re.search(r"\[step 1\] istio-success-rate [0-9.]+% \(stable [0-9.]+%\) >= 99% ok$",
                     out, re.MULTILINE)
    assert re.search(r"\[step 2\] istio-latency-p99 [0-9]+ ms \(stable [0-9]+ ms\) <= 200 ms ok$",
                     out, re.MULTILINE)
    assert "[canary 20% / stable 80%]" in out and "[canary 50% / stable 50%]" in out
    assert out.strip().splitlines()[-1].split(" ", 1)[1].startswith("verdict: Succeeded")


async def test_a_faulty_canary_is_rolled_back_and_submit_exits_1(
    sandbox: Sandbox, serve: str, tmp_path: Path,
) -> None:
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    try:
        await client.AppsV1Api(api).patch_namespaced_deployment(
            "podinfo-canary", "demo",
            {"metadata": {"annotations": {"sandbox.canaryd.io/error-ratio": "0.05"}}},
        )
    finally:
        await api.close()
    code, out, err = await submit_wait(serve, rollout_file(tmp_path))
    print(out)
    assert code == 1, out + err
    assert re.search(r"\] istio-success-rate [0-9.]+% \(stable [0-9.]+%\) >= 99% FAIL$", out,
                     re.MULTILINE)
    assert "verdict: RolledBack" in out.strip().splitlines()[-1]


async def test_a_blue_green_rollout_works_unchanged_through_submit(
    serve: str, tmp_path: Path,
) -> None:
    body = yaml.safe_load((EXAMPLE.parent / "bluegreen.yaml").read_text())
    body["spec"]["analysis"] = {"profile": "sandbox", "interval": "3s"}
    body["spec"]["blueGreen"].update(postPromotion="3s", scaleDownDelay="1s")
    path = tmp_path / "bluegreen.yaml"
    path.write_text(yaml.safe_dump(body))
    code, out, err = await submit_wait(serve, path)
    print(out)
    assert code == 0, out + err
    assert "[canary 0% / stable 100%]" in out, "green checked behind the preview first"
    assert "[canary 100% / stable 0%]" in out, "then the active service switched"
    assert "scaled to zero" in out
    assert "verdict: Succeeded" in out.strip().splitlines()[-1]


async def test_a_tightened_threshold_submitted_through_the_api_is_the_one_in_force(
    sandbox: Sandbox, serve: str, tmp_path: Path,
) -> None:
    """The per-rollout override survives the API, the CRD schema and storage, and is what
    the checks are judged against (the profile says >= 99)."""
    path = rollout_file(tmp_path, thresholds={"istio-success-rate": {"min": 99.5}})
    code, out, err = await submit_wait(serve, path)
    assert code == 0, out + err
    assert re.search(r"istio-success-rate [0-9.]+% (\(stable [0-9.]+%\) )?>= 99.5% ok$", out,
                     re.MULTILINE), out
    assert not re.search(r"istio-success-rate [0-9.]+% (\(stable [0-9.]+%\) )?>= 99% ", out), out
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    try:
        stored = await client.CustomObjectsApi(api).get_namespaced_custom_object(
            "canaryd.io", "v1alpha1", "demo", "rollouts", "podinfo-v2")
    finally:
        await api.close()
    assert stored["spec"]["analysis"]["thresholds"] == {"istio-success-rate": {"min": 99.5}}
    success = [c for c in stored["status"]["checks"] if c["metric"] == "istio-success-rate"]
    assert success and all("99.5" in c["threshold"] for c in success), success
