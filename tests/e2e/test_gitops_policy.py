"""GitOps releases through a RolloutPolicy, as Argo CD or Flux would make them: the only
thing done per release is `kubectl apply` of the changed canary Deployment (real kubectl,
against the emulator and the real control plane), in the full sandbox with real Prometheus.

6.8.0 is promoted (stable runs it at 100/0, the canary at zero replicas), 6.9.0 misbehaves
(5% errors) and is rolled back (stable still 6.8.0), 6.9.1 is promoted; through Prometheus,
until its verdict the version under test never took more than its step's share, and after
each release the version that left takes nothing. Re-applying 6.9.1 (and changing the
Deployment outside its pod template) starts nothing; a git revert to 6.8.0 releases it
again. A change applied while a rollout runs
supersedes it: the running one is rolled back, then the new template is rolled out."""

from __future__ import annotations

import copy
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import config

from canaryd.adapters.kube import RolloutStore
from canaryd.config import load_settings
from canaryd.runtime.cache import RolloutCache
from canaryd.runtime.policies import Policies
from canaryd.sandbox.runner import Sandbox
from canaryd.sandbox.testing import eventually
from tests.api.test_release_train import (
    IMAGE,
    STEPS,
    TOLERANCE,
    _ts,
    allowed_share,
    shares_now,
    shares_over,
)
from tests.deploy.support import kubectl
from tests.e2e.fixtures import canaryd_running
from tests.e2e.support import CONFIG, GROUP, NS, PLURAL, ROOT, VERSION, Kube

pytestmark = [pytest.mark.prometheus, pytest.mark.kubectl]
KUBE_BACKENDS = ("emulator", "real")
POLICIES = "rolloutpolicies"
APP = ROOT / "canaryd" / "data" / "example-app.yaml"
TERMINAL = {"Succeeded", "RolledBack", "Failed", "Aborted"}


def policy_file(tmp_path: Path, **changes: Any) -> Path:
    body = yaml.safe_load((ROOT / "config" / "examples" / "policy.yaml").read_text())
    body["spec"]["plan"] = {"steps": [{"weight": w} for w in STEPS]}
    body["spec"]["analysis"] = {"profile": "sandbox", "interval": "3s"}
    body["spec"].update(changes)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def canary_file(tmp_path: Path, version: str, error_ratio: str = "0") -> Path:
    """The canary Deployment as git has it for this release: the example app's, with the
    new image and the sandbox's error knob, and no replicas (canaryd owns those)."""
    (doc,) = [d for d in yaml.safe_load_all(APP.read_text())
              if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "podinfo-canary"]
    doc = copy.deepcopy(doc)
    doc["spec"].pop("replicas", None)
    doc["metadata"]["annotations"]["sandbox.canaryd.io/error-ratio"] = error_ratio
    (container,) = doc["spec"]["template"]["spec"]["containers"]
    container["image"] = f"{IMAGE}:{version}"
    path = tmp_path / f"canary-{version}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


class Cluster(Kube):
    async def images(self, name: str) -> list[str]:
        d = await self.apps.read_namespaced_deployment(name, NS)
        return [c.image for c in d.spec.template.spec.containers]

    async def replicas(self, name: str) -> int:
        return int((await self.apps.read_namespaced_deployment(name, NS)).spec.replicas)

    async def policy(self, name: str = "podinfo") -> dict[str, Any]:
        body: dict[str, Any] = await self.custom.get_namespaced_custom_object(
            GROUP, VERSION, NS, POLICIES, name)
        return body

    async def names(self) -> set[str]:
        body = await self.custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)
        return {o["metadata"]["name"] for o in body["items"]}

    async def started(self, version: str) -> str:
        """The rollout the policy started for this image (its status says so)."""
        async def probe() -> str | None:
            status = (await self.policy()).get("status") or {}
            if status.get("lastVersion") == f"{IMAGE}:{version}":
                return str(status["lastRollout"])
            return None

        return await eventually(probe, timeout=30, what=f"a rollout of {version} started")


async def apply(sb: Sandbox, path: Path) -> str:
    _, out, _ = await kubectl(sb.kubeconfig or Path(), "apply", "-f", str(path))
    return out


@pytest.fixture
async def cluster(sandbox: Sandbox) -> Any:
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    try:
        yield Cluster(api)
    finally:
        await api.close()


