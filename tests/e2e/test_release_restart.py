"""SIGKILL of `canaryd serve` at each of a release's boundaries, then a new daemon:
- while the canary rolls out the new image (Pending), and after the analysed pod template went
  onto stable, while stable rolls out (Promoting; the emulator's Deployments take 4 s to roll
  out there);
- during the shift back to stable (100/0 recorded, the router not yet written) and during the
  canary's scale-down (traffic verified on stable, the canary not yet at zero), after a
  promotion and after a rollback (and during the shift back of a rollback that keeps the
  canary at zero traffic), on the emulator and the real kube-apiserver; during the template
  copy onto stable and during the canary's start, the same way.
Each restarted daemon converges to the steady state: 100/0 on the router, stable running the
promoted (or, after a rollback, the previous) version and available, the canary at zero, a
terminal phase with the right verdict; every transition once, each Deployment's spec and each
weight written once."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd.sandbox.runner import Sandbox
from tests.e2e.support import NS, TERMINAL, Kube, eventually, rollout_manifest
from tests.e2e.test_canary_restart import spawn

pytestmark = pytest.mark.prometheus
IMAGE = "ghcr.io/stefanprodan/podinfo:6.8.0"


@pytest.fixture
async def slow_sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(rps=200, deployment_ready_delay=4.0) as sb:
        yield sb


async def test_sigkill_while_stable_rolls_out_then_restart_converges(
    slow_sandbox: Sandbox, tmp_path: object
) -> None:
    sandbox = slow_sandbox
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    kube = Kube(api)
    logfile = open(f"{tmp_path}/daemon.log", "wb")  # noqa: SIM115
    proc = spawn(sandbox, logfile)

    async def stable() -> Any:
        return await kube.apps.read_namespaced_deployment("podinfo-stable", "demo")

    async def canary() -> Any:
        return await kube.apps.read_namespaced_deployment("podinfo-canary", "demo")

    try:
        generation = (await stable()).metadata.generation
        canary_generation = (await canary()).metadata.generation
        await kube.create_rollout(rollout_manifest(version=IMAGE))

        async def canary_rolling_out() -> bool:
            c = await canary()
            images = [x.image for x in c.spec.template.spec.containers]
            return images == [IMAGE] and (c.status.updated_replicas or 0) < c.spec.replicas

        await eventually(canary_rolling_out, timeout=30, what="the canary rolling out the image")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        status = await kube.status("podinfo-v2")
        assert status["phase"] == "Pending" and status["release"]["stage"] == "CanaryStart"
        assert await kube.vs_weights() == {"stable": 100, "canary": 0}
        proc = spawn(sandbox, logfile)

        async def rolling_out() -> bool:
            s = await stable()
            images = [c.image for c in s.spec.template.spec.containers]
            return images == [IMAGE] and (s.status.updated_replicas or 0) < s.spec.replicas

        await eventually(rolling_out, timeout=90, what="stable rolling out the new template")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        status = await kube.status("podinfo-v2")
        assert status["phase"] == "Promoting" and status["release"]["stage"] == "StableUpdate"
        assert await kube.vs_weights() == {"stable": 50, "canary": 50}, "held while stable rolls"
        await asyncio.sleep(5)  # stable finishes its rollout with nobody watching
        proc = spawn(sandbox, logfile)
        status = await kube.wait_phase("podinfo-v2", TERMINAL, timeout=60)
        assert status["phase"] == "Succeeded", status["reason"]
        assert [h["trigger"] for h in status["history"]] == [
            "CanaryReady", "StepPassed", "AllStepsPassed", "StableUpdated", "TrafficConfirmed"]
        assert [h["weights"]["canary"] for h in status["history"]] == [20, 50, 50, 0, 0]
        after = await stable()
        assert after.metadata.generation == generation + 1, "stable's spec written once"
        # The canary: the image and replicas in one write, then the scale-down.
        assert (await canary()).metadata.generation == canary_generation + 2
        assert [c.image for c in after.spec.template.spec.containers] == [IMAGE]
        assert after.spec.template.metadata.labels["track"] == "stable"
        assert await kube.vs_weights() == {"stable": 100, "canary": 0}
        canary = await kube.apps.read_namespaced_deployment("podinfo-canary", "demo")
        assert canary.spec.replicas == 0

        async def stable_serves() -> bool:
            return (await stable()).status.available_replicas == after.spec.replicas

        await eventually(stable_serves, timeout=10, what="stable available")
    finally:
        proc.kill()
        proc.wait(timeout=10)
        logfile.close()
        await api.close()


# ---------------------------------------------------------------- the end of a release
# The shift back to stable and the canary's scale-down, after a promotion and after a
# rollback, on both API servers. Each boundary is held open by refusing the one write
# canaryd needs next (the emulator's fault injection; on the real kube-apiserver a
# ValidatingAdmissionPolicy), so the kill lands exactly between the recorded intent and the
# world catching up: the status says where the release is, the object still says otherwise.

KUBE_BACKENDS = ("emulator", "real")
MERGE = "application/merge-patch+json"


@dataclass(frozen=True)
class Write:
    """One write canaryd makes at a boundary, and the same write as a dry run (the probe:
    refused once the hold is enforced, accepted again once it is lifted)."""

    group: str
    resource: str  # as RBAC and admission name it, with its subresource
    name: str
    probe: Callable[[Kube], Awaitable[object]]
    action: str  # what canaryd's Degraded condition names while the write is refused
    operation: str = "UPDATE"
    expression: str = "false"  # CEL: what the policy lets through (real API server only)
    tag: str = ""  # names the policy when no object name does

    @property
    def policy(self) -> str:
        return f"hold-{self.resource.replace('/', '-')}-{self.name or self.tag}"


ROUTER = Write("networking.istio.io", "virtualservices", "podinfo", lambda k: (
    k.custom.patch_namespaced_custom_object(
        "networking.istio.io", "v1", NS, "virtualservices", "podinfo",
        {"metadata": {"annotations": {"test/probe": "1"}}}, dry_run="All",
        _content_type=MERGE)), "setting the router to 100/0")
STABLE_TEMPLATE = Write("apps", "deployments", "podinfo-stable", lambda k: (
    k.apps.patch_namespaced_deployment(
        "podinfo-stable", NS, {"metadata": {"annotations": {"test/probe": "1"}}},
        dry_run="All")), "copying the pod template of podinfo-canary to podinfo-stable")
CANARY_START = Write("apps", "deployments", "podinfo-canary", lambda k: (
    k.apps.patch_namespaced_deployment(
        "podinfo-canary", NS, {"metadata": {"annotations": {"test/probe": "1"}}},
        dry_run="All")), "starting the canary podinfo-canary")
CANARY_SCALE = Write("apps", "deployments/scale", "podinfo-canary", lambda k: (
    k.apps.patch_namespaced_deployment_scale(
        "podinfo-canary", NS, {"spec": {"replicas": 0}}, dry_run="All")),
    "scaling podinfo-canary to zero")


async def refused(kube: Kube, write: Write) -> bool:
    try:
        await write.probe(kube)
    except ApiException as exc:
        return exc.status == 422
    return False


class Release:
    """The sandbox, a `canaryd serve` process at a time (SIGKILLed at boundaries), the holds."""

    def __init__(self, sandbox: Sandbox, kube: Kube, api: Any, log: Path) -> None:
        self.sandbox, self.kube, self.api, self.log = sandbox, kube, api, log
        self.logfile = log.open("ab")
        self.proc = spawn(sandbox, self.logfile)
        self.restarts: list[float] = []  # when each new daemon was started
        self.seen: list[float] = []  # when each boundary was seen (and the daemon killed)
        self.figures: list[str] = []
        self.held: list[Write] = []

    @staticmethod
    def fault(write: Write) -> dict[str, str]:
        resource, _, subresource = write.resource.partition("/")
        return {"verb": "patch", "resource": resource, "subresource": subresource,
                "name": write.name}

    async def hold(self, write: Write) -> None:
        server = self.sandbox.api_server
        if server is not None:
            server.faults.fail_next(10**6, 422, **self.fault(write))
        else:
            adm = client.AdmissionregistrationV1Api(self.api)
            name = write.policy
            rule = {"apiGroups": [write.group], "apiVersions": ["*"],
                    "operations": [write.operation], "resources": [write.resource],
                    **({"resourceNames": [write.name]} if write.name else {})}
            await adm.create_validating_admission_policy({
                "metadata": {"name": name},
                "spec": {"failurePolicy": "Fail",
                         "matchConstraints": {"resourceRules": [rule]},
                         "validations": [{"expression": write.expression,
                                          "message": "held by the test", "reason": "Invalid"}]},
            })
            await adm.create_validating_admission_policy_binding({
                "metadata": {"name": name},
                "spec": {"policyName": name, "validationActions": ["Deny"]}})
        self.held.append(write)
        await eventually(lambda: refused(self.kube, write), timeout=30,
                         what=f"writes to {write.resource} {write.name} refused")

    async def lift(self, write: Write) -> None:
        await self._unhold(write)

        async def accepted() -> bool:
            return not await refused(self.kube, write)

        await eventually(accepted, timeout=30, what=f"writes to {write.resource} accepted")

    @staticmethod
    def refused(status: dict[str, Any], write: Write) -> bool:
        """Whether the Rollout says canaryd had `write` refused (Degraded, retrying)."""
        return any(c["type"] == "Degraded" and c["status"] == "True"
                   and c["reason"] == "ActionFailed" and write.action in c["message"]
                   for c in status.get("conditions") or [])

    async def kill_at(self, what: str, write: Write,
                      boundary: Callable[[dict[str, Any]], Awaitable[bool]]) -> dict[str, Any]:
        """Wait until the Rollout and the objects show `boundary` and the Rollout says the
        daemon had `write` refused, SIGKILL it, and return the status it left."""
        seen: dict[str, Any] = {}

        async def there() -> dict[str, Any] | None:
            status = await self.kube.status("podinfo-v2")
            seen.update(status=status, router=await self.kube.vs_weights())
            if await boundary(status) and self.refused(status, write):
                return status
            return None

        try:
            await eventually(there, timeout=120, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last seen: {seen}") from None
        self.seen.append(time.monotonic())
        if self.restarts:
            self.figures.append(f"restart -> {what}: {self.seen[-1] - self.restarts[-1]:.1f}s")
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        return await self.kube.status("podinfo-v2")

    async def kill_and_restart_at(
        self, what: str, write: Write, boundary: Callable[[dict[str, Any]], Awaitable[bool]],
    ) -> None:
        """`kill_at`; the status it left still shows the boundary (nothing moved on after
        the SIGKILL); the hold on `write` lifted, a new daemon started."""
        left = await self.kill_at(what, write, boundary)
        assert await boundary(left), left
        await self.lift(write)
        self.restart()

    def restart(self) -> None:
        self.proc = spawn(self.sandbox, self.logfile)
        self.restarts.append(time.monotonic())

    async def end(self, verdict: str) -> dict[str, Any]:
        """The terminal status the last daemon reaches, and how long it took."""
        status = await self.kube.wait_phase("podinfo-v2", TERMINAL, timeout=60)
        self.figures.append(f"restart -> {status['phase']}: "
                            f"{time.monotonic() - self.restarts[-1]:.1f}s")
        print(f"{verdict}, {backend(self.sandbox)}: " + "; ".join(self.figures))
        assert status["phase"] == verdict, status["reason"]
        assert not any(c["type"] == "Degraded" and c["status"] == "True"
                       for c in status["conditions"]), status["conditions"]
        return status

    async def _unhold(self, write: Write) -> None:
        self.held.remove(write)
        server = self.sandbox.api_server
        if server is not None:
            server.faults.stop_failing(**self.fault(write))
            return
        adm = client.AdmissionregistrationV1Api(self.api)
        await adm.delete_validating_admission_policy_binding(write.policy)
        await adm.delete_validating_admission_policy(write.policy)

    async def close(self) -> None:
        """The daemon stopped, every hold still in place lifted (the real control plane is
        shared by the module's tests)."""
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.logfile.close()
        for write in list(self.held):
            await self._unhold(write)


@dataclass(frozen=True)
class Before:
    stable_generation: int
    canary_generation: int
    router_generation: int
    stable_images: list[str]


async def before(kube: Kube) -> Before:
    stable = await kube.apps.read_namespaced_deployment("podinfo-stable", NS)
    canary = await kube.apps.read_namespaced_deployment("podinfo-canary", NS)
    vs = await kube.custom.get_namespaced_custom_object(
        "networking.istio.io", "v1", NS, "virtualservices", "podinfo")
    return Before(stable.metadata.generation, canary.metadata.generation,
                  vs["metadata"]["generation"],
                  [c.image for c in stable.spec.template.spec.containers])


async def steady(kube: Kube, was: Before, *, stable_images: list[str], stable_writes: int,
                 router_writes: int, canary_writes: int = 2) -> None:
    """The steady state a release ends in, each write done once: 100/0 on the router,
    stable running `stable_images` and available, the canary at zero replicas."""
    assert await kube.vs_weights() == {"stable": 100, "canary": 0}
    vs = await kube.custom.get_namespaced_custom_object(
        "networking.istio.io", "v1", NS, "virtualservices", "podinfo")
    assert vs["metadata"]["generation"] == was.router_generation + router_writes, (
        "a weight written twice")
    stable = await kube.apps.read_namespaced_deployment("podinfo-stable", NS)
    assert [c.image for c in stable.spec.template.spec.containers] == stable_images
    assert stable.metadata.generation == was.stable_generation + stable_writes
    assert stable.spec.template.metadata.labels["track"] == "stable"
    canary = await kube.apps.read_namespaced_deployment("podinfo-canary", NS)
    assert canary.spec.replicas == 0
    # The image and replicas in one write at the start, the scale-down at the end.
    assert canary.metadata.generation == was.canary_generation + canary_writes

    async def stable_available() -> bool:
        s = await kube.apps.read_namespaced_deployment("podinfo-stable", NS)
        return bool(s.status.available_replicas == s.spec.replicas
                    and s.status.updated_replicas == s.spec.replicas
                    and s.status.observed_generation == s.metadata.generation)

    await eventually(stable_available, timeout=30, what="stable available")


def backend(sandbox: Sandbox) -> str:
    return "emulator" if sandbox.api_server is not None else "real kube-apiserver"


def pair(weights: dict[str, int] | None) -> tuple[int, int] | None:
    return (weights["stable"], weights["canary"]) if weights else None


async def test_sigkill_during_the_template_copy_the_shift_back_and_the_scale_down_of_a_promotion(
    sandbox: Sandbox, tmp_path: Path,
) -> None:
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    kube = Kube(api)
    run = Release(sandbox, kube, api, tmp_path / "daemon.log")
    try:
        was = await before(kube)
        plan = {"steps": [{"weight": 20}, {"weight": 50, "pause": "8s"}]}
        await kube.create_rollout(rollout_manifest(version=IMAGE, plan=plan))

        async def at_step_2() -> bool:
            return await kube.vs_weights() == {"stable": 50, "canary": 50}

        await eventually(at_step_2, timeout=60, what="step 2's weights")
        for write in (STABLE_TEMPLATE, ROUTER, CANARY_SCALE):
            await run.hold(write)

        async def copying(s: dict[str, Any]) -> bool:
            stable = await kube.apps.read_namespaced_deployment("podinfo-stable", NS)
            return (s.get("phase") == "Promoting"
                    and (s.get("release") or {}).get("stage") == "StableUpdate"
                    and stable.metadata.generation == was.stable_generation
                    and await kube.vs_weights() == {"stable": 50, "canary": 50})

        await run.kill_and_restart_at("the template copy to stable recorded, refused",
                                      STABLE_TEMPLATE, copying)

        async def shifting_back(s: dict[str, Any]) -> bool:
            return (s.get("phase") == "Promoting"
                    and (s.get("release") or {}).get("stage") == "TrafficToStable"
                    and pair(s.get("weights")) == (100, 0)
                    and await kube.vs_weights() == {"stable": 50, "canary": 50})

        await run.kill_and_restart_at("the shift back to stable recorded, refused",
                                      ROUTER, shifting_back)

        async def scaling_down(s: dict[str, Any]) -> bool:
            canary = await kube.apps.read_namespaced_deployment("podinfo-canary", NS)
            return (s.get("phase") == "Promoting"
                    and (s.get("release") or {}).get("stage") == "CanaryScaleDown"
                    and await kube.vs_weights() == {"stable": 100, "canary": 0}
                    and (canary.spec.replicas or 0) > 0)

        await run.kill_and_restart_at("the canary's scale-down recorded, refused",
                                      CANARY_SCALE, scaling_down)
        status = await run.end("Succeeded")
        assert [h["trigger"] for h in status["history"]] == [
            "CanaryReady", "StepPassed", "AllStepsPassed", "StableUpdated", "TrafficConfirmed"]
        assert [h["weights"]["canary"] for h in status["history"]] == [20, 50, 50, 0, 0]
        assert status["release"]["stage"] == "Done"
        await steady(kube, was, stable_images=[IMAGE], stable_writes=1, router_writes=3)
    finally:
        await run.close()
        await api.close()


async def test_sigkill_during_the_canary_start_the_shift_back_and_the_scale_down_of_a_rollback(
    sandbox: Sandbox, tmp_path: Path,
) -> None:
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    kube = Kube(api)
    run = Release(sandbox, kube, api, tmp_path / "daemon.log")
    try:
        was = await before(kube)
        # One step held long: analysis passes until the canary turns faulty below.
        plan = {"steps": [{"weight": 20, "pause": "10m"}]}
        await run.hold(CANARY_START)
        await kube.create_rollout(rollout_manifest(version=IMAGE, plan=plan))

        async def starting(s: dict[str, Any]) -> bool:
            canary = await kube.apps.read_namespaced_deployment("podinfo-canary", NS)
            return (s.get("phase") == "Pending"
                    and (s.get("release") or {}).get("stage") == "CanaryStart"
                    and canary.metadata.generation == was.canary_generation
                    and await kube.vs_weights() == {"stable": 100, "canary": 0})

        await run.kill_and_restart_at("the canary's start recorded, refused",
                                      CANARY_START, starting)

        async def at_step_1() -> bool:
            return await kube.vs_weights() == {"stable": 80, "canary": 20}

        await eventually(at_step_1, timeout=60, what="step 1's weights")
        await run.hold(ROUTER)
        # 20% errors (the emulator's hold on patches of Deployments comes after this one).
        await kube.annotate_deployment("podinfo-canary",
                                       **{"sandbox.canaryd.io/error-ratio": "0.2"})
        await run.hold(CANARY_SCALE)

        async def shifting_back(s: dict[str, Any]) -> bool:
            return (s.get("phase") == "RollingBack" and pair(s.get("weights")) == (100, 0)
                    and await kube.vs_weights() == {"stable": 80, "canary": 20})

        await run.kill_and_restart_at("the rollback's shift to stable recorded, refused",
                                      ROUTER, shifting_back)

        async def scaling_down(s: dict[str, Any]) -> bool:
            canary = await kube.apps.read_namespaced_deployment("podinfo-canary", NS)
            return (s.get("phase") == "RollingBack"
                    and (s.get("release") or {}).get("stage") == "CanaryScaleDown"
                    and await kube.vs_weights() == {"stable": 100, "canary": 0}
                    and (canary.spec.replicas or 0) > 0)

        await run.kill_and_restart_at("the rollback's scale-down recorded, refused",
                                      CANARY_SCALE, scaling_down)
        status = await run.end("RolledBack")
        assert [h["trigger"] for h in status["history"]] == [
            "CanaryReady", "AnalysisFailed", "TrafficConfirmed"]
        assert [h["weights"]["canary"] for h in status["history"]] == [20, 0, 0]
        assert "traffic verified back on stable" in status["reason"]
        assert status["release"]["stage"] == "Done"
        # A rollback never touches stable.
        # (the canary: the test's annotation too; a Deployment's annotations bump its
        # generation, as they are copied to its ReplicaSets)
        await steady(kube, was, stable_images=was.stable_images, stable_writes=0,
                     router_writes=2, canary_writes=3)
    finally:
        await run.close()
        await api.close()


async def test_sigkill_during_the_shift_back_of_a_rollback_that_keeps_the_canary(
    sandbox: Sandbox, tmp_path: Path,
) -> None:
    """workloads.keepOnRollback: the restarted daemon puts traffic back on stable and leaves
    the rolled-back version running at zero traffic, for inspection."""
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    kube = Kube(api)
    run = Release(sandbox, kube, api, tmp_path / "daemon.log")
    try:
        was = await before(kube)
        body = rollout_manifest(version=IMAGE, plan={"steps": [{"weight": 20, "pause": "10m"}]})
        body["spec"]["workloads"]["keepOnRollback"] = True
        await kube.create_rollout(body)

        async def at_step_1() -> bool:
            return await kube.vs_weights() == {"stable": 80, "canary": 20}

        await eventually(at_step_1, timeout=60, what="step 1's weights")
        await run.hold(ROUTER)
        await kube.annotate_deployment("podinfo-canary",
                                       **{"sandbox.canaryd.io/error-ratio": "0.2"})

        async def shifting_back(s: dict[str, Any]) -> bool:
            return (s.get("phase") == "RollingBack" and pair(s.get("weights")) == (100, 0)
                    and await kube.vs_weights() == {"stable": 80, "canary": 20})

        await run.kill_and_restart_at("the rollback's shift to stable recorded, refused",
                                      ROUTER, shifting_back)
        status = await run.end("RolledBack")
        assert [h["trigger"] for h in status["history"]] == [
            "CanaryReady", "AnalysisFailed", "TrafficConfirmed"]
        assert "kept at zero traffic for inspection" in status["reason"]
        assert await kube.vs_weights() == {"stable": 100, "canary": 0}
        canary = await kube.apps.read_namespaced_deployment("podinfo-canary", NS)
        assert canary.spec.replicas == status["release"]["canaryReplicas"] > 0
        assert [c.image for c in canary.spec.template.spec.containers] == [IMAGE]
        # The image and replicas in one write, the test's annotation; no scale-down.
        assert canary.metadata.generation == was.canary_generation + 2
        stable = await kube.apps.read_namespaced_deployment("podinfo-stable", NS)
        assert stable.metadata.generation == was.stable_generation, "stable never touched"
        assert [c.image for c in stable.spec.template.spec.containers] == was.stable_images
    finally:
        await run.close()
        await api.close()


def new_pods(track: str) -> Write:
    """The pods of a Deployment's rollout to the new version, refused at creation: the real
    ReplicaSet controller cannot make them, so the rollout stays in progress (kwok makes
    pods ready at once, so nothing else keeps that boundary open there)."""
    labels = {"app": "podinfo", "track": track}
    return Write(
        "", "pods", "", lambda k: k.core.create_namespaced_pod(NS, {
            "metadata": {"generateName": "probe-", "labels": labels},
            "spec": {"containers": [{"name": "podinfo", "image": IMAGE}]}}, dry_run="All"),
        "", operation="CREATE", tag=track,
        expression=f"!(has(object.metadata.labels) && 'track' in object.metadata.labels && "
                   f"object.metadata.labels['track'] == '{track}' && "
                   f"object.spec.containers.exists(c, c.image == '{IMAGE}'))")


@pytest.mark.real_only
async def test_sigkill_while_the_canary_and_then_stable_roll_out_on_the_real_control_plane(
    sandbox: Sandbox, tmp_path: Path,
) -> None:
    """The two boundaries the emulator test above holds with slow Deployments, held here by
    the real controllers: the canary rolling out the new image (Pending), stable rolling out
    the analysed template (Promoting)."""
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    kube = Kube(api)
    run = Release(sandbox, kube, api, tmp_path / "daemon.log")
    canary_pods, stable_pods = new_pods("canary"), new_pods("stable")
    try:
        was = await before(kube)
        for write in (canary_pods, stable_pods):
            await run.hold(write)
        plan = {"steps": [{"weight": 20}, {"weight": 50}]}
        await kube.create_rollout(rollout_manifest(version=IMAGE, plan=plan))

        async def kill_when(what: str, boundary: Callable[[dict[str, Any]], Awaitable[bool]],
                            ) -> None:
            seen: dict[str, Any] = {}

            async def there() -> dict[str, Any] | None:
                status = await kube.status("podinfo-v2")
                seen.update(phase=status.get("phase"), reason=status.get("reason"),
                            release=status.get("release"), **{
                                d: (await kube.apps.read_namespaced_deployment(d, NS)).status
                                for d in ("podinfo-canary", "podinfo-stable")})
                return status if await boundary(status) else None

            try:
                await eventually(there, timeout=120, what=what)
            except AssertionError as exc:
                raise AssertionError(f"{exc}; last seen: {seen}") from None
            if run.restarts:
                run.figures.append(f"restart -> {what}: "
                                   f"{time.monotonic() - run.restarts[-1]:.1f}s")
            run.proc.send_signal(signal.SIGKILL)
            run.proc.wait(timeout=10)
            assert await boundary(await kube.status("podinfo-v2"))

        async def canary_rolling_out(s: dict[str, Any]) -> bool:
            canary = await kube.apps.read_namespaced_deployment("podinfo-canary", NS)
            return (s.get("phase") == "Pending"
                    and (s.get("release") or {}).get("stage") == "CanaryStart"
                    and canary.metadata.generation == was.canary_generation + 1
                    and canary.status.observed_generation == canary.metadata.generation
                    and not canary.status.updated_replicas
                    and await kube.vs_weights() == {"stable": 100, "canary": 0})

        await kill_when("the canary rolling out, its pods refused", canary_rolling_out)
        await run.lift(canary_pods)
        run.restart()

        async def stable_rolling_out(s: dict[str, Any]) -> bool:
            stable = await kube.apps.read_namespaced_deployment("podinfo-stable", NS)
            return (s.get("phase") == "Promoting"
                    and (s.get("release") or {}).get("stage") == "StableUpdate"
                    and stable.metadata.generation == was.stable_generation + 1
                    and stable.status.observed_generation == stable.metadata.generation
                    and not stable.status.updated_replicas
                    and "stable updated 0/" in s.get("reason", "")
                    and await kube.vs_weights() == {"stable": 50, "canary": 50})

        await kill_when("stable rolling out, its new pods refused", stable_rolling_out)
        await run.lift(stable_pods)
        run.restart()
        status = await run.end("Succeeded")
        assert [h["trigger"] for h in status["history"]] == [
            "CanaryReady", "StepPassed", "AllStepsPassed", "StableUpdated", "TrafficConfirmed"]
        assert [h["weights"]["canary"] for h in status["history"]] == [20, 50, 50, 0, 0]
        await steady(kube, was, stable_images=[IMAGE], stable_writes=1, router_writes=3)
    finally:
        await run.close()
        await api.close()
