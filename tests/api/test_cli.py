"""The pipeline CLI against a real server: output, exit codes, --set, --wait, --timeout."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client

from canaryd.cli import main
from canaryd.client import manifest as manifests
from canaryd.core.analysisspec import Check
from canaryd.core.verdict import Measurement, judge
from canaryd.sandbox.testing import eventually
from tests.api.conftest import Served
from tests.api.support import TOKENS, StatusWriter, manifest


async def canaryd(served: Served | None, *argv: str, role: str = "admin") -> int:
    """Run `canaryd ARGV` in a worker thread (its own event loop) against the server."""
    conn = ["--url", served.url if served else "http://127.0.0.1:9", "--token", TOKENS[role]]
    code: int = await asyncio.to_thread(main, [*argv, *conn])
    return code


@pytest.fixture
def rollout_file(tmp_path: Path) -> Path:
    path = tmp_path / "rollout.yaml"
    path.write_text(yaml.safe_dump(manifest()))
    return path


async def test_submit_without_wait_prints_the_rollout_and_exits_0(
    served: Served, rollout_file: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    code = await canaryd(served, "submit", "-f", str(rollout_file),
                         "--set", "spec.version=1234567", "--set", "spec.plan.steps[0].weight=5")
    assert code == 0
    assert "rollout demo/podinfo-v2 submitted: podinfo -> 1234567" in capsys.readouterr().out
    obj = served.state.deps.cache.get("demo/podinfo-v2") or await _get(served)
    assert obj["spec"]["plan"]["steps"][0]["weight"] == 5


async def _get(served: Served) -> dict[str, object]:
    async def probe() -> dict[str, object] | None:
        return served.state.deps.cache.get("demo/podinfo-v2")

    return await eventually(probe, timeout=10, what="the rollout in the cache")


async def test_bad_input_exits_2_naming_each_bad_field(
    served: Served, rollout_file: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    code = await canaryd(served, "submit", "-f", str(rollout_file),
                         "--set", "spec.workloads.canary=Bad_Name", "--set", "spec.extra=1")
    assert code == 2
    err = capsys.readouterr().err
    assert "/spec/workloads/canary" in err and "/spec/extra" in err
    assert await canaryd(served, "submit", "-f", str(rollout_file.parent / "nope.yaml")) == 2
    assert await canaryd(served, "submit", "-f", str(rollout_file), "--set", "novalue") == 2


async def test_unreachable_server_and_bad_tokens_exit_3(
    served: Served, rollout_file: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert await canaryd(None, "list") == 3
    assert "cannot reach canaryd" in capsys.readouterr().err
    code = await asyncio.to_thread(main, ["list", "--url", served.url, "--token", "wrong-one"])
    assert code == 3
    assert "CANARYD_TOKEN" in capsys.readouterr().err
    assert await canaryd(served, "submit", "-f", str(rollout_file), role="read") == 3


async def test_wait_follows_to_the_verdict_and_exits_0_on_success(
    served: Served, kube: client.ApiClient, rollout_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    submit = asyncio.create_task(canaryd(served, "submit", "-f", str(rollout_file), "--wait"))
    await _get(served)
    writer = StatusWriter(kube, "demo", "podinfo-v2")
    await writer.transition("Progressing", "step 1/3 at 10%", canary=10)
    await writer.checks(99.7)
    await writer.transition("Paused", "paused by operator")
    await writer.transition("Progressing", "resumed", canary=10)
    await writer.transition("Promoting", "all steps passed", canary=100)
    await writer.transition("Succeeded", "promoted")
    assert await asyncio.wait_for(submit, timeout=30) == 0
    out = capsys.readouterr().out.splitlines()
    assert any("Pending -> Progressing  [canary 10% / stable 90%]" in line for line in out)
    assert any(line.endswith("   [step 1] metric-0 99.7 >= 99 ok") for line in out)
    assert any("Progressing -> Paused" in line for line in out)
    assert out[-1].endswith("verdict: Succeeded: promoted")


async def test_wait_exits_1_when_rolled_back_and_json_output_is_one_object_per_line(
    served: Served, kube: client.ApiClient, rollout_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    submit = asyncio.create_task(
        canaryd(served, "submit", "-f", str(rollout_file), "--wait", "-o", "json"))
    await _get(served)
    writer = StatusWriter(kube, "demo", "podinfo-v2")
    await writer.transition("Progressing", "step 1/3 at 10%", canary=10)
    await writer.checks(95.0, verdict="Fail")
    await writer.transition("RollingBack", "analysis failed", canary=0)
    await writer.transition("RolledBack", "analysis failed; traffic back on stable")
    assert await asyncio.wait_for(submit, timeout=30) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in lines] == ["submitted", "state", "transition", "check",
                                           "transition", "transition", "verdict"]
    assert lines[-1]["data"]["phase"] == "RolledBack"


async def test_timeout_exits_4_and_leaves_the_rollout_running(
    served: Served, rollout_file: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    code = await canaryd(served, "submit", "-f", str(rollout_file), "--wait",
                         "--timeout", "500ms")
    assert code == 4
    assert "timed out" in capsys.readouterr().err


async def test_get_list_and_actions(
    served: Served, kube: client.ApiClient, rollout_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await canaryd(served, "submit", "-f", str(rollout_file)) == 0
    await _get(served)
    await StatusWriter(kube, "demo", "podinfo-v2").transition("Progressing", "step 1",
                                                               canary=10)

    async def progressing() -> bool:
        obj = served.state.deps.cache.get("demo/podinfo-v2") or {}
        return (obj.get("status") or {}).get("phase") == "Progressing"

    await eventually(progressing, timeout=10, what="Progressing")
    capsys.readouterr()
    assert await canaryd(served, "get", "demo/podinfo-v2", role="read") == 0
    out = capsys.readouterr().out
    assert "phase:    Progressing" in out and "canary 10%" in out
    assert await canaryd(served, "list", "-n", "demo", role="read") == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["NAMESPACE", "NAME", "TARGET", "PHASE"]
    assert table[1].split()[:4] == ["demo", "podinfo-v2", "podinfo", "Progressing"]
    assert await canaryd(served, "pause", "podinfo-v2", "-n", "demo", role="submit") == 3
    assert await canaryd(served, "pause", "podinfo-v2", "-n", "demo", role="operate") == 0
    assert "pause requested" in capsys.readouterr().out
    assert await canaryd(served, "resume", "demo/podinfo-v2", role="operate") == 2
    assert await canaryd(served, "get", "demo/absent", role="read") == 2


def test_set_paths_reach_nested_fields_and_keep_values_as_strings() -> None:
    doc: dict[str, object] = {"metadata": {"name": "a"}, "spec": {"plan": {"steps": [{}]}}}
    manifests.apply_set(doc, "spec.plan.steps[0].weight=5")
    manifests.apply_set(doc, "spec.plan.steps[1].weight=50")
    manifests.apply_set(doc, r"metadata.annotations.example\.com/team=payments")
    manifests.apply_set(doc, "spec.version=v=2")
    assert doc == {"metadata": {"name": "a", "annotations": {"example.com/team": "payments"}},
                   "spec": {"plan": {"steps": [{"weight": "5"}, {"weight": "50"}]},
                            "version": "v=2"}}
    with pytest.raises(manifests.ManifestError):
        manifests.apply_set(doc, "spec.plan.steps[5].weight=1")


async def cli_process(served: Served, *argv: str) -> tuple[int, str, str]:
    """`canaryd ARGV` as its own process, as a pipeline or a person runs it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "canaryd", *argv, "--url", served.url,
        env={**os.environ, "CANARYD_TOKEN": TOKENS["read"]},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_get_prints_each_check_once_with_units_and_e_values(
    served: Served, kube: client.ApiClient, rollout_file: Path,
) -> None:
    """Checks as the controller stores them (the real verdicts), read back by `canaryd get`."""
    assert await canaryd(served, "submit", "-f", str(rollout_file)) == 0
    await _get(served)
    now = datetime.now(UTC)
    p99 = judge(Check(metric="istio-latency-p99", max=200),
                Measurement("istio-latency-p99", "q", value=94.42000000001, requests=500,
                            unit="ms"), min_requests=20, now=now, step=1)
    errors = judge(Check.model_validate({"metric": "istio-error-count",
                                         "sequential": {"alpha": 0.01}}),
                   Measurement("istio-error-count", "q", value=2, stable_value=4, requests=150,
                               stable_requests=350, canary_share=0.3),
                   min_requests=20, now=now, step=1)
    writer = StatusWriter(kube, "demo", "podinfo-v2")
    writer.status.update(checks=[r.model_copy(update={"seq": 1}).wire() for r in (p99, errors)],
                         sequence=1)
    await writer.transition("Progressing", "step 2/3 at 30%", canary=30)

    async def written() -> bool:
        obj = served.state.deps.cache.get("demo/podinfo-v2") or {}
        return (obj.get("status") or {}).get("phase") == "Progressing"

    await eventually(written, timeout=10, what="the status in the cache")
    code, out, err = await cli_process(served, "get", "demo/podinfo-v2")
    assert code == 0, err
    assert "  istio-latency-p99 94 ms <= 200 ms ok" in out.splitlines()
    e = errors.value
    assert e is not None
    assert (f"  istio-error-count e={e:.3g} (2 errors where its traffic share explains 1.8) "
            "< 100 ok") in out.splitlines()