async def test_gitops_releases_through_kubectl_apply_of_the_canary(
    sandbox: Sandbox, cluster: Cluster, tmp_path: Path,
) -> None:
    k = cluster
    await sandbox.wait_for_traffic(timeout=30)
    prom = sandbox.prometheus_url
    async with canaryd_running(sandbox) as daemon:
        assert daemon.controller is not None
        policies = daemon.controller.policies
        assert "rolloutpolicy.canaryd.io/podinfo created" in await apply(
            sandbox, policy_file(tmp_path))

        async def adopted() -> dict[str, Any] | None:
            status = (await k.policy()).get("status") or {}
            return status if status.get("observedTemplateHash") else None

        status = await eventually(adopted, timeout=30, what="the policy's first look")
        ready = {c["type"]: c for c in status["conditions"]}["Ready"]
        assert (ready["status"], ready["reason"]) == ("True", "Watching"), ready
        assert "lastRollout" not in status or status["lastRollout"] is None
        assert await k.names() == set(), "the canary runs what stable runs: nothing started"

        serving, started = "6.7.1", []
        for version, healthy in (("6.8.0", True), ("6.9.0", False), ("6.9.1", True)):
            began = time.time()
            out = await apply(sandbox, canary_file(tmp_path, version,
                                                   "0" if healthy else "0.05"))
            assert "deployment.apps/podinfo-canary configured" in out, out
            name = await k.started(version)
            started.append(name)
            assert re.fullmatch(r"podinfo-[0-9a-f]{10}", name), name
            status = await k.wait_phase(name, TERMINAL, timeout=120)
            rollout = await k.rollout(name)
            assert rollout["spec"]["version"] == f"{IMAGE}:{version}"
            assert rollout["spec"]["templateHash"].startswith(name.removeprefix("podinfo-"))
            assert rollout["metadata"]["labels"] == {"canaryd.io/policy": "podinfo"}
            assert status["phase"] == ("Succeeded" if healthy else "RolledBack"), status["reason"]
            release = status["release"]
            assert release["from"]["images"] == {"podinfo": f"{IMAGE}:{serving}"}
            assert release["to"]["images"] == {"podinfo": f"{IMAGE}:{version}"}
            leaving, serving = (serving, version) if healthy else (version, serving)
            assert await k.images("podinfo-stable") == [f"{IMAGE}:{serving}"]
            assert await k.vs_weights() == {"stable": 100, "canary": 0}
            assert await k.replicas("podinfo-canary") == 0
            history = status["history"]
            verdict_at = next(_ts(h["time"]) for h in history
                              if h["phase"] in ("Promoting", "RollingBack"))
            peaks: dict[int, float] = {}
            for at, shares in await shares_over(prom, began, verdict_at):
                share, limit = shares.get(version, 0.0), allowed_share(history, at)
                assert share <= limit + TOLERANCE, (version, at, share, limit)
                peaks[round(limit * 100)] = max(peaks.get(round(limit * 100), 0.0), share)
            print(f"gitops release {version}: {status['phase']} as {name}, peak share by "
                  f"recorded weight { {w: round(p, 3) for w, p in sorted(peaks.items())} }, "
                  f"{time.time() - began:.1f}s from kubectl apply")
            assert (max(peaks) == STEPS[-1]) is healthy, peaks

            async def left(gone: str = leaving, kept: str = serving) -> bool:
                shares = await shares_now(prom)
                return shares.get(gone, 0.0) == 0.0 and shares.get(kept, 0.0) > 0.99

            await eventually(left, timeout=20, what=f"{leaving} taking no traffic")
        assert len(set(started)) == 3

        # The GitOps tool syncs again: the same manifest, and the same template under a new
        # annotation. canaryd looks (twice, at least) and starts nothing.
        before = await k.names()
        await apply(sandbox, canary_file(tmp_path, "6.9.1"))
        await k.annotate_deployment("podinfo-canary", **{"example.com/synced": "again"})
        looks = policies.looks

        async def looked() -> bool:
            return policies.looks >= looks + 2

        await eventually(looked, timeout=20, what="two looks")
        assert await k.names() == before
        assert (await k.policy())["status"]["lastRollout"] == started[-1]
        assert len(before) == 3

        # git revert to 6.8.0: released before (its rollout still exists), released again
        # as the policy's 4th start, from 6.9.1.
        await apply(sandbox, canary_file(tmp_path, "6.8.0"))
        again = await k.started("6.8.0")
        assert again == f"{started[0]}-4", (again, started)
        status = await k.wait_phase(again, TERMINAL, timeout=120)
        assert status["phase"] == "Succeeded", status["reason"]
        assert status["release"]["from"]["images"] == {"podinfo": f"{IMAGE}:6.9.1"}
        assert await k.images("podinfo-stable") == [f"{IMAGE}:6.8.0"]
        assert (await k.policy())["status"]["started"] == 4


