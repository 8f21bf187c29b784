"""What other clients write cannot stall canaryd: beside ten healthy rollouts, Rollouts whose
status or action annotation was written by hand (bypassing canaryd's API, as kubectl or a
GitOps tool can), and one whose router object is deleted mid-rollout. Every healthy rollout
completes; each bad one is reported on itself (Degraded condition, Event, /metrics) and left
alone; the leader never steps down; the API's list and get still answer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from kubernetes_asyncio import client, config

from canaryd.sandbox import example_app
from canaryd.sandbox.runner import Sandbox
from tests.api.support import auth, tokens_yaml
from tests.e2e.conftest import canaryd_running
from tests.e2e.support import (
    EXAMPLE,
    GROUP,
    NS,
    PLURAL,
    TERMINAL,
    VERSION,
    Kube,
    eventually,
    rollout_manifest,
)

HEALTHY = [f"app{i}" for i in range(10)]
T = "2026-01-01T00:00:00Z"
PROGRESSING = {"phase": "Progressing", "weights": {"stable": 90, "canary": 10},
               "phaseStartedAt": T, "stepStartedAt": T, "stepCount": 2}
# name -> (status written by hand, what the Degraded message starts with)
BAD_STATUS: dict[str, tuple[dict[str, Any], str]] = {
    "bad-phase": ({"phase": "Exploded", "reason": "written by hand"},
                  "status.phase: 'Exploded' is not a phase"),
    "bad-types": ({"phase": "Progressing", "stepIndex": "three", "weights": "half",
                   "history": "none"}, "status.stepIndex"),
    "bad-missing": ({"phase": "Progressing", "stepIndex": 1},
                    "status.weights: missing, and phase Progressing needs it"),
    "bad-history": ({**PROGRESSING, "sequence": 10_000, "history": [
        {"seq": i, "time": T, "source": "Progressing", "phase": "Progressing", "trigger": "t",
         "reason": ""} for i in range(1, 10_001)]}, "status.history"),
    "bad-reason": ({**PROGRESSING, "reason": "x" * (1 << 20)}, "status.reason"),
}


def app_manifests(name: str) -> list[dict[str, Any]]:
    """The example app's podinfo (Service, Deployments, DestinationRule, VirtualService) as
    another application, `name`, with its own traffic."""
    docs = [d for d in example_app.load_manifests(rps=100)
            if d["kind"] != "Namespace" and d["metadata"]["name"] in (
                "podinfo", "podinfo-stable", "podinfo-canary")
            and d["kind"] in ("Service", "Deployment", "DestinationRule", "VirtualService")
            and not (d["kind"] == "Service" and d["metadata"]["name"] != "podinfo")]
    text = re.sub(r"\bpodinfo\b(?!:)", name, yaml.safe_dump_all(docs))
    return [d for d in yaml.safe_load_all(text) if d]


def healthy(name: str) -> dict[str, Any]:
    body = rollout_manifest(name)
    # The sandbox profile's 5s windows: ten rollouts, one Prometheus, a busy CI machine.
    body["spec"]["analysis"] = {"profile": "sandbox"}
    body["spec"]["plan"] = {"steps": [{"weight": 20, "analysis": False}, {"weight": 50}]}
    istio = body["spec"]["router"]["istio"]
    istio.update(virtualService=name, stable={"host": name, "subset": "stable"},
                 canary={"host": name, "subset": "canary"})
    body["spec"].update(target=name, workloads={**body["spec"]["workloads"],
                                                "stable": f"{name}-stable",
                                                "canary": f"{name}-canary"})
    return body


def left_alone(name: str) -> dict[str, Any]:
    """A rollout on objects of its own (they need not exist: it is left alone)."""
    return healthy(name)


async def degraded(kube: Kube, name: str) -> dict[str, Any] | None:
    status = await kube.status(name)
    for c in status.get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == "Degraded" and c.get("status") == "True":
            return c
    return None


async def warnings(kube: Kube, name: str) -> set[str]:
    listed = await kube.core.list_namespaced_event(
        NS, field_selector=f"involvedObject.name={name}")
    return {e.reason for e in listed.items if e.type == "Warning"}


async def test_bad_objects_are_reported_on_themselves_and_stall_nothing(
    sandbox: Sandbox, tmp_path: Path,
) -> None:
    async with client.ApiClient(await _config(sandbox)) as api:
        kube = Kube(api)
        for name in [*HEALTHY, "bad-action"]:
            await example_app.apply_example_app(api, manifests=app_manifests(name))
        # Written before canaryd starts: its first act as leader (claim) meets them all.
        for name, (status, _) in BAD_STATUS.items():
            await kube.create_rollout(left_alone(name))
            await kube.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, NS, PLURAL, name, {"status": status},
                _content_type="application/merge-patch+json")
        action = healthy("bad-action")
        action["metadata"]["annotations"] = {"canaryd.io/action": "explode"}
        await kube.create_rollout(action)
        gateway = yaml.safe_load((EXAMPLE.parent / "gateway-api.yaml").read_text())
        gateway["metadata"]["name"] = "router-gone"
        gateway["spec"]["plan"] = {"steps": [{"weight": 10, "pause": "1h", "analysis": False}]}
        await kube.create_rollout(gateway)
        for name in HEALTHY:
            await kube.create_rollout(healthy(name))

        tokens = tmp_path / "tokens.yaml"
        tokens.write_text(tokens_yaml())
        async with canaryd_running(sandbox, tokens_file=tokens) as daemon:
            await kube.wait_phase("router-gone", {"Progressing"}, timeout=30)
            await kube.custom.delete_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", NS, "httproutes", "podinfo-gw")

            for name in HEALTHY:
                status = await kube.wait_phase(name, TERMINAL, timeout=90)
                assert status["phase"] == "Succeeded", (name, status["reason"])
                assert "Degraded" not in {c["type"] for c in status["conditions"]}

            for name, (written, problem) in BAD_STATUS.items():
                condition = await eventually(lambda n=name: degraded(kube, n), timeout=20,
                                             what=f"{name} reported Degraded")
                assert condition["reason"] == "InvalidStatus", name
                assert condition["message"].startswith(problem), condition["message"]
                status = await kube.status(name)
                assert {k: v for k, v in status.items() if k != "conditions"} == written, (
                    f"{name}: nothing but the report was written")

            condition = await eventually(lambda: degraded(kube, "bad-action"), timeout=20,
                                         what="bad-action reported Degraded")
            assert condition["reason"] == "UnknownAction"
            assert "'explode' is not an action" in condition["message"]
            obj = await kube.rollout("bad-action")
            assert obj["metadata"]["annotations"]["canaryd.io/action"] == "explode"
            assert obj["status"]["phase"] == "Pending"

            condition = await eventually(lambda: degraded(kube, "router-gone"), timeout=20,
                                         what="router-gone reported Degraded")
            assert condition["reason"] == "RouterError" and "not found" in condition["message"]
            status = await kube.status("router-gone")
            assert status["phase"] == "RollingBack" and "not found" in status["reason"]

            expected = {**{n: "InvalidStatus" for n in BAD_STATUS},
                        "bad-action": "UnknownAction", "router-gone": "RouterError"}
            for name, reason in expected.items():
                assert reason in await eventually(
                    lambda n=name, r=reason: _has(warnings(kube, n), r), timeout=10,
                    what=f"a {reason} Warning Event on {name}")

            assert daemon.url is not None
            async with aiohttp.ClientSession(base_url=daemon.url) as http:
                async with http.get("/metrics") as resp:
                    metrics = await resp.text()
                for name, reason in expected.items():
                    assert (f'canaryd_rollout_degraded{{namespace="demo",reason="{reason}",'
                            f'rollout="{name}"}} 1.0') in metrics
                assert f'canaryd_rollouts{{phase="Unknown"}} {len(BAD_STATUS)}.0' in metrics
                assert 'canaryd_rollouts{phase="Succeeded"} 10.0' in metrics

                async with http.get("/api/v1/rollouts", params={"namespace": NS, "limit": 500},
                                    headers=auth("read")) as resp:
                    assert resp.status == 200
                    listed = {i["metadata"]["name"] for i in (await resp.json())["items"]}
                assert {*HEALTHY, *expected} <= listed
                for name in expected:
                    async with http.get(f"/api/v1/rollouts/{NS}/{name}",
                                        headers=auth("read")) as resp:
                        assert resp.status == 200, name

            # A bad annotation replaced by a real action is honoured at once.
            await kube.act("bad-action", "abort")
            await kube.wait_phase("bad-action", {"Aborted"}, timeout=20)

            lease = await client.CoordinationV1Api(api).read_namespaced_lease(
                "canaryd-leader", "default")
            assert lease.spec.holder_identity == "e2e"
            assert lease.spec.lease_transitions == 0, "the leader never stepped down"
            assert daemon.elector is not None and daemon.elector.is_leader()


async def _has(pending: Any, reason: str) -> set[str] | None:
    found: set[str] = await pending
    return found if reason in found else None


async def _config(sandbox: Sandbox) -> client.Configuration:
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(sandbox.kubeconfig), client_configuration=cfg)
    return cfg
