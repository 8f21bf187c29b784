"""The Rollout CRD as people meet it through kubectl, against the sandbox API server and a
real kube-apiserver: the printer columns of `kubectl get rollouts`, and `kubectl explain`
(OpenAPI v3, and v2)."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from canaryd.config import load_settings
from canaryd.core import machine, plan
from canaryd.core.manifest import RolloutManifest
from canaryd.core.model import RolloutStatus
from canaryd.sandbox.apiserver import ApiServer
from canaryd.sandbox.realkube import RealKube
from tests.deploy.support import ROOT, kubectl, require_kubectl

pytestmark = pytest.mark.kubectl
KUBE_BACKENDS = ("emulator", "real")
EXAMPLE = ROOT / "config" / "examples" / "canary.yaml"


@dataclass
class Cluster:
    kubeconfig: Path
    flags: tuple[str, ...]
    namespace: str

    async def run(self, *args: str, stdin: str | None = None) -> str:
        return (await kubectl(self.kubeconfig, *self.flags, *args, stdin=stdin))[1]


@pytest.fixture
async def cluster(kube_backend: RealKube | None, tmp_path: Path) -> AsyncIterator[Cluster]:
    """The Rollout CRD installed and a fresh namespace, on the emulator or the real server."""
    require_kubectl()
    server = None
    if kube_backend is None:
        server = ApiServer(deployment_ready_delay=0.1)
        await server.start(host="127.0.0.1", port=0)
        path = tmp_path / "kubeconfig"
        server.write_kubeconfig(path)
    else:
        path = kube_backend.kubeconfig
    c = Cluster(path, ("--cache-dir", str(tmp_path / "cache")), f"ux-{secrets.token_hex(4)}")
    try:
        await c.run("apply", "-f", "deploy/crds/canaryd-rollout.yaml")
        await c.run("wait", "--for=condition=Established", "crd/rollouts.canaryd.io",
                    "--timeout=60s")
        await c.run("create", "namespace", c.namespace)
        yield c
    finally:
        if server is not None:
            await server.stop()
        else:
            await kubectl(path, "delete", "namespace", c.namespace, "--wait=false", check=False)


async def test_get_rollouts_shows_target_version_phase_weight_step_and_age(
    cluster: Cluster,
) -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["metadata"]["namespace"] = cluster.namespace
    await cluster.run("apply", "-f", "-", stdin=yaml.safe_dump(doc))
    # The status the state machine writes once the canary is available: step 1 of 3.
    spec = RolloutManifest.model_validate(doc).spec
    settings = load_settings(ROOT / "config" / "canaryd.yaml", env={})
    ctx = machine.Context(steps=plan.steps(spec), analysis=plan.resolve_analysis(settings, spec),
                          ready_timeout=spec.workloads.ready_timeout)
    ready = machine.Observations(canary=machine.WorkloadState(exists=True, available=True))
    status = machine.decide(ctx, RolloutStatus(), ready, datetime.now(UTC)).status
    assert status.step_index == 0
    ns = ("-n", cluster.namespace)
    await cluster.run("patch", "rollout", "podinfo-v2", *ns, "--subresource", "status",
                      "--type", "merge", "-p", json.dumps({"status": status.wire()}))
    header, row = (await cluster.run("get", "rollouts", *ns)).splitlines()
    assert header.split() == ["NAME", "TARGET", "VERSION", "PHASE", "WEIGHT", "STEP", "AGE"]
    assert row.split()[:6] == ["podinfo-v2", "podinfo", "ghcr.io/stefanprodan/podinfo:6.5.0",
                               "Progressing", "10", "1/3"]
    wide = (await cluster.run("get", "rollouts", *ns, "-o", "wide")).splitlines()
    assert wide[0].split() == ["NAME", "TARGET", "VERSION", "PHASE", "WEIGHT", "STEP", "REASON",
                               "AGE"]
    assert "canary available; step 1/3 at 10%" in wide[1]


async def test_explain_describes_every_spec_field(cluster: Cluster) -> None:
    spec = await cluster.run("explain", "rollout.spec")
    assert "FIELD: spec <Object>" in spec
    for field in ("analysis", "plan", "router", "strategy", "target", "version", "workloads"):
        assert f"  {field}\t<" in spec, field
    assert "logical service name; one active rollout per target" in spec
    interval = await cluster.run("explain", "rollout.spec.analysis.interval")
    assert "how often each check runs" in interval
    old = await cluster.run("explain", "rollout.spec.plan.interval")
    assert "deprecated: set spec.analysis.interval" in old
    assert "default 100" in await cluster.run("explain", "rollout.spec.plan.maxWeight")
    assert "ObjectMeta" in await cluster.run("explain", "rollout.metadata")
    # client-go's OpenAPI v2 (protobuf), which older tooling and --output plaintext-openapiv2 read
    v2 = await cluster.run("explain", "rollout.spec.workloads", "--output",
                           "plaintext-openapiv2")
    assert "readyTimeout\t<string>" in v2 and "how long to wait for the canary" in v2