async def test_a_change_during_a_rollout_supersedes_it(
    sandbox: Sandbox, cluster: Cluster, tmp_path: Path,
) -> None:
    k = cluster
    await sandbox.wait_for_traffic(timeout=30)
    async with canaryd_running(sandbox):
        # A first step long enough for the next commit to arrive during it.
        await apply(sandbox, policy_file(tmp_path, plan={"steps": [
            {"weight": 20, "pause": "10m"}, {"weight": 50}]}))
        await eventually(lambda: _observed(k), timeout=30, what="the policy's first look")
        await apply(sandbox, canary_file(tmp_path, "6.8.0"))
        first = await k.started("6.8.0")
        await k.wait_phase(first, {"Progressing"}, timeout=60)
        # The next commit: the running release is rolled back first, then this one starts.
        await apply(sandbox, policy_file(tmp_path))  # (and its steps no longer pause)
        await apply(sandbox, canary_file(tmp_path, "6.9.1"))
        second = await k.started("6.9.1")
        assert second != first
        status = await k.wait_phase(first, TERMINAL, timeout=60)
        assert status["phase"] == "RolledBack", status["reason"]
        assert f"superseded by rollout {NS}/{second}" in status["reason"]
        rollout = await k.rollout(second)
        assert rollout["spec"]["supersede"] is True
        status = await k.wait_phase(second, TERMINAL, timeout=120)
        assert status["phase"] == "Succeeded", status["reason"]
        assert status["release"]["from"]["images"] == {"podinfo": f"{IMAGE}:6.7.1"}
        assert status["release"]["to"]["images"] == {"podinfo": f"{IMAGE}:6.9.1"}
        assert await k.images("podinfo-stable") == [f"{IMAGE}:6.9.1"]
        assert await k.vs_weights() == {"stable": 100, "canary": 0}
        assert await k.names() == {first, second}
        events = await k.core.list_namespaced_event(NS)
        told = [e.message for e in events.items
                if e.involved_object.kind == "RolloutPolicy" and e.reason == "RolloutStarted"]
        assert any(f"started rollout {second}" in m and f"supersedes {first}" in m
                   for m in told), told


async def _observed(k: Cluster) -> bool:
    status = (await k.policy()).get("status") or {}
    return bool(status.get("observedTemplateHash"))


