"""GET /api/v1/events: the rollout list as a stream, through the real aiohttp API on the
sandbox API server (the tests write status as the controller would)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from kubernetes_asyncio import client

from canaryd.client.sse import Message
from tests.api.conftest import Served
from tests.api.support import TOKENS, StatusWriter, auth, manifest, messages

EVENTS = "/api/v1/events"
SCOPED = "scoped-token-0123456789abcdef"


async def until(stream: AsyncIterator[Message], kind: str) -> list[Message]:
    """The messages up to and including the first `kind`."""
    got = []
    async for m in stream:
        got.append(m)
        if m.event == kind:
            return got
    raise AssertionError(f"the stream ended before {kind}: {got}")


async def create(http: aiohttp.ClientSession, name: str, namespace: str = "demo",
                 ) -> None:
    body = manifest(name, namespace=namespace, target=name, own=name)
    async with http.post("/api/v1/rollouts", json=body, headers=auth("submit")) as resp:
        assert resp.status == 201, await resp.text()


async def listed(http: aiohttp.ClientSession, names: set[str]) -> None:
    """Wait until the cache (the list endpoint) has every one of `names`."""
    from canaryd.sandbox.testing import eventually

    async def probe() -> bool:
        async with http.get("/api/v1/rollouts", headers=auth("read")) as resp:
            body = await resp.json()
        return names <= {i["metadata"]["name"] for i in body["items"]}

    await eventually(probe, timeout=10, what=f"{names} in the cache")


def pos(event_id: str | None) -> int:
    assert event_id is not None
    return int(event_id.rsplit("-", 1)[1])


def data(m: Message) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(m.data)
    return parsed


async def test_the_stream_sends_the_list_then_each_change(
    http: aiohttp.ClientSession, kube: client.ApiClient,
) -> None:
    await create(http, "alpha")
    await create(http, "beta")
    await listed(http, {"alpha", "beta"})
    async with http.get(EVENTS, headers=auth("read")) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        stream = messages(resp)
        first = await until(stream, "synced")
        assert [m.event for m in first] == ["reset", "added", "added", "synced"]
        assert first[0].id == ""  # a re-list clears the client's last id
        assert [data(m)["rollout"] for m in first[1:3]] == ["demo/alpha", "demo/beta"]
        row = data(first[1])
        assert row["phase"] == "Pending" and row["spec"]["target"] == "alpha"
        assert "history" not in row["status"]
        assert data(first[3]) == {"count": 2, "resumed": False}
        assert first[3].id and first[1].id is None
        # The controller's part: alpha moves to Progressing at 20%.
        await StatusWriter(kube, "demo", "alpha").transition("Progressing", "step 1/2",
                                                            canary=20)
        change = (await until(stream, "modified"))[-1]
        row = data(change)
        assert row["rollout"] == "demo/alpha" and row["phase"] == "Progressing"
        assert row["status"]["weights"] == {"stable": 80, "canary": 20}
        assert pos(change.id) > pos(first[3].id)
        await client.CustomObjectsApi(kube).delete_namespaced_custom_object(
            "canaryd.io", "v1alpha1", "demo", "rollouts", "beta")
        gone = (await until(stream, "deleted"))[-1]
        assert data(gone) == {"rollout": "demo/beta", "namespace": "demo", "name": "beta",
                              "why": "deleted"}


async def test_a_phase_filter_adds_and_removes_rows_as_they_change(
    http: aiohttp.ClientSession, kube: client.ApiClient,
) -> None:
    await create(http, "alpha")
    await listed(http, {"alpha"})
    writer = StatusWriter(kube, "demo", "alpha")
    async with http.get(EVENTS + "?phase=Progressing", headers=auth("read")) as resp:
        stream = messages(resp)
        assert [m.event for m in await until(stream, "synced")] == ["reset", "synced"]
        await writer.transition("Progressing", "step 1/2", canary=20)
        assert data((await until(stream, "added"))[-1])["rollout"] == "demo/alpha"
        await writer.transition("Paused", "paused by operator", canary=20)
        gone = (await until(stream, "deleted"))[-1]
        assert data(gone)["why"] == "left the view"


async def test_a_token_of_one_namespace_never_sees_another(
    tmp_path: Path, kube: client.ApiClient, prometheus: str,
) -> None:
    from tests.api.conftest import serve_api

    await client.CoreV1Api(kube).create_namespace({"metadata": {"name": "shop"}})
    tokens = tmp_path / "scoped-tokens.yaml"
    entries = [{"name": f"ci-{r}", "role": r, "token": t} for r, t in TOKENS.items()]
    entries.append({"name": "shop", "role": "read", "token": SCOPED, "namespaces": ["shop"]})
    tokens.write_text(yaml.safe_dump(entries))
    scoped = {"Authorization": f"Bearer {SCOPED}"}
    async with serve_api(tmp_path / "kubeconfig", tokens, prometheus) as served, \
            aiohttp.ClientSession(base_url=served.url,
                                  timeout=aiohttp.ClientTimeout(total=30)) as http:
        await create(http, "alpha")
        await create(http, "cart", namespace="shop")
        await listed(http, {"alpha", "cart"})
        async with http.get(EVENTS + "?namespace=demo", headers=scoped) as resp:
            assert resp.status == 403
            assert "may act in namespaces shop, not 'demo'" in (await resp.json())["detail"]
        async with http.get(EVENTS, headers=scoped) as resp:
            stream = messages(resp)
            first = await until(stream, "synced")
            assert [data(m)["rollout"] for m in first if m.event == "added"] == ["shop/cart"]
            # A change in demo sends nothing; the next event is shop's.
            await StatusWriter(kube, "demo", "alpha").transition("Progressing", "s", canary=20)
            await StatusWriter(kube, "shop", "cart").transition("Progressing", "s", canary=10)
            change = (await until(stream, "modified"))
            assert [data(m)["rollout"] for m in change if m.event != "bookmark"] == [
                "shop/cart"]


async def test_reconnecting_with_last_event_id_resumes_or_relists(
    http: aiohttp.ClientSession, kube: client.ApiClient, served: Served,
) -> None:
    await create(http, "alpha")
    await create(http, "beta")
    await listed(http, {"alpha", "beta"})
    async with http.get(EVENTS, headers=auth("read")) as resp:
        last = (await until(messages(resp), "synced"))[-1].id
    assert last is not None
    # While disconnected: alpha progresses, beta is deleted, gamma is created.
    await StatusWriter(kube, "demo", "alpha").transition("Progressing", "step 1/2", canary=20)
    await client.CustomObjectsApi(kube).delete_namespaced_custom_object(
        "canaryd.io", "v1alpha1", "demo", "rollouts", "beta")
    await create(http, "gamma")
    await listed(http, {"gamma"})

    async def alpha_progressing() -> bool:
        obj = served.state.deps.cache.get("demo/alpha") or {}
        return (obj.get("status") or {}).get("phase") == "Progressing" and (
            "demo/beta" not in served.state.deps.cache)

    from canaryd.sandbox.testing import eventually
    await eventually(alpha_progressing, timeout=10, what="the changes in the cache")
    async with http.get(EVENTS, headers={**auth("read"), "Last-Event-ID": last}) as resp:
        replay = await until(messages(resp), "synced")
    kinds = {data(m)["rollout"]: m.event for m in replay if m.event != "synced"}
    assert kinds == {"demo/alpha": "modified", "demo/beta": "deleted",
                     "demo/gamma": "modified"}, replay
    assert "reset" not in [m.event for m in replay]
    assert data(replay[-1]) == {"count": 2, "resumed": True}
    assert all(pos(m.id) > pos(last) for m in replay)
    # An id of another server process (a restart, another replica): a fresh list.
    other = "00000000-5" if not last.startswith("00000000") else "ffffffff-5"
    async with http.get(EVENTS, headers={**auth("read"), "Last-Event-ID": other}) as resp:
        relist = await until(messages(resp), "synced")
    assert [m.event for m in relist] == ["reset", "added", "added", "synced"]
    assert data(relist[0])["reason"] == "another server process issued that id"
    for bad in ("12", "x-1", "0000000g-1", "00000000-" + "9" * 16):
        async with http.get(EVENTS, headers={**auth("read"), "Last-Event-ID": bad}) as resp:
            assert resp.status == 400, bad
            assert (await resp.json())["errors"][0]["parameter"] == "Last-Event-ID"


async def test_the_stream_needs_a_token_and_holds_a_stream_slot(
    http: aiohttp.ClientSession, served: Served,
) -> None:
    from canaryd.api.transport import HttpLimits

    async with http.get(EVENTS) as resp:
        assert resp.status == 401
    async with http.get(EVENTS + "?phase=Exploded", headers=auth("read")) as resp:
        assert resp.status == 400
    served.state.heartbeat = 0.05
    async with http.get(EVENTS, headers=auth("read")) as resp:
        lines = []
        async for raw in resp.content:
            lines.append(raw)
            if raw.startswith(b": keep-alive"):
                break
        assert served.state.guard.streams["ci-read"] == 1
        served.state.guard.limits = HttpLimits(max_streams_per_token=1)
        async with http.get(EVENTS, headers=auth("read")) as second:
            assert second.status == 429
    assert any(line.startswith(b": keep-alive") for line in lines)


async def test_stopping_the_server_ends_open_list_streams_at_once(
    http: aiohttp.ClientSession, served: Served,
) -> None:
    async with http.get(EVENTS, headers=auth("read")) as resp:
        await until(messages(resp), "synced")
        async with http.get("/metrics") as metrics:
            assert "canaryd_api_list_streams 1.0" in await metrics.text()
        await served.app.shutdown()  # what runner.cleanup() starts with
        rest = await asyncio.wait_for(resp.content.read(), timeout=5)
    assert b"event:" not in rest


def test_the_feed_compacts_changes_and_knows_when_it_no_longer_reaches_back() -> None:
    from canaryd.api.liststream import Feed

    feed = Feed(keep=4)
    for name in ("a", "b", "a", "c", "a"):  # positions 1..5; 2..5 kept
        feed.notify("MODIFIED", {"metadata": {"namespace": "demo", "name": name}})
    assert feed.since(1) == [(2, "demo/b"), (4, "demo/c"), (5, "demo/a")]
    assert feed.since(3) == [(4, "demo/c"), (5, "demo/a")]
    assert feed.since(5) == []
    assert feed.since(0) is None  # change 1 is no longer kept: re-list
    assert feed.since(6) is None  # not one of this process's positions
    assert Feed().epoch != feed.epoch
