"""End to end against `canaryd serve` in a sandbox with real Prometheus, one sandbox for all:

1. A dry-run check that fails every interval (p99 <= 1 ms) rides along a healthy canary
   through `canaryd submit --wait`: the rollout is promoted all the same, and the failures
   are in status, in the event stream, in `canaryd get` (apart) and in /metrics.
2. A faulty canary (5% errors) is rolled back.
3. `canaryd backtest --rollout` over each window reproduces the live verdicts: the same
   outcome, the same checks failing, decided within one interval of the daemon.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config

from canaryd.sandbox.runner import Sandbox
from tests.api.support import CONFIG, TOKENS
from tests.api.test_e2e_submit import CANARYD, rollout_file, sandbox, serve, submit_wait

__all__ = ["sandbox", "serve"]  # the fixtures this module uses
INTERVAL = 3.0  # rollout_file's analysis interval


async def canaryd(url: str, *argv: str, role: str = "read") -> tuple[int, str, str]:
    env = {**os.environ, "CANARYD_URL": url, "CANARYD_TOKEN": TOKENS[role]}
    proc = await asyncio.create_subprocess_exec(
        *CANARYD, *argv, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def status_of(url: str, name: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(
            f"{url}/api/v1/rollouts/demo/{name}",
            headers={"Authorization": f"Bearer {TOKENS['read']}"}) as resp:
        body: dict[str, Any] = await resp.json()
    return body["status"]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_dry_run_checks_and_backtests_of_live_rollouts(
    sandbox: Sandbox, serve: str, tmp_path: Path,
) -> None:
    # 1. healthy, with a dry-run check failing on every interval
    healthy = rollout_file(tmp_path, checks=[
        {"metric": "istio-latency-p99", "max": 1, "dryRun": True}])
    code, out, err = await submit_wait(serve, healthy)
    assert code == 0, out + err
    assert out.strip().splitlines()[-1].split(" ", 1)[1].startswith("verdict: Succeeded")
    dry = re.findall(r"\[step (\d)\] \[dry-run\] istio-latency-p99 [0-9]+ ms .*<= 1 ms FAIL$",
                     out, re.MULTILINE)
    assert set(dry) == {"1", "2"}, out  # streamed in every step, shown apart
    code, shown, err = await canaryd(serve, "get", "demo/podinfo-v2")
    lines = shown.splitlines()
    at = lines.index("dry-run checks (recorded, never decide):")
    assert re.fullmatch(r"  istio-latency-p99 [0-9]+ ms .*<= 1 ms FAIL", lines[at + 1])
    status = await status_of(serve, "podinfo-v2")
    failed = [c for c in status["checks"] if c["verdict"] == "Fail"]
    assert failed and all(c["dryRun"] for c in failed) and status["failures"] == 0
    async with aiohttp.ClientSession() as http, http.get(f"{serve}/metrics") as resp:
        metrics = await resp.text()
    outcome = re.search(r'canaryd_check_outcomes_total\{dry_run="true",'
                        r'metric="istio-latency-p99",verdict="Fail"\} ([0-9.]+)', metrics)
    assert outcome and float(outcome.group(1)) >= 2, metrics

    # 2. faulty: 5% errors
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    try:
        await client.AppsV1Api(api).patch_namespaced_deployment("podinfo-canary", "demo", {
            "metadata": {"annotations": {"sandbox.canaryd.io/error-ratio": "0.05"}}})
    finally:
        await api.close()
    faulty = rollout_file(tmp_path)
    faulty.write_text(faulty.read_text().replace("name: podinfo-v2", "name: podinfo-v3"))
    code, out, err = await submit_wait(serve, faulty)
    assert code == 1, out + err

    # 3. backtests of both windows, through the API (--rollout) and Prometheus
    for name in ("podinfo-v2", "podinfo-v3"):
        live = await status_of(serve, name)
        code, out, err = await canaryd(
            serve, "backtest", "--rollout", f"demo/{name}", "--config", str(CONFIG),
            "--prometheus-url", sandbox.prometheus_url, "-o", "json")
        assert code == 0, err
        [replayed] = json.loads(out)["replays"]
        assert replayed["phase"] == live["phase"], (name, replayed["reason"], live["reason"])
        decided = next(h["time"] for h in live["history"]
                       if h["phase"] in ("RollingBack", "Promoting"))
        # The replay runs where the daemon's runs were due, on the same settled data
        # (prometheus.queryOffset): it differs only by the daemon's own latency, and one run
        # more or fewer would put it an interval and the offset away.
        lag = abs((_at(replayed["decidedAt"]) - _at(decided)).total_seconds())
        assert lag <= INTERVAL, (name, lag)
        # Run by run: the same runs, each within an interval of the daemon's, the same
        # verdict for every check.
        live_runs: dict[int, list[dict[str, Any]]] = {}
        for c in live["checks"]:
            live_runs.setdefault(c["seq"], []).append(c)
        assert len(live_runs) == len(replayed["intervals"]), (name, out)
        for checks, run in zip((live_runs[k] for k in sorted(live_runs)), replayed["intervals"],
                               strict=True):
            assert abs((_at(run["time"]) - _at(checks[0]["time"])).total_seconds()) <= INTERVAL
            assert [(c["metric"], c["verdict"]) for c in run["checks"]] == [
                (c["metric"], c["verdict"]) for c in checks], (name, out)
        failing_live = {c["metric"] for c in live["checks"]
                        if c["verdict"] == "Fail" and not c.get("dryRun")}
        failing_replay = {c["metric"] for run in replayed["intervals"] for c in run["checks"]
                          if c["verdict"] == "Fail" and not c.get("dryRun")}
        assert failing_replay == failing_live, (name, out)
        dry_replay = {c["metric"] for run in replayed["intervals"] for c in run["checks"]
                      if c.get("dryRun") and c["verdict"] == "Fail"}
        assert dry_replay == ({"istio-latency-p99"} if name == "podinfo-v2" else set())
    code, text, err = await canaryd(
        serve, "backtest", "--rollout", "demo/podinfo-v3", "--config", str(CONFIG),
        "--prometheus-url", sandbox.prometheus_url)
    assert code == 0, err
    assert re.search(r"^verdict \(sandbox\): RolledBack, decided at ", text, re.MULTILINE)
    assert re.search(r"^live: RolledBack, decided at ", text, re.MULTILINE)
    assert re.search(r"^    istio-success-rate [0-9.]+% .*>= 99% FAIL$", text, re.MULTILINE)