async def test_bad_policies_are_reported_on_themselves_and_never_stall_a_good_one(
    sandbox: Sandbox, cluster: Cluster, tmp_path: Path,
) -> None:
    k = cluster
    bad = yaml.safe_load(policy_file(tmp_path).read_text())
    unknown = copy.deepcopy(bad)
    unknown["metadata"]["name"] = "unknown-profile"
    unknown["spec"]["analysis"] = {"profile": "nope"}
    ghost = copy.deepcopy(bad)
    ghost["metadata"]["name"] = "ghost"
    ghost["spec"]["workloads"]["canary"] = "podinfo-ghost"
    both = tmp_path / "bad.yaml"
    both.write_text(yaml.safe_dump_all([unknown, ghost]))
    async with canaryd_running(sandbox) as daemon:
        await apply(sandbox, both)
        # (its first step held 6 s: long enough for the late replica below to come in)
        await apply(sandbox, policy_file(tmp_path, plan={"steps": [
            {"weight": 20, "pause": "6s"}, {"weight": 50}]}))

        async def reported(name: str) -> dict[str, Any] | None:
            status = (await k.policy(name)).get("status") or {}
            ready = {c["type"]: c for c in status.get("conditions", [])}.get("Ready")
            return ready if ready and ready["status"] == "False" else None

        ready = await eventually(lambda: reported("unknown-profile"), timeout=30,
                                 what="the unknown profile reported")
        assert ready["reason"] == "InvalidSpec"
        assert "spec.analysis.profile: unknown profile 'nope'" in ready["message"]
        ready = await eventually(lambda: reported("ghost"), timeout=30,
                                 what="the missing canary reported")
        assert ready["reason"] == "CanaryNotFound"
        assert "spec.workloads.canary: Deployment podinfo-ghost not found" in ready["message"]
        await eventually(lambda: _observed(k), timeout=30, what="the good policy's first look")
        await apply(sandbox, canary_file(tmp_path, "6.8.0"))
        name = await k.started("6.8.0")
        # While it runs, another replica that leads now, before its caches have caught up:
        # it has not seen the rollout nor the policy's status, so it decides to start the
        # same template again. The create answers AlreadyExists: already started, nothing new.
        other = Policies(api=k.custom.api_client, rollouts=RolloutStore(k.custom.api_client),
                         cache=RolloutCache(), identity="late-replica",
                         clock=lambda: datetime.now(UTC), may_write=lambda _ns, _target: True,
                         settings=lambda: load_settings(CONFIG, env={}))
        body = await k.policy()
        decision = await other.look({**body, "status": {}})
        assert decision.start is not None and decision.start.name == name
        assert other.started == 0
        assert await k.names() == {name}
        assert (await k.policy())["status"]["lastRollout"] == name
        status = await k.wait_phase(name, TERMINAL, timeout=120)
        assert status["phase"] == "Succeeded", status["reason"]
        events = await k.core.list_namespaced_event(NS)
        warned = {(e.involved_object.name, e.reason) for e in events.items
                  if e.involved_object.kind == "RolloutPolicy" and e.type == "Warning"}
        assert warned == {("unknown-profile", "InvalidSpec"), ("ghost", "CanaryNotFound")}
        told = [e for e in events.items if e.involved_object.kind == "RolloutPolicy"
                and e.reason == "RolloutStarted"]
        assert len(told) == 1 and f"started rollout {name}" in told[0].message
        assert await k.names() == {name}, "a bad policy starts nothing"
        sample = daemon.metrics.registry.get_sample_value
        assert sample("canaryd_policies_not_ready") == 2
        assert sample("canaryd_policy_rollouts_started_total") == 1
        assert (sample("canaryd_policy_looks_total", {"outcome": "ok"}) or 0) >= 3


async def test_with_on_change_wait_a_change_starts_once_the_running_rollout_has_ended(
    sandbox: Sandbox, cluster: Cluster, tmp_path: Path,
) -> None:
    k = cluster
    await sandbox.wait_for_traffic(timeout=30)
    async with canaryd_running(sandbox):
        await apply(sandbox, policy_file(tmp_path, onChange="wait", plan={"steps": [
            {"weight": 20, "pause": "10m"}, {"weight": 50}]}))
        await eventually(lambda: _observed(k), timeout=30, what="the policy's first look")
        await apply(sandbox, canary_file(tmp_path, "6.8.0"))
        first = await k.started("6.8.0")
        await k.wait_phase(first, {"Progressing"}, timeout=60)
        await apply(sandbox, canary_file(tmp_path, "6.9.1"))

        async def waiting() -> dict[str, Any] | None:
            status = (await k.policy()).get("status") or {}
            c = {c["type"]: c for c in status.get("conditions", [])}.get("Waiting")
            return c if c and c["status"] == "True" else None

        cond = await eventually(waiting, timeout=30, what="the change reported waiting")
        assert f"waits for rollout {first} (Progressing) to finish (onChange: wait)" in \
            cond["message"]
        assert await k.names() == {first}, "nothing started while it runs"
        assert (await k.status(first))["phase"] == "Progressing"
        # The running one ends (here: an operator aborts it); then the change starts (with
        # the policy as it is by then: its steps no longer pause).
        await apply(sandbox, policy_file(tmp_path, onChange="wait"))
        await k.act(first, "abort")
        status = await k.wait_phase(first, TERMINAL, timeout=60)
        assert status["phase"] == "Aborted", status["reason"]
        second = await k.started("6.9.1")
        assert (await k.rollout(second))["spec"]["supersede"] is False
        status = await k.wait_phase(second, TERMINAL, timeout=120)
        assert status["phase"] == "Succeeded", status["reason"]
        assert status["release"]["to"]["images"] == {"podinfo": f"{IMAGE}:6.9.1"}
        assert await k.images("podinfo-stable") == [f"{IMAGE}:6.9.1"]
        assert await k.vs_weights() == {"stable": 100, "canary": 0}
        cond = {c["type"]: c for c in (await k.policy())["status"]["conditions"]}["Waiting"]
        assert cond["status"] == "False"
