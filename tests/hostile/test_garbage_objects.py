"""Rollout statuses written by hand (any client with status access can: the CRD keeps the
status schema open), against the real `canaryd serve` process: each is read at the cost of
its size, whatever numbers it holds. The probe's `sequence: 100000000` took the daemon to
3.9 GB RSS (about 40 bytes per missing event: the stream listed them); `status.phase: 42`
stalled the controller.

The numbers are sized so that a path linear in them would show (BIG costs over 100 MiB at
40 bytes each, the test allows 48) and the daemon's memory is watched from a thread of this
process (MemoryGuard), which kills it long before it could hurt the machine."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from typing import Any

import aiohttp
import pytest

from canaryd.sandbox.testing import eventually
from tests.hostile.support import TOKENS, Daemon, MemoryGuard, manifest

T = "2026-01-01T00:00:00Z"
BIG = 3_000_000
ALLOWED_MIB = 48
READ = {"Authorization": f"Bearer {TOKENS['read']}"}


def entry(seq: int) -> dict[str, Any]:
    return {"seq": seq, "time": T, "source": "Progressing", "phase": "Succeeded",
            "trigger": "TrafficConfirmed", "reason": "promoted"}


# name -> (status written by hand, the phase canaryd shows, what the reason starts with)
GARBAGE: dict[str, tuple[dict[str, Any], str, str]] = {
    "huge-sequence": ({"phase": "Succeeded", "sequence": BIG, "reason": "done",
                       "history": [entry(BIG)]}, "Succeeded", "done"),
    "full-history": ({"phase": "Succeeded", "sequence": BIG, "reason": "done",
                      "history": [entry(i) for i in range(BIG - 999, BIG + 1)]},
                     "Succeeded", "done"),
    "over-history": ({"phase": "Succeeded", "sequence": BIG,
                      "history": [entry(i) for i in range(BIG - 3999, BIG + 1)]},
                     "Unknown", "status.history"),
    "phase-42": ({"phase": 42, "sequence": 3}, "Unknown", "status.phase: 42"),
    "huge-numbers": ({"phase": "Progressing", "stepIndex": 10**18, "sequence": 10**15,
                      "weights": {"stable": -5, "canary": 1000}, "stepCount": 10**18,
                      "phaseStartedAt": T, "stepStartedAt": T}, "Unknown", "status.stepIndex"),
    "garbage-entries": ({"phase": "Failed", "sequence": 2**62,
                         "history": [{"seq": "x"}, 5, {"seq": 2**62}, None],
                         "checks": "nope", "conditions": [1, "x"]}, "Unknown", "status."),
    "wrong-types": ({"phase": ["Succeeded"], "sequence": "100000000", "history": {"a": 1}},
                    "Unknown", "status.phase: ['Succeeded']"),
}


async def write_status(daemon: Daemon, name: str, status: dict[str, Any]) -> None:
    """`kubectl patch --subresource=status`, as the probe wrote them: all of it replaced."""
    kubectl = shutil.which("kubectl")
    assert kubectl is not None
    patch = daemon.kubeconfig.with_name(f"{name}-status.json")
    patch.write_text(json.dumps([{"op": "replace", "path": "/status", "value": status}]))
    proc = await asyncio.create_subprocess_exec(
        kubectl, "--kubeconfig", str(daemon.kubeconfig), "patch", "-n", "demo",
        f"rollout/{name}", "--subresource=status", "--type=json", "--patch-file", str(patch),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()


async def stream(http: aiohttp.ClientSession, name: str, *, ends: bool) -> list[dict[str, Any]]:
    """The events of one stream from its start: to its end for a finished rollout, up to
    the first event (the state) for the others, which never end."""
    events: list[dict[str, Any]] = []
    buffer = b""
    async with http.get(f"/api/v1/rollouts/demo/{name}/events",
                        headers={**READ, "Last-Event-ID": "0"}) as resp:
        assert resp.status == 200, await resp.text()
        async for chunk in resp.content.iter_any():
            buffer += chunk
            *blocks, buffer = buffer.split(b"\n\n")
            for block in blocks:
                kind = re.search(rb"^event: (\w+)$", block, re.M)
                data = re.search(rb"^data: (.*)$", block, re.M)
                if kind and data:
                    events.append({"event": kind.group(1).decode(),
                                   **json.loads(data.group(1))})
            if events and not ends:
                break
    return events


@pytest.mark.kubectl
async def test_hand_written_statuses_cost_their_size_not_their_numbers(daemon: Daemon) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed")
    async with aiohttp.ClientSession(base_url=daemon.url,
                                     timeout=aiohttp.ClientTimeout(total=60)) as http:
        for name in GARBAGE:
            async with http.post("/api/v1/rollouts", json=manifest(name), headers={
                    "Authorization": f"Bearer {TOKENS['submit']}"}) as resp:
                assert resp.status == 201, await resp.text()

        async def shown(name: str, phase: str) -> bool:
            async with http.get(f"/api/v1/rollouts/demo/{name}", headers=READ) as resp:
                assert resp.status == 200, await resp.text()
                body = await resp.json()
            return (body.get("status") or {}).get("phase", "Pending") == phase

        # Each fails at once (its VirtualService does not exist), and is left alone after.
        for name in GARBAGE:
            await eventually(lambda n=name: shown(n, "Failed"), timeout=20,  # type: ignore[misc]
                             what=f"{name} failed by the daemon")

        # From here on, what the daemon spends is what the garbage costs it.
        with MemoryGuard(daemon.pid, kill_mib=4 * ALLOWED_MIB) as memory:
            for name, (status, _, _) in GARBAGE.items():
                await write_status(daemon, name, status)
            for name, (status, _, _) in GARBAGE.items():
                await eventually(lambda n=name, p=status["phase"]: shown(n, p),  # type: ignore[misc]
                                 timeout=20, what=f"{name}'s status in the daemon's cache")
            streams = [await stream(http, name, ends=shown_phase != "Unknown")
                       for name, (_, shown_phase, _) in GARBAGE.items()]
            async with http.get("/api/v1/rollouts?limit=500", headers=READ) as resp:
                assert resp.status == 200, await resp.text()
                listed = {item["metadata"]["name"] for item in (await resp.json())["items"]}
            async with http.get("/healthz") as resp:
                assert resp.status == 200, await resp.text()
            async with http.get("/readyz") as resp:  # it stopped answering (no Prometheus here)
                assert (await resp.json())["checks"]["kubernetes"] == "ok"
    print(f"garbage objects: canaryd serve RSS {memory.start // 1024} MiB before, peak "
          f"{memory.peak // 1024} MiB (+{memory.grown_mib:.1f} MiB)")
    assert memory.grown_mib < ALLOWED_MIB, (memory.start, memory.peak)
    assert set(GARBAGE) <= listed

    for (name, (_, phase, reason)), events in zip(GARBAGE.items(), streams, strict=True):
        state = events[0]
        assert (state["event"], state["phase"]) == ("state", phase), (name, state)
        assert state["reason"].startswith(reason), (name, state["reason"])
        if phase == "Unknown":
            continue
        kinds = [e["event"] for e in events]
        kept = sum(1 for e in events if e["event"] == "transition")
        # Everything status no longer holds is one gap event, counted, never listed.
        assert kinds == ["state", "gap", *["transition"] * kept, "verdict"], (name, kinds)
        assert (events[1]["from"], events[1]["missing"]) == (1, BIG - kept), name
