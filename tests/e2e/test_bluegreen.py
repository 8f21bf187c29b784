"""Blue-green in the sandbox with real Prometheus: preview, switch, fast rollback, restart."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import config

from canaryd.sandbox.runner import Sandbox
from tests.e2e.conftest import Env
from tests.e2e.support import NS, ROOT, TERMINAL, Kube, eventually, prom_query
from tests.e2e.test_canary_restart import spawn

# Judged by the embedded emulator and by the real control plane (tests/realkube.py).
KUBE_BACKENDS = ("emulator", "real")

EXAMPLE = ROOT / "config" / "examples" / "bluegreen.yaml"


def manifest(**blue_green: Any) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["spec"]["blueGreen"].update(blue_green)
    body["spec"]["analysis"] = {"profile": "sandbox", "interval": "3s"}
    return body


async def active_version(kube: Kube, service: str = "shop") -> str:
    svc = await kube.core.read_namespaced_service(service, NS)
    return str(svc.spec.selector["version"])


async def live_rates(prometheus_url: str) -> dict[str, float]:
    """Requests per second the mesh delivered through the active Service, per workload."""
    rows = await prom_query(
        prometheus_url,
        'sum by (destination_workload) (rate(istio_requests_total{reporter="destination",'
        f'destination_service_name="shop",destination_workload_namespace="{NS}"}}[3s]))',
    )
    return {r["metric"]["destination_workload"]: float(r["value"][1]) for r in rows}


async def test_healthy_green_is_promoted_and_blue_scaled_down(env: Env) -> None:
    await env.kube.create_rollout(manifest())
    status = await env.kube.wait_phase("shop-v2", TERMINAL, timeout=90)
    assert status["phase"] == "Succeeded", status["reason"]
    assert [h["trigger"] for h in status["history"]] == [
        "CanaryReady", "StepPassed", "AllStepsPassed", "TrafficConfirmed",
    ]
    steps_analysed = {c["stepIndex"] for c in status["checks"] if c["verdict"] == "Pass"}
    assert steps_analysed == {0, 1}, "pre- and post-promotion analysis both ran"
    assert await active_version(env.kube) == "v2"
    assert await active_version(env.kube, "shop-preview") == "v2"
    blue = await env.kube.apps.read_namespaced_deployment("shop-blue", NS)
    assert blue.spec.replicas == 0

    async def live_on_green() -> bool:
        rates = await live_rates(env.sandbox.prometheus_url)
        return rates.get("shop-green", 0) > 50 and rates.get("shop-blue", 0) < 1

    await eventually(live_on_green, timeout=20, what="live traffic on green")


async def test_green_failing_pre_promotion_never_gets_live_traffic(env: Env) -> None:
    await env.kube.annotate_deployment("shop-green", **{"sandbox.canaryd.io/error-ratio": "0.2"})
    await env.kube.create_rollout(manifest())
    status = await env.kube.wait_phase("shop-v2", TERMINAL, timeout=60)
    assert status["phase"] == "RolledBack", status["reason"]
    assert all(c["stepIndex"] == 0 for c in status["checks"]), "failed before the switch"
    assert await active_version(env.kube) == "v1"
    rows = await prom_query(
        env.sandbox.prometheus_url,
        'sum(increase(istio_requests_total{destination_service_name="shop",'
        'destination_workload="shop-green"}[5m]))',
    )
    assert not rows or float(rows[0]["value"][1]) == 0.0, "green never served live traffic"


async def test_green_failing_post_promotion_is_switched_back(env: Env) -> None:
    await env.kube.create_rollout(manifest(postPromotion="1m"))

    async def switched() -> bool:
        return await active_version(env.kube) == "v2"

    await eventually(switched, timeout=60, what="the switch to green")
    await env.kube.annotate_deployment("shop-green", **{"sandbox.canaryd.io/error-ratio": "0.2"})
    status = await env.kube.wait_phase("shop-v2", TERMINAL, timeout=60)
    assert status["phase"] == "RolledBack", status["reason"]
    assert any(c["stepIndex"] == 1 and c["verdict"] == "Fail" for c in status["checks"])
    assert await active_version(env.kube) == "v1"
    blue = await env.kube.apps.read_namespaced_deployment("shop-blue", NS)
    assert blue.spec.replicas == 2, "blue kept running until success"

    async def live_on_blue() -> bool:
        rates = await live_rates(env.sandbox.prometheus_url)
        return rates.get("shop-blue", 0) > 50 and rates.get("shop-green", 0) < 1

    await eventually(live_on_blue, timeout=20, what="live traffic back on blue")


async def test_sigkill_after_the_switch_then_restart_finishes(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    kube = Kube(api)
    log = (tmp_path / "daemon.log").open("wb")
    proc = spawn(sandbox, log)
    try:
        await kube.create_rollout(manifest(postPromotion="6s"))

        async def switched() -> bool:
            return await active_version(kube) == "v2"

        await eventually(switched, timeout=60, what="the switch to green")
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 10)
        proc = spawn(sandbox, log)
        status = await kube.wait_phase("shop-v2", TERMINAL, timeout=60)
        assert status["phase"] == "Succeeded", status["reason"]
        triggers = [h["trigger"] for h in status["history"]]
        assert triggers == ["CanaryReady", "StepPassed", "AllStepsPassed", "TrafficConfirmed"]
        assert await active_version(kube) == "v2"
    finally:
        proc.kill()
        await asyncio.to_thread(proc.wait, 10)
        log.close()
        await api.close()


async def test_three_releases_with_one_file_alternate_colours(env: Env) -> None:
    """One Rollout file, only spec.version changed: each release goes to the idle colour
    (green, then blue, then green), is checked through the preview Service, switched, and
    leaves the colour it replaced at zero replicas, running the version before."""
    body = manifest(postPromotion="3s", scaleDownDelay="1s")
    body["metadata"] = {"generateName": "shop-", "namespace": NS}
    image = "ghcr.io/stefanprodan/podinfo"
    for version, (live, idle) in (("7.0.0", ("v2", "shop-blue")),
                                  ("7.1.0", ("v1", "shop-green")),
                                  ("7.2.0", ("v2", "shop-blue"))):
        body["spec"]["version"] = f"{image}:{version}"
        name = (await env.kube.create_rollout(body))["metadata"]["name"]
        status = await env.kube.wait_phase(name, TERMINAL, timeout=90)
        assert status["phase"] == "Succeeded", status["reason"]
        assert status["release"]["colour"] == ("green" if live == "v2" else "blue")
        assert await active_version(env.kube) == live
        assert await active_version(env.kube, "shop-preview") == live
        new = "shop-green" if live == "v2" else "shop-blue"
        serving = await env.kube.apps.read_namespaced_deployment(new, NS)
        assert [c.image for c in serving.spec.template.spec.containers] == [f"{image}:{version}"]
        old = await env.kube.apps.read_namespaced_deployment(idle, NS)
        assert old.spec.replicas == 0, f"{idle} scaled down after the switch"

        async def live_on_new(new: str = new, idle: str = idle) -> bool:
            rates = await live_rates(env.sandbox.prometheus_url)
            return rates.get(new, 0) > 50 and rates.get(idle, 0) < 1

        await eventually(live_on_new, timeout=20, what=f"live traffic on {new} only")
