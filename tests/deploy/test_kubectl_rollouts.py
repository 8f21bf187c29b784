"""The Rollout CRD as people meet it through kubectl against the sandbox API server: the
printer columns of `kubectl get rollouts`, and `kubectl explain` (OpenAPI v3, and v2)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from canaryd.config import load_settings
from canaryd.core import machine, plan
from canaryd.core.model import RolloutManifest, RolloutStatus
from canaryd.sandbox.apiserver import ApiServer
from tests.deploy.support import ROOT, kubectl, require_kubectl

pytestmark = pytest.mark.kubectl
EXAMPLE = ROOT / "config" / "examples" / "canary.yaml"


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[tuple[str, ...]]:
    """kubectl flags for a fresh sandbox API server with the Rollout CRD and namespace demo."""
    require_kubectl()
    server = ApiServer(deployment_ready_delay=0.1)
    await server.start(host="127.0.0.1", port=0)
    path = tmp_path / "kubeconfig"
    server.write_kubeconfig(path)
    flags = ("--cache-dir", str(tmp_path / "cache"))
    try:
        await kubectl(path, *flags, "apply", "-f", "deploy/crds/canaryd-rollout.yaml")
        await kubectl(path, *flags, "create", "namespace", "demo")
        yield (str(path), *flags)
    finally:
        await server.stop()


async def run(kube: tuple[str, ...], *args: str) -> str:
    return (await kubectl(Path(kube[0]), *kube[1:], *args))[1]


async def test_get_rollouts_shows_target_version_phase_weight_step_and_age(
    kube: tuple[str, ...],
) -> None:
    await run(kube, "apply", "-f", str(EXAMPLE))
    # The status the state machine writes once the canary is available: step 1 of 3.
    spec = RolloutManifest.model_validate(yaml.safe_load(EXAMPLE.read_text())).spec
    settings = load_settings(ROOT / "config" / "canaryd.yaml", env={})
    ctx = machine.Context(steps=plan.steps(spec), analysis=plan.resolve_analysis(settings, spec),
                          ready_timeout=spec.workloads.ready_timeout)
    ready = machine.Observations(canary=machine.WorkloadState(exists=True, available=True))
    status = machine.decide(ctx, RolloutStatus(), ready, datetime.now(UTC)).status
    assert status.step_index == 0
    await run(kube, "patch", "rollout", "podinfo-v2", "-n", "demo", "--subresource", "status",
              "--type", "merge", "-p", json.dumps({"status": status.wire()}))
    header, row = (await run(kube, "get", "rollouts", "-n", "demo")).splitlines()
    assert header.split() == ["NAME", "TARGET", "VERSION", "PHASE", "WEIGHT", "STEP", "AGE"]
    assert row.split()[:6] == ["podinfo-v2", "podinfo", "ghcr.io/stefanprodan/podinfo:6.5.0",
                               "Progressing", "10", "1/3"]
    wide = (await run(kube, "get", "rollouts", "-n", "demo", "-o", "wide")).splitlines()
    assert wide[0].split() == ["NAME", "TARGET", "VERSION", "PHASE", "WEIGHT", "STEP", "REASON",
                               "AGE"]
    assert "canary available; step 1/3 at 10%" in wide[1]


async def test_explain_describes_every_spec_field(kube: tuple[str, ...]) -> None:
    spec = await run(kube, "explain", "rollout.spec")
    assert "FIELD: spec <Object>" in spec
    for field in ("analysis", "plan", "router", "strategy", "target", "version", "workloads"):
        assert f"  {field}\t<" in spec, field
    assert "logical service name; one active rollout per target" in spec
    interval = await run(kube, "explain", "rollout.spec.analysis.interval")
    assert "how often each check runs" in interval
    old = await run(kube, "explain", "rollout.spec.plan.interval")
    assert "deprecated: set spec.analysis.interval" in old
    assert "default 100" in await run(kube, "explain", "rollout.spec.plan.maxWeight")
    assert "ObjectMeta" in await run(kube, "explain", "rollout.metadata")
    # client-go's OpenAPI v2 (protobuf), which older tooling and --output plaintext-openapiv2 read
    v2 = await run(kube, "explain", "rollout.spec.workloads", "--output",
                   "plaintext-openapiv2")
    assert "readyTimeout\t<string>" in v2 and "how long to wait for the canary" in v2
