"""Notifications end to end: a faulty canary rolled back by two canaryd replicas (leader
election on the sandbox API server), the leader stopped in the middle; Slack, Teams and
CloudEvents receivers are real aiohttp servers in the test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import config

from canaryd.daemon import Daemon, DaemonOptions
from canaryd.runtime.leader import LeaseTiming
from canaryd.sandbox.runner import Sandbox
from tests.e2e.fixtures import sandbox
from tests.e2e.support import CONFIG, TERMINAL, Kube, eventually, rollout_manifest
from tests.hooks.receiver import Receiver, now, receiver

pytestmark = pytest.mark.prometheus
__all__ = ["sandbox"]


FAST_LEASE = LeaseTiming(lease_duration=2.0, renew_deadline=1.5, retry_period=0.3)


def settings_file(tmp_path: Path, rec: Receiver) -> Path:
    (tmp_path / "slack-url").write_text(f"{rec.url}/slack/T000/B000/XXXXSECRET\n")
    (tmp_path / "ce-url").write_text(f"{rec.url}/events?token=SECRET\n")
    settings = yaml.safe_load(CONFIG.read_text())
    settings["hooks"] = {"denyNetworks": []}
    settings["notifications"] = {
        "apiUrl": "https://canaryd.example",
        "receivers": [
            {"name": "team-slack", "kind": "slack",
             "urlFrom": {"file": str(tmp_path / "slack-url")}},
            {"name": "team-teams", "kind": "teams", "urlFrom": {"env": "CANARYD_TEST_TEAMS_URL"}},
            {"name": "audit", "kind": "cloudevents", "urlFrom": {"file": str(tmp_path / "ce-url")}},
        ],
        "routes": [
            {"receivers": ["team-slack", "team-teams"], "namespaces": ["demo"],
             "events": ["rolledBack", "failed", "succeeded"]},
            {"receivers": ["audit"]},
        ],
    }
    path = tmp_path / "canaryd.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.fixture
async def world(sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                ) -> AsyncIterator[tuple[Kube, Receiver, dict[str, Daemon]]]:
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    async with receiver() as rec:
        monkeypatch.setenv("CANARYD_TEST_TEAMS_URL", f"{rec.url}/teams/workflow?sig=SECRET")
        path = settings_file(tmp_path, rec)
        daemons = {name: Daemon(DaemonOptions(
            config=path, kubeconfig=str(sandbox.kubeconfig), host="127.0.0.1", port=0,
            prometheus_url=sandbox.prometheus_url, identity=name, lease_name="canaryd-notify",
            lease_timing=FAST_LEASE)) for name in ("r1", "r2")}
        tasks = {}
        try:
            for name, daemon in daemons.items():
                tasks[name] = asyncio.create_task(daemon.run(embedded=True))
                await eventually(now(lambda d=daemon: d.controller is not None  # type: ignore[misc]
                                     and d.controller.synced.is_set()), timeout=20,
                                 what=f"{name} synced")
            yield Kube(api), rec, daemons
        finally:
            for daemon in daemons.values():
                daemon.stop.set()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            await api.close()


async def test_a_rollback_is_told_once_per_receiver_across_a_leader_failover(
    world: tuple[Kube, Receiver, dict[str, Daemon]],
) -> None:
    kube, rec, daemons = world
    leader = await eventually(
        now(lambda: next((n for n, d in daemons.items() if d.may_write()), None)),
        timeout=10, what="a leader")
    await kube.annotate_service("podinfo", **{"sandbox.canaryd.io/rps": "1000"})
    await kube.create_rollout(rollout_manifest(plan={"steps": [
        {"weight": 20, "pause": "4s", "analysis": False}, {"weight": 50}]}))

    def events() -> list[dict[str, Any]]:
        return [c.json for c in rec.to("/events")]

    await eventually(now(lambda: any(e["type"].endswith(".started") for e in events())),
                     timeout=30, what="the started event")
    # The leader goes away in the middle; the other one takes over.
    daemons[leader].stop.set()
    other = next(n for n in daemons if n != leader)
    await eventually(now(lambda: daemons[other].may_write()), timeout=10, what=f"{other} leading")
    await kube.annotate_deployment("podinfo-canary",
                                   **{"sandbox.canaryd.io/error-ratio": "0.05"})
    status = await kube.wait_phase("podinfo-v2", TERMINAL, timeout=90)
    assert status["phase"] == "RolledBack", status["reason"]
    final = status["sequence"]

    async def all_told() -> dict[str, Any] | None:
        s = await kube.status("podinfo-v2")
        told = s.get("notified", {})
        return s if all(told.get(r) == final for r in ("team-slack", "team-teams",
                                                        "audit")) else None

    await eventually(all_told, timeout=30, what="every receiver told up to the verdict")
    slack, teams = rec.to("/slack/T000/B000/XXXXSECRET"), rec.to("/teams/workflow")
    assert len(slack) == 1 and len(teams) == 1, (len(slack), len(teams))
    failed = next(c for c in status["checks"] if c["verdict"] == "Fail")
    value = f"{failed['value']:.2f}".rstrip("0").rstrip(".")[:4]
    for body in (slack[0].body.decode(), teams[0].body.decode()):
        assert "rolled back" in body and "istio-success-rate" in body
        assert value in body and ">= 99%" in body, body
        assert "https://canaryd.example/api/v1/rollouts/demo/podinfo-v2" in body
    before = sorted(set(status["release"]["from"]["images"].values()))
    assert before and all(f"{b} -> " in teams[0].body.decode()  # Slack escapes > as &gt;
                          and f"{b} -&gt; " in slack[0].body.decode() for b in before), before
    blocks = slack[0].json["blocks"]
    assert blocks[0]["type"] == "header"
    card = teams[0].json["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["type"] == "AdaptiveCard"
    ids = [e["id"] for e in events()]
    assert len(ids) == len(set(ids)), f"a CloudEvent sent twice: {ids}"
    kinds = [e["type"].rsplit(".", 1)[1] for e in events()]
    assert kinds[0] == "started" and kinds[-1] == "rolledBack", kinds
    assert rec.to("/events")[0].headers["Content-Type"] == "application/cloudevents+json"
