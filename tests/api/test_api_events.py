"""The event stream: every transition and check, the verdict last, and resumption without loss."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from kubernetes_asyncio import client

from canaryd.api import stream
from canaryd.client.follow import Event, follow
from canaryd.client.http import CanarydClient
from canaryd.client.sse import Message
from canaryd.sandbox.testing import eventually
from tests.api.conftest import Served
from tests.api.support import (
    GROUP,
    PLURAL,
    TOKENS,
    VERSION,
    CuttableProxy,
    StatusWriter,
    auth,
    manifest,
    messages,
)

EVENTS = "/api/v1/rollouts/demo/podinfo-v2/events"


async def create(http: aiohttp.ClientSession) -> None:
    async with http.post("/api/v1/rollouts", json=manifest(), headers=auth("submit")) as resp:
        assert resp.status == 201


async def play(writer: StatusWriter) -> list[str]:
    """A whole rollout, as the controller records it; returns the event ids in order."""
    ids = [await writer.transition("Progressing", "step 1/2 at 20%", canary=20)]
    ids += await writer.checks(100.0, 42.0)
    ids += [await writer.transition("Progressing", "step 2/2 at 50%", canary=50)]
    ids += await writer.checks(99.5, 40.0)
    ids += [await writer.transition("Promoting", "all steps passed", canary=100)]
    ids += [await writer.transition("Succeeded", "promoted", canary=100)]
    return [*ids, f"{writer.status['sequence']}.final"]


async def test_the_stream_carries_every_transition_and_check_then_the_verdict(
    http: aiohttp.ClientSession, kube: client.ApiClient,
) -> None:
    await create(http)
    writer = StatusWriter(kube, "demo", "podinfo-v2")
    async with http.get(EVENTS, headers=auth("read")) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        received: list[Message] = []
        player = None
        async for m in messages(resp):
            received.append(m)
            if m.event == "state":
                assert json.loads(m.data)["phase"] == "Pending"
                player = asyncio.create_task(play(writer))
        assert player is not None
        expected = await player
    assert [m.id for m in received if m.id] == expected
    kinds = [m.event for m in received]
    assert kinds == ["state", "transition", "check", "check", "transition", "check", "check",
                     "transition", "transition", "verdict"]
    check = json.loads(received[2].data)
    assert {"value": 100.0, "threshold": ">= 99", "verdict": "Pass"}.items() <= check.items()
    verdict = json.loads(received[-1].data)
    assert verdict["phase"] == "Succeeded" and verdict["succeeded"] is True


async def test_reconnecting_with_last_event_id_misses_nothing_and_repeats_nothing(
    http: aiohttp.ClientSession, kube: client.ApiClient,
) -> None:
    await create(http)
    writer = StatusWriter(kube, "demo", "podinfo-v2")
    first = [await writer.transition("Progressing", "step 1/2 at 20%", canary=20)]
    first += await writer.checks(100.0, 42.0)
    seen: list[str] = []
    async with http.get(EVENTS, headers=auth("read")) as resp:
        async for m in messages(resp):
            if m.id:
                seen.append(m.id)
            if len(seen) == 2:
                break  # the client drops mid-way, after "1" and "2.1"
    rest = await play(writer)
    async with http.get(EVENTS, headers={**auth("read"), "Last-Event-ID": seen[-1]}) as resp:
        seen += [m.id async for m in messages(resp) if m.id]
    assert seen == [*first, *rest]


async def test_the_client_follows_through_cut_connections_without_loss(
    served: Served, http: aiohttp.ClientSession, kube: client.ApiClient,
) -> None:
    await create(http)
    writer = StatusWriter(kube, "demo", "podinfo-v2")
    proxy = CuttableProxy(served.port)
    url = await proxy.start()
    got: list[Event] = []
    try:
        async with CanarydClient(url, TOKENS["read"], timeout=5) as api:
            async def collect() -> None:
                async for event in follow(api, "demo", "podinfo-v2", give_up_after=20):
                    got.append(event)

            follower = asyncio.create_task(collect())
            expected = [await writer.transition("Progressing", "step 1", canary=20)]

            async def delivered() -> bool:
                return any(e.id == expected[-1] for e in got)

            await eventually(delivered, timeout=10, what="the first transition")
            proxy.cut()  # the stream drops right after an event
            expected += await writer.checks(100.0, 42.0)  # written while disconnected
            proxy.cut()
            expected += await play(writer)
            await asyncio.wait_for(follower, timeout=30)
    finally:
        await proxy.stop()
    ids = [e.id for e in got if e.id]
    assert ids == expected
    assert proxy.connections >= 2
    assert got[-1].kind == "verdict"


async def test_a_stream_opened_after_the_end_replays_everything(
    http: aiohttp.ClientSession, kube: client.ApiClient, served: Served,
) -> None:
    await create(http)
    expected = await play(StatusWriter(kube, "demo", "podinfo-v2"))

    async def finished() -> bool:
        obj = served.state.deps.cache.get("demo/podinfo-v2") or {}
        return (obj.get("status") or {}).get("phase") == "Succeeded"

    await eventually(finished, timeout=10, what="Succeeded in the cache")
    async with http.get(EVENTS, headers=auth("read")) as resp:
        assert [m.id async for m in messages(resp) if m.id] == expected
    async with http.get(EVENTS, headers={**auth("read"), "Last-Event-ID": expected[-1]}) as r:
        assert [m.event async for m in messages(r)] == ["state"]


async def test_a_finished_rollout_ends_the_stream_whatever_the_last_event_id(
    http: aiohttp.ClientSession, kube: client.ApiClient, served: Served,
) -> None:
    await create(http)
    expected = await play(StatusWriter(kube, "demo", "podinfo-v2"))

    async def finished() -> bool:
        obj = served.state.deps.cache.get("demo/podinfo-v2") or {}
        return (obj.get("status") or {}).get("phase") == "Succeeded"

    await eventually(finished, timeout=10, what="Succeeded in the cache")
    # Past the end (the probe's case: that stream was never closed), or mid-way.
    for last, ids in (("999", [expected[-1]]), ("99.final", [expected[-1]]),
                      (expected[2], expected[3:])):
        async with http.get(EVENTS, headers={**auth("read"), "Last-Event-ID": last},
                            timeout=aiohttp.ClientTimeout(total=10)) as resp:
            got = [m async for m in messages(resp)]
        assert [m.id for m in got if m.id] == ids, last
        assert got[-1].event == "verdict"


async def test_a_status_claiming_a_huge_sequence_costs_its_size_not_that_number(
    http: aiohttp.ClientSession, kube: client.ApiClient, served: Served,
) -> None:
    """`sequence: 100000000`, as any client with status access can write: the stream says
    what is missing as one gap event (it used to list every missing number)."""
    await create(http)
    writer = StatusWriter(kube, "demo", "podinfo-v2")
    await writer.transition("Progressing", "step 1/2 at 20%", canary=20)
    writer.status["sequence"] = 100_000_000
    await writer.transition("Progressing", "step 2/2 at 50%", canary=50)

    async def cached() -> bool:
        obj = served.state.deps.cache.get("demo/podinfo-v2") or {}
        return (obj.get("status") or {}).get("sequence") == 100_000_001

    await eventually(cached, timeout=10, what="the sequence in the cache")
    async with http.get(EVENTS, headers=auth("read"),
                        timeout=aiohttp.ClientTimeout(total=10)) as resp:
        got = []
        async for m in messages(resp):
            got.append(m)
            if m.id == "100000001":
                break
    kinds = [m.event for m in got]
    assert kinds == ["state", "gap", "transition", "transition"]
    gap = json.loads(got[1].data)
    assert (gap["from"], gap["to"], gap["missing"]) == (2, 100_000_000, 99_999_999)


async def test_a_deleted_rollout_ends_its_stream(
    http: aiohttp.ClientSession, kube: client.ApiClient, served: Served,
) -> None:
    await create(http)

    async def cached() -> bool:
        return "demo/podinfo-v2" in served.state.deps.cache

    await eventually(cached, timeout=10, what="the rollout in the cache")
    async with http.get(EVENTS, headers=auth("read")) as resp:
        kinds = []
        async for m in messages(resp):
            kinds.append(m.event)
            if m.event == "state":
                await client.CustomObjectsApi(kube).delete_namespaced_custom_object(
                    GROUP, VERSION, "demo", PLURAL, "podinfo-v2")
    assert kinds == ["state", "deleted"]


async def test_streams_of_unknown_rollouts_and_bad_ids_are_refused(
    http: aiohttp.ClientSession,
) -> None:
    async with http.get(EVENTS, headers=auth("read")) as resp:
        assert resp.status == 404
    await create(http)
    # int() reads "1_0" as 10 and full-width digits as digits; ids this server issues
    # are ASCII digits only.
    for bad in ("x.y", "1_0", "\uff11\uff12", "1.2_0", "-1", "1e3", "9" * 40):
        async with http.get(EVENTS, headers={**auth("read"), "Last-Event-ID": bad}) as resp:
            assert resp.status == 400, bad
            problem = await resp.json(content_type=None)
            assert problem["errors"][0]["parameter"] == "Last-Event-ID"


async def test_stopping_the_server_ends_open_streams_at_once(
    http: aiohttp.ClientSession, served: Served,
) -> None:
    await create(http)
    async with http.get(EVENTS, headers=auth("read")) as resp:
        async for m in messages(resp):
            assert m.event == "state"
            break
        await served.app.shutdown()  # what runner.cleanup() starts with
        rest = await asyncio.wait_for(resp.content.read(), timeout=5)
    assert b"event:" not in rest


async def test_a_heartbeat_keeps_an_idle_stream_alive(
    http: aiohttp.ClientSession, served: Served,
) -> None:
    served.state.heartbeat = 0.05
    await create(http)
    async with http.get(EVENTS, headers=auth("read")) as resp:
        lines = []
        async for raw in resp.content:
            lines.append(raw)
            if raw.startswith(b": keep-alive"):
                break
    assert any(line.startswith(b": keep-alive") for line in lines)


# ---------------------------------------------------------------------------- pure parts


def _obj(status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"namespace": "demo", "name": "r"}, "status": status}


def test_event_ids_round_trip() -> None:
    for position in ((7, 0), (8, 2), (9, stream.FINAL)):
        assert stream.parse_id(stream.format_id(position)) == position
    assert stream.parse_id(None) is None and stream.parse_id(" ") is None


T = "2026-01-01T00:00:00Z"
PROGRESSING = {"phase": "Progressing", "weights": {"stable": 80, "canary": 20},
               "phaseStartedAt": T, "stepStartedAt": T}


def test_events_no_longer_kept_in_status_are_reported_as_a_gap() -> None:
    status = {**PROGRESSING, "sequence": 6, "history": [
        {"seq": 5, "time": T, "source": "Progressing", "phase": "Progressing",
         "trigger": "StepPassed", "reason": "r"}],
        "checks": [{"seq": 6, "metric": "m", "query": "q", "threshold": ">= 1",
                    "verdict": "Pass", "reason": "ok", "time": T, "step": 1}]}
    events = stream.events_after(_obj(status), None)
    assert [e.kind for e in events] == ["gap", "transition", "check"]
    assert events[0].data["missing"] == 4
    # status written before checks said `stepIndex` (`step`, 0-based) still reads
    assert (events[2].data["stepIndex"], events[2].data["stepNumber"]) == (1, 2)
    assert [e.kind for e in stream.events_after(_obj(status), (5, 0))] == ["check"]
    gap = stream.events_after(_obj({**status, "sequence": 10**12}), None)[0]
    assert (gap.data["from"], gap.data["to"], gap.data["missing"]) == (1, 10**12, 10**12 - 2)


def test_entries_that_cannot_be_placed_in_the_stream_are_skipped() -> None:
    status = {"phase": "Progressing", "sequence": "many", "history": [
        {"seq": "7", "time": "t"}, {"seq": -1}, "junk", {"seq": 2, "time": "t"}],
        "checks": [{"seq": True}, 5]}
    assert [e.id for e in stream.events_after(_obj(status), None)] == ["2"]
    assert [e.id for e in stream.events_after(_obj({"history": "x"}), None)] == []


def test_the_verdict_comes_once_the_phase_is_terminal() -> None:
    status = {"phase": "RolledBack", "sequence": 1, "reason": "analysis failed",
              "history": [{"seq": 1, "time": T, "source": "RollingBack",
                           "phase": "RolledBack", "trigger": "T", "reason": "x"}]}
    events = stream.events_after(_obj(status), None)
    assert [e.id for e in events] == ["1", "1.final"]
    assert events[-1].data["succeeded"] is False
    assert stream.done(_obj(status), (1, stream.FINAL))


def test_a_status_canaryd_cannot_read_shows_as_unknown_and_never_ends() -> None:
    for status in ({"phase": "Exploded", "history": [{"seq": 1}]},
                   {"phase": "Progressing", "stepIndex": "three"},
                   {**PROGRESSING, "reason": "x" * (1 << 20)}):
        obj = _obj(status)
        state = stream.snapshot(obj)
        assert state.data["phase"] == "Unknown" and state.data["reason"].startswith("status.")
        assert len(state.data["reason"]) < 1000
        assert not stream.done(obj, (1, stream.FINAL))
        assert all(e.kind != "verdict" for e in stream.events_after(obj, None))


def test_a_gap_is_counted_not_listed() -> None:
    status = {**PROGRESSING, "sequence": 2**50, "history": [
        {"seq": 2**50, "time": T, "source": "Progressing", "phase": "Progressing",
         "trigger": "StepPassed", "reason": "r"}]}
    gap, transition = stream.events_after(_obj(status), None)
    assert gap.data == {"from": 1, "to": 2**50 - 1, "missing": 2**50 - 1,
                        "detail": "older events are no longer kept in the rollout status"}
    assert transition.id == str(2**50)
