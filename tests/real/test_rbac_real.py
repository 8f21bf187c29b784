"""RBAC for real: `kubectl apply -k deploy/` into a real control plane, then canaryd runs as
its own ServiceAccount (a bound token from the TokenRequest API, not the admin token) through
a full canary (with a step Job hook) and a full blue-green rollout. kube-apiserver's audit
log is the judge: no request of that account may be refused, and every permission deploy/
grants is used or listed in tests/deploy/test_rbac.py with the reason it is not."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client, config

from canaryd.sandbox.realkube import RealKube
from canaryd.sandbox.runner import Sandbox
from tests.deploy.support import kubectl
from tests.deploy.test_rbac import NAMESPACE, UNUSED_BY_DESIGN, installed_rules
from tests.e2e.support import CONFIG, ROOT, TERMINAL, Kube, rollout_manifest
from tests.e2e.test_bluegreen import manifest as bluegreen_manifest
from tests.hooks.jobwatch import job_hook
from tests.realkube import running

SERVICE_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:canaryd"


@pytest.fixture(scope="module")
def audited_kube() -> Iterator[RealKube]:
    """A control plane of this module's own: deploy/ replaces the mesh CRDs with the
    project's copies, and the audit log must hold this module's requests only."""
    with running(RealKube(audit=True)) as kube:
        yield kube


@pytest.fixture
async def sandbox(audited_kube: RealKube) -> AsyncIterator[Sandbox]:
    async with Sandbox(rps=200, kube=audited_kube) as sb:
        yield sb


async def service_account_kubeconfig(api: client.ApiClient, kube: RealKube, path: Path) -> Path:
    request = {"spec": {"audiences": [], "expirationSeconds": 3600}}
    issued = await client.CoreV1Api(api).create_namespaced_service_account_token(
        "canaryd", NAMESPACE, request
    )
    cfg = yaml.safe_load(kube.kubeconfig.read_text())
    cfg["users"] = [{"name": "admin", "user": {"token": issued.status.token}}]
    path.write_text(yaml.safe_dump(cfg))
    return path


async def test_canaryd_runs_a_canary_and_a_blue_green_as_its_own_service_account(
    sandbox: Sandbox, audited_kube: RealKube, tmp_path: Path
) -> None:
    assert sandbox.kubeconfig is not None
    await kubectl(sandbox.kubeconfig, "apply", "-k", str(ROOT / "deploy"))
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    kube = Kube(api)
    kubeconfig = await service_account_kubeconfig(api, audited_kube, tmp_path / "sa-kubeconfig")
    log = (tmp_path / "canaryd.log").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "canaryd", "serve", "--kubeconfig", str(kubeconfig),
         "--config", str(CONFIG), "--prometheus-url", sandbox.prometheus_url,
         "--host", "127.0.0.1", "--port", "0", "--identity", "rbac-real",
         "--lease-namespace", NAMESPACE],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "CANARYD_LOG_LEVEL": "info"},
    )
    try:
        # A step Job hook: the Job hooks' grants (batch/jobs create, get, delete) used too.
        await kube.create_rollout(rollout_manifest("podinfo-v2",
                                                   hooks=[job_hook("load", "step")]))
        await kube.wait_phase("podinfo-v2", {"Progressing"}, timeout=60)
        await kube.act("podinfo-v2", "pause")  # the controller clears the annotation: a patch
        await kube.wait_phase("podinfo-v2", {"Paused"}, timeout=30)
        await kube.act("podinfo-v2", "resume")
        status = await kube.wait_phase("podinfo-v2", TERMINAL, timeout=120)
        assert status["phase"] == "Succeeded", status["reason"]
        assert [r["outcome"] for r in status["hooks"]] == ["Passed", "Passed"], status["hooks"]
        await kube.create_rollout(bluegreen_manifest(scaleDown=True))
        status = await kube.wait_phase("shop-v2", TERMINAL, timeout=120)
        assert status["phase"] == "Succeeded", status["reason"]
        rules = await installed_rules(api)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()
        await api.close()

    events = audited_kube.audit_events(SERVICE_ACCOUNT)
    assert len(events) > 20, "canaryd's requests reached the audit log"
    refused = sorted({
        (e["verb"], e["requestURI"].split("?")[0], e["responseStatus"]["code"])
        for e in events if e["responseStatus"]["code"] in (401, 403)
    })
    tail = (tmp_path / "canaryd.log").read_text()[-3000:]
    assert not refused, f"requests RBAC refused: {refused}\n{tail}"

    used = set()
    for e in events:
        ref = e.get("objectRef") or {}
        if not ref.get("resource"):
            continue
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        used.add((ref.get("apiGroup", ""), resource, e["verb"]))
    granted = {(g, r, v) for rule in rules for g in rule.groups for r in rule.resources
               for v in rule.verbs}
    unused = granted - used
    assert unused <= set(UNUSED_BY_DESIGN), (
        f"granted but never used: {sorted(unused - set(UNUSED_BY_DESIGN))}")
    print(json.dumps({"requests": len(events), "used": len(used), "granted": len(granted)}))
