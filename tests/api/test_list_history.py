"""`canaryd list --target NS/TARGET`: a target's release history through the real API."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client

from canaryd.cli import main
from canaryd.sandbox.testing import eventually
from tests.api.conftest import Served
from tests.api.support import TOKENS, StatusWriter, auth, manifest

BASE = "/api/v1/rollouts"


async def canaryd(served: Served, *argv: str) -> int:
    conn = ["--url", served.url, "--token", TOKENS["read"]]
    code: int = await asyncio.to_thread(main, [*argv, *conn])
    return code


async def submit(http: aiohttp.ClientSession, body: dict[str, Any]) -> None:
    async with http.post(BASE, json=body, headers=auth("submit")) as resp:
        assert resp.status == 201, await resp.text()


async def in_cache(served: Served, key: str, phase: str) -> None:
    async def probe() -> bool:
        obj = served.state.deps.cache.get(key)
        return obj is not None and ((obj.get("status") or {}).get("phase") or "Pending") == phase

    await eventually(probe, timeout=10, what=f"{key} {phase} in the cache")


def revision(image: str) -> dict[str, Any]:
    return {"images": {"podinfo": image}, "templateHash": image[-8:]}


async def release(http: aiohttp.ClientSession, served: Served, kube: client.ApiClient,
                  name: str, version: str, old: str, end: str | None,
                  namespace: str = "demo") -> None:
    """Submit one release and play the leader: Progressing with status.release, then END."""
    await submit(http, manifest(name, namespace=namespace, version=version))
    await in_cache(served, f"{namespace}/{name}", "Pending")
    writer = StatusWriter(kube, namespace, name)
    writer.status["release"] = {"from": revision(old), "to": revision(version),
                                "stage": "Steps"}
    await writer.transition("Progressing", "step 1/3 at 10%", canary=10)
    if end is not None:
        await writer.transition(end, f"{end.lower()} for the test", canary=0)
    await in_cache(served, f"{namespace}/{name}", end or "Progressing")


async def test_the_history_of_one_target_newest_first_with_versions_and_times(
    served: Served, http: aiohttp.ClientSession, kube: client.ApiClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await client.CoreV1Api(kube).create_namespace({"metadata": {"name": "other"}})
    img = "ghcr.io/stefanprodan/podinfo:"
    await release(http, served, kube, "podinfo-v2", img + "6.0.2", img + "6.0.1", "Succeeded")
    await release(http, served, kube, "podinfo-v3", img + "6.0.3", img + "6.0.2", "RolledBack")
    await release(http, served, kube, "podinfo-v4", img + "6.0.4", img + "6.0.2", None)
    # The same target name in another namespace, and another target here: not this history.
    await release(http, served, kube, "podinfo-v9", img + "6.0.9", img + "6.0.1", "Succeeded",
                  namespace="other")
    await submit(http, manifest("other-v1", target="other", own="own"))
    await in_cache(served, "demo/other-v1", "Pending")
    capsys.readouterr()

    assert await canaryd(served, "list", "--target", "demo/podinfo") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "VERSION", "FROM", "TO", "VERDICT",
                                "STARTED", "FINISHED", "REASON"]
    rows = [line.split() for line in lines[1:]]
    assert [r[1] for r in rows] == ["podinfo-v4", "podinfo-v3", "podinfo-v2"]
    assert rows[0][2:6] == [img + "6.0.4", img + "6.0.2", img + "6.0.4", "(Progressing)"]
    assert rows[1][2:6] == [img + "6.0.3", img + "6.0.2", img + "6.0.3", "RolledBack"]
    assert rows[2][2:6] == [img + "6.0.2", img + "6.0.1", img + "6.0.2", "Succeeded"]
    assert rows[0][7] == "-" and rows[1][7].endswith("Z") and rows[2][7].endswith("Z")

    assert await canaryd(served, "list", "--target", "podinfo", "-o", "json") == 0
    every = json.loads(capsys.readouterr().out)
    assert {(r["namespace"], r["name"]) for r in every} == {
        ("demo", "podinfo-v2"), ("demo", "podinfo-v3"), ("demo", "podinfo-v4"),
        ("other", "podinfo-v9")}
    v3 = next(r for r in every if r["name"] == "podinfo-v3")
    assert v3["verdict"] == "RolledBack" and v3["from"] == img + "6.0.2"
    assert v3["started"] <= v3["finished"]

    # A namespace in --target and a different -n: a usage error, nothing asked.
    assert await canaryd(served, "list", "--target", "demo/podinfo", "-n", "other") == 2
    assert "names namespace demo" in capsys.readouterr().err
    # A bad name is the API's 400, naming the parameter.
    assert await canaryd(served, "list", "--target", "demo/Bad_Target") == 2
    assert "target" in capsys.readouterr().err
