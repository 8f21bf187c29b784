"""Hostile and careless input against the real `canaryd serve` process: figures for issues 18
and 19. Prints figures; asserts nothing (a shared machine is noisy).

Processes: the sandbox API server, `canaryd serve` (the daemon's own HTTP limits, not the
tests' small ones), a probe process that sends well-behaved requests at a fixed rate
(open-loop: latency runs from each request's scheduled start) and this one, which sends the
bad ones. Memory is the daemon's own (VmRSS/VmHWM of the serve process).

Scenarios (--scenarios, all by default):
  load     the probe's mix of bad requests (every finding of issue 18 that a request can
           make, on a connection each) at --bad-rps for --seconds, beside a GET probe at
           --get-rps (--get: the list by default, served from canaryd's own cache; a
           finished rollout's detail is read from the API server, whose latency it then
           measures): the GET's p99 unloaded and loaded, the daemon's RSS at the start,
           its peak and at the end, every status the bad requests got; --repeat rounds
           (the median p99 ratio is the figure on a shared machine).
  stalls   each bad kind sent back to back (one at a time) for --stall-seconds while the
           probe asks /healthz every 10 ms: the worst /healthz latency per kind (a loop
           stall shows here), against the same probe with nothing else before and after;
           and the daemon's CPU time per request of each kind (all its threads and its
           decode workers) and the serve process's alone (what can hold its event loop),
           which, unlike latency, do not depend on what else the machine runs.
  garbage  hand-written statuses at the probe's own numbers (sequence 100,000,000, phase
           42, 10^18 step numbers, an over-full history): the daemon's RSS before and its
           peak while they are read, listed and streamed (killed past 1 GiB, see
           tests/hostile/support.MemoryGuard).
  series   --rollouts Rollouts created then deleted (through the Kubernetes API):
           per-rollout series in /metrics before, with them, and after.
  crowd    --crowd Rollouts on one VirtualService with unreadable statuses (they stay
           active): /healthz latency while every controller round arbitrates among them.

    .venv/bin/python bench/hostile_bench.py [--scenarios load,stalls,garbage,series,crowd]
        [--decode processes,threads]
        [--bad-rps 200] [--seconds 20] [--get-rps 50] [--get PATH] [--repeat 3] [--stall-seconds 3]
        [--rollouts 1000] [--crowd 300] [--nice N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hostile.support import (  # noqa: E402 (after the path)
    TOKENS,
    Daemon,
    MemoryGuard,
    daemon_process,
    manifest,
    request,
    virtual_service,
)

NS = "demo"
ROLLOUTS = "/apis/canaryd.io/v1alpha1/namespaces/demo/rollouts"
SERVICES = "/apis/networking.istio.io/v1/namespaces/demo/virtualservices"
T = "2026-01-01T00:00:00Z"


def auth(role: str) -> bytes:
    return f"Authorization: Bearer {TOKENS[role]}\r\n".encode()


def _json(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


YAML = b"Content-Type: application/yaml\r\n"
JSON = b"Content-Type: application/json\r\n"
EVENTS = "/api/v1/rollouts/demo/target/events"


def _unknown_keys() -> bytes:
    body = manifest("keys")
    body["spec"].update({f"unknown{i}": 0 for i in range(20_000)})
    return _json(body)


def _generate_name() -> bytes:
    body = manifest("gen")
    body["metadata"] = {"namespace": NS, "generateName": "Bad_Prefix-"}
    return _json(body)


# kind -> (bytes sent, held: the request is left unfinished, as a slow client leaves it)
MIX: dict[str, tuple[bytes, bool]] = {
    "YAML nested 10,000 deep": (request("POST", "/api/v1/rollouts", auth("submit"), YAML,
                                        body=b"[" * 10_000 + b"]" * 10_000), False),
    "YAML flow sequence of 120,000 integers (240 KB)": (request(
        "POST", "/api/v1/rollouts", auth("submit"), YAML,
        body=b"spec: [" + b",".join([b"1"] * 120_000) + b"]"), False),
    "JSON nested 10,000 deep": (request("POST", "/api/v1/rollouts", auth("submit"), JSON,
                                        body=b"[" * 10_000 + b"]" * 10_000), False),
    "20,000 unknown keys (223 KB)": (request("POST", "/api/v1/rollouts", auth("submit"), JSON,
                                             body=_unknown_keys()), False),
    "Last-Event-ID 1_0": (request("GET", EVENTS, auth("read"), b"Last-Event-ID: 1_0\r\n"),
                          False),
    "Last-Event-ID full-width digits": (request(
        "GET", EVENTS, auth("read"), "Last-Event-ID: \uff11\uff12\r\n".encode()), False),
    "non-UTF-8 header": (request("GET", "/api/v1/whoami", b"X-Trace: \xc3\x28\r\n"), False),
    "?limit=%C2%B2": (request("GET", "/api/v1/rollouts?limit=%C2%B2", auth("read")), False),
    "?limit=99999999999999999999": (request(
        "GET", "/api/v1/rollouts?limit=99999999999999999999", auth("read")), False),
    "NUL in Authorization": (request("GET", "/api/v1/whoami", b"Authorization: Bearer "
                                     + TOKENS["admin"].encode() + b"\x00x\r\n"), False),
    "bad generateName": (request("POST", "/api/v1/rollouts", auth("submit"), JSON,
                                 body=_generate_name()), False),
    "DEL in spec.version": (request("POST", "/api/v1/rollouts", auth("submit"), JSON,
                                    body=_json(manifest("del", version="v1\x7f2"))), False),
    "no token": (request("GET", "/api/v1/rollouts"), False),
    "wrong token": (request("GET", "/api/v1/rollouts",
                            b"Authorization: Bearer wrong-token-0123456789abcdef\r\n"), False),
    "slow head (held)": (b"GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nX-Slow: ", True),
    "slow body (held)": (request("POST", "/api/v1/rollouts", auth("submit"), JSON,
                                 b"Content-Length: 100000\r\n") + b'{"a": ', True),
}


# ------------------------------------------------------------------ sending


async def send_bad(port: int, data: bytes, held: bool, statuses: dict[str, int]) -> None:
    """One bad request on its own connection; its status (or what became of it) counted."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        statuses["connect refused"] = statuses.get("connect refused", 0) + 1
        return
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(60):
            head = await reader.readuntil(b"\r\n\r\n") if not held else await reader.read()
        status = head.split(b" ", 2)[1].decode() if head.startswith(b"HTTP/") else "closed"
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        status = "cut"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    statuses[status] = statuses.get(status, 0) + 1


async def probe(url: str, path: str, role: str | None, rps: float,
                seconds: float) -> list[list[float]]:
    """[scheduled monotonic time, latency ms, status] for each request of a fixed-rate run."""
    headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
    out: list[list[float]] = []
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        start = loop.time() + 0.1
        print(json.dumps({"start": start}), flush=True)  # the first request's time

        async def one(i: int) -> None:
            scheduled = start + i / rps
            await asyncio.sleep(max(0.0, scheduled - loop.time()))
            try:
                async with http.get(url + path, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError):
                status = -1
            out.append([scheduled, (loop.time() - scheduled) * 1000, status])

        await asyncio.gather(*(one(i) for i in range(int(rps * seconds))))
    return out


class Probe:
    """The probe in a process of its own (this one's loop is busy sending bad requests)."""

    def __init__(self, url: str, path: str, role: str | None, rps: float, seconds: float):
        self.argv = [sys.executable, __file__, "--probe", json.dumps(
            [url, path, role, rps, seconds])]
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Probe:
        """Returns once the probe is about to send (at `self.start`, monotonic)."""
        self.proc = await asyncio.create_subprocess_exec(*self.argv,
                                                         stdout=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        self.start: float = json.loads(await self.proc.stdout.readline())["start"]
        return self

    async def result(self) -> list[list[float]]:
        assert self.proc is not None and self.proc.stdout is not None
        data: list[list[float]] = json.loads(await self.proc.stdout.read())
        await self.proc.wait()
        return data

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (the daemon's decode workers)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _own_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of the process (all its threads) and of its live child
    processes (the decode workers, whose work is the daemon's): unlike latency, what a
    request costs the daemon does not depend on what else the machine runs."""
    total = _own_cpu(pid)
    for child in children(pid):
        with contextlib.suppress(OSError):
            total += _own_cpu(child)
    return total


def workers_rss_mib(pid: int) -> float:
    """The decode workers' resident memory, MiB (0 while none has started)."""
    kib = 0
    for child in children(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kib += int(line.split()[1])
    return round(kib / 1024, 1)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summary(samples: list[list[float]]) -> dict[str, Any]:
    latencies = [s[1] for s in samples]
    statuses: dict[str, int] = {}
    for s in samples:
        statuses[str(int(s[2]))] = statuses.get(str(int(s[2])), 0) + 1
    return {"requests": len(samples), "p50_ms": round(pct(latencies, 0.5), 2),
            "p99_ms": round(pct(latencies, 0.99), 2), "max_ms": round(max(latencies), 2),
            "statuses": statuses}


def emit(figure: dict[str, Any]) -> None:
    print(json.dumps(figure), flush=True)


# ------------------------------------------------------------------ scenarios


async def target_rollout(daemon: Daemon) -> None:
    async with aiohttp.ClientSession() as http, http.post(
            f"{daemon.url}/api/v1/rollouts", json=manifest("target"),
            headers={"Authorization": f"Bearer {TOKENS['submit']}"}) as resp:
        assert resp.status == 201, await resp.text()


async def load(daemon: Daemon, args: argparse.Namespace) -> None:
    """--repeat rounds of (unloaded window, loaded window): on a shared machine, the median
    round says more than any one of them."""
    rounds = []
    for i in range(args.repeat):
        rounds.append(await load_round(daemon, args))
        emit({**rounds[-1], "round": i + 1})
    if len(rounds) > 1:
        emit({"scenario": "load summary", "rounds": len(rounds),
              "p99_ratio_median": statistics.median(r["p99_ratio"] for r in rounds),
              "p99_ratios": [r["p99_ratio"] for r in rounds],
              "bad_5xx": sum(r["bad_5xx"] for r in rounds),
              "rss_start_mib": rounds[0]["rss_start_mib"],
              "rss_peak_mib": max(r["rss_peak_mib"] for r in rounds),
              "rss_peak_over_first_start_mib": round(
                  max(r["rss_peak_mib"] for r in rounds) - rounds[0]["rss_start_mib"], 1)})


async def load_round(daemon: Daemon, args: argparse.Namespace) -> dict[str, Any]:
    get = (args.get, "read")
    async with Probe(daemon.url, *get, args.get_rps, args.seconds) as quiet:
        cpu = cpu_seconds(daemon.pid)
        unloaded = summary(await quiet.result())
        unloaded["daemon_cpu_percent"] = round(
            100 * (cpu_seconds(daemon.pid) - cpu) / args.seconds, 1)
    kinds = list(MIX.items())
    statuses: dict[str, int] = {}
    by_kind: dict[str, dict[str, int]] = {kind: {} for kind in MIX}
    total = int(args.bad_rps * args.seconds)
    loop = asyncio.get_running_loop()
    with MemoryGuard(daemon.pid, kill_mib=1024) as memory:
        async with Probe(daemon.url, *get, args.get_rps, args.seconds) as busy:
            start = busy.start  # the same clock: CLOCK_MONOTONIC
            sent: list[float] = []

            async def one(i: int) -> None:
                await asyncio.sleep(max(0.0, start + i / args.bad_rps - loop.time()))
                sent.append(loop.time())
                kind, (data, held) = kinds[i % len(kinds)]
                await send_bad(daemon.port, data, held, by_kind[kind])

            cpu = cpu_seconds(daemon.pid)
            sending = asyncio.gather(*(one(i) for i in range(total)))
            loaded = summary(await busy.result())
            loaded["daemon_cpu_percent"] = round(
                100 * (cpu_seconds(daemon.pid) - cpu) / args.seconds, 1)
            rss_at_end_of_window = memory.kib("VmRSS")
            await sending  # the held ones are cut by the daemon's timeouts
    for counts in by_kind.values():
        for status, n in counts.items():
            statuses[status] = statuses.get(status, 0) + n
    return {"scenario": "load", "get": args.get, "bad_requests": total,
          "bad_rps_target": args.bad_rps,
          "bad_rps_sent": round(len(sent) / (max(sent) - min(sent) + 1 / args.bad_rps), 1),
          "kinds": len(kinds),
          "bad_statuses": dict(sorted(statuses.items())),
          "bad_5xx": sum(n for s, n in statuses.items() if s.startswith("5")),
          "bad_5xx_by_kind": {k: {s: n for s, n in c.items() if s.startswith("5")}
                              for k, c in by_kind.items() if any(s[0] == "5" for s in c)},
          "get_unloaded": unloaded, "get_loaded": loaded,
          "p99_ratio": round(loaded["p99_ms"] / unloaded["p99_ms"], 2),
          "rss_start_mib": round(memory.start / 1024, 1),
          "rss_peak_mib": round(memory.peak / 1024, 1),
          "rss_end_of_window_mib": round(rss_at_end_of_window / 1024, 1),
          "rss_peak_over_start_mib": round(memory.grown_mib, 1),
          "decode_workers": len(children(daemon.pid)),
          "decode_workers_rss_mib": workers_rss_mib(daemon.pid)}


async def stalls(daemon: Daemon, args: argparse.Namespace) -> None:
    windows: list[tuple[str, float, float]] = []
    cpu: dict[str, float] = {}
    own: dict[str, float] = {}  # the serve process alone: what can hold its event loop
    statuses: dict[str, dict[str, int]] = {}
    seconds = args.stall_seconds * (len(MIX) + 1) + 2
    seconds += args.stall_seconds
    async with Probe(daemon.url, "/healthz", None, 100, seconds) as healthz:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, healthz.start - loop.time()))

        async def quiet(label: str) -> None:
            begin = time.monotonic()
            await asyncio.sleep(args.stall_seconds)
            windows.append((label, begin, time.monotonic()))

        await quiet("nothing else (before)")
        for kind, (data, held) in MIX.items():
            if held:
                continue  # held connections cost the loop nothing until they are cut
            counts = statuses.setdefault(kind, {})
            begin, cpu_before = time.monotonic(), cpu_seconds(daemon.pid)
            own_before = _own_cpu(daemon.pid)
            until = loop.time() + args.stall_seconds

            while loop.time() < until:
                await send_bad(daemon.port, data, False, counts)
            windows.append((kind, begin, time.monotonic()))
            cpu[kind] = cpu_seconds(daemon.pid) - cpu_before
            own[kind] = _own_cpu(daemon.pid) - own_before
        await quiet("nothing else (after)")
        samples = await healthz.result()
    for kind, begin, end in windows:
        inside = [s[1] for s in samples if begin <= s[0] < end]
        requests = sum(statuses.get(kind, {}).values())
        emit({"scenario": "stalls", "kind": kind, "healthz_probes": len(inside),
              "healthz_p50_ms": round(statistics.median(inside), 2) if inside else None,
              "healthz_p99_ms": round(pct(inside, 0.99), 2),
              "healthz_max_ms": round(max(inside), 2) if inside else None,
              "requests": requests or None, "statuses": statuses.get(kind),
              "daemon_cpu_ms_per_request": round(1000 * cpu[kind] / requests, 2)
              if requests else None,
              "serve_process_cpu_ms_per_request": round(1000 * own[kind] / requests, 2)
              if requests else None})


def _entry(seq: int) -> dict[str, Any]:
    return {"seq": seq, "time": T, "source": "Progressing", "phase": "Succeeded",
            "trigger": "TrafficConfirmed", "reason": "promoted"}


GARBAGE: dict[str, dict[str, Any]] = {
    "g-sequence": {"phase": "Succeeded", "sequence": 100_000_000, "reason": "done",
                   "history": [_entry(100_000_000)]},
    "g-phase-42": {"phase": 42, "sequence": 3},
    "g-numbers": {"phase": "Progressing", "stepIndex": 10**18, "sequence": 10**15,
                  "weights": {"stable": -5, "canary": 1000}, "stepCount": 10**18,
                  "phaseStartedAt": T, "stepStartedAt": T},
    "g-history": {"phase": "Succeeded", "sequence": 100_000_000,
                  "history": [_entry(i) for i in range(100_000_000 - 3999, 100_000_001)]},
}


async def garbage(daemon: Daemon, args: argparse.Namespace) -> None:
    submit = {"Authorization": f"Bearer {TOKENS['submit']}"}
    read = {"Authorization": f"Bearer {TOKENS['read']}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def phase(name: str) -> Any:
            async with http.get(f"{daemon.url}/api/v1/rollouts/demo/{name}",
                                headers=read) as resp:
                return ((await resp.json()).get("status") or {}).get("phase")

        async def until(name: str, accept: Callable[[Any], bool]) -> None:
            deadline = time.monotonic() + 30
            while not accept(await phase(name)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: never got there")
                await asyncio.sleep(0.1)

        for name in GARBAGE:
            async with http.post(f"{daemon.url}/api/v1/rollouts", json=manifest(name),
                                 headers=submit) as resp:
                assert resp.status == 201, await resp.text()
            await until(name, lambda p: p == "Failed")  # no VirtualService: left alone after
        began = time.monotonic()
        with MemoryGuard(daemon.pid, kill_mib=1024) as memory:
            for name, status in GARBAGE.items():
                async with http.patch(
                        f"{daemon.kube_url}{ROLLOUTS}/{name}/status",
                        data=_json([{"op": "replace", "path": "/status", "value": status}]),
                        headers={"Content-Type": "application/json-patch+json"}) as resp:
                    assert resp.status == 200, await resp.text()
            for name, status in GARBAGE.items():
                await until(name, lambda p, s=status: p == s["phase"])
            events = {}
            for name in GARBAGE:
                async with http.get(f"{daemon.url}/api/v1/rollouts/demo/{name}/events",
                                    headers={**read, "Last-Event-ID": "0"}) as resp:
                    body = b""
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(2):  # the unreadable ones never end
                            async for chunk in resp.content.iter_any():
                                body += chunk
                    events[name] = [line[7:] for line in body.decode().splitlines()
                                    if line.startswith("event: ")]
            async with http.get(f"{daemon.url}/api/v1/rollouts", headers=read) as resp:
                listed = resp.status
            async with http.get(f"{daemon.url}/readyz") as resp:
                readyz = (await resp.json())["checks"]["kubernetes"]
    emit({"scenario": "garbage", "objects": list(GARBAGE),
          "rss_before_mib": round(memory.start / 1024, 1),
          "rss_peak_mib": round(memory.peak / 1024, 1),
          "rss_peak_over_before_mib": round(memory.grown_mib, 1),
          "seconds": round(time.monotonic() - began, 1), "list_status": listed,
          "readyz_kubernetes": readyz,
          "event_kinds": {n: sorted(set(kinds)) for n, kinds in events.items()},
          "events_sent": {n: len(kinds) for n, kinds in events.items()}})


async def series(daemon: Daemon, args: argparse.Namespace) -> None:
    names = [f"s{i:04d}" for i in range(args.rollouts)]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def count() -> int:
            async with http.get(f"{daemon.url}/metrics") as resp:
                text = await resp.text()
            return sum(1 for line in text.splitlines()
                       if 'rollout="' in line and not line.startswith("#"))

        async def each(call: Callable[[str], Any]) -> None:
            sem = asyncio.Semaphore(16)

            async def one(name: str) -> None:
                async with sem, call(name) as resp:
                    assert resp.status < 300, await resp.text()

            await asyncio.gather(*(one(n) for n in names))

        async def settle(accept: Callable[[int], bool]) -> tuple[int, float]:
            began = time.monotonic()
            while not accept(value := await count()):
                if time.monotonic() - began > 120:
                    break
                await asyncio.sleep(0.5)
            return value, time.monotonic() - began

        before = await count()
        # Each on a VirtualService of its own, with no canary Deployment: they stay Pending
        # (active: canaryd_rollout_info and the like) until deleted.
        await each(lambda n: http.post(f"{daemon.kube_url}{SERVICES}",
                                       json=virtual_service(n)))
        await each(lambda n: http.post(f"{daemon.kube_url}{ROLLOUTS}",
                                       json=manifest(n)))
        during, took_up = await settle(lambda v: v >= before + len(names))
        await each(lambda n: http.delete(f"{daemon.kube_url}{ROLLOUTS}/{n}"))
        after, took_down = await settle(lambda v: v <= before)
    emit({"scenario": "series", "rollouts": len(names), "series_before": before,
          "series_with_rollouts": during, "series_after_deletion": after,
          "seconds_to_appear": round(took_up, 1), "seconds_to_go": round(took_down, 1)})


async def crowd(daemon: Daemon, args: argparse.Namespace) -> None:
    """--crowd Rollouts on one VirtualService, each with an unreadable status (phase 42:
    active, it keeps its claims), written straight to Kubernetes: every controller round
    arbitrates among them. /healthz at 50/s while they stand, once each is reported
    Degraded (steady state)."""
    names = [f"crowd{i:04d}" for i in range(args.crowd)]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:

        async def each(call: Callable[[str], Any]) -> None:
            sem = asyncio.Semaphore(16)

            async def one(name: str) -> None:
                async with sem, call(name) as resp:
                    assert resp.status < 300, await resp.text()

            await asyncio.gather(*(one(n) for n in names))

        def aliased(name: str) -> dict[str, Any]:
            body = manifest(name)
            body["spec"]["router"]["istio"]["virtualService"] = "crowd"
            return body

        began = time.monotonic()
        await each(lambda n: http.post(f"{daemon.kube_url}{ROLLOUTS}", json=aliased(n)))
        await each(lambda n: http.patch(
            f"{daemon.kube_url}{ROLLOUTS}/{n}/status",
            data=_json({"status": {"phase": 42, "sequence": 1}}),
            headers={"Content-Type": "application/merge-patch+json"}))
        written = time.monotonic() - began

        async def reported() -> int:  # each one's Degraded report written: steady state
            async with http.get(f"{daemon.url}/metrics") as resp:
                text = await resp.text()
            return sum(1 for line in text.splitlines()
                       if line.startswith("canaryd_rollout_degraded{") and "crowd" in line)

        while await reported() < args.crowd and time.monotonic() - began < 300:
            await asyncio.sleep(0.5)
        settled = time.monotonic() - began - written
        cpu = cpu_seconds(daemon.pid)
        async with Probe(daemon.url, "/healthz", None, 50, args.seconds) as healthz:
            samples = summary(await healthz.result())
        cpu_percent = round(100 * (cpu_seconds(daemon.pid) - cpu) / args.seconds, 1)
        await each(lambda n: http.delete(f"{daemon.kube_url}{ROLLOUTS}/{n}"))
    emit({"scenario": "crowd", "rollouts_on_one_route": args.crowd,
          "seconds_to_write": round(written, 1), "seconds_to_report": round(settled, 1),
          "healthz": samples,
          "daemon_cpu_percent": cpu_percent})


SCENARIOS = {"load": load, "stalls": stalls, "garbage": garbage, "series": series,
             "crowd": crowd}


# --decode: where the daemon decodes request bodies larger than 16 KiB (the default,
# "processes"), or all of them in threads as before ("threads").
DECODE_MODES = {"processes": {}, "threads": {"CANARYD_HTTP_DECODE_PROCESS_ABOVE": "10000000"}}


async def bench(args: argparse.Namespace) -> None:
    for mode in args.decode.split(","):
        emit({"decode": mode})
        await bench_one(args, DECODE_MODES[mode])


async def bench_one(args: argparse.Namespace, env: dict[str, str]) -> None:
    chosen = [SCENARIOS[s] for s in args.scenarios.split(",")]
    with tempfile.TemporaryDirectory(prefix="canaryd-hostile-bench-") as tmp, \
            daemon_process(Path(tmp), limits=None, env=env) as daemon:
        if args.nice is not None:  # this process, its probes (inherited) and the daemon
            for pid in (0, daemon.pid):
                os.setpriority(os.PRIO_PROCESS, pid, args.nice)
        await target_rollout(daemon)
        for scenario in chosen:
            await scenario(daemon, args)
            await asyncio.sleep(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--probe", help=argparse.SUPPRESS)
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--decode", default="processes",
                   help="comma-separated: processes (the default: bodies over 16 KiB decode "
                   "in worker processes), threads (all in threads, as before); each mode "
                   "runs the scenarios against a daemon of its own")
    p.add_argument("--bad-rps", type=float, default=200.0)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--get-rps", type=float, default=50.0)
    p.add_argument("--get", default="/api/v1/rollouts", help="what the probe GETs: the list "
                   "is served from canaryd's cache; a finished rollout's detail "
                   "(/api/v1/rollouts/demo/target) is read through the Kubernetes API server, "
                   "so its latency is mostly the API server's")
    p.add_argument("--repeat", type=int, default=3, help="rounds of the load scenario")
    p.add_argument("--stall-seconds", type=float, default=3.0)
    p.add_argument("--rollouts", type=int, default=1000)
    p.add_argument("--crowd", type=int, default=300)
    p.add_argument("--nice", type=int, help="run the daemon, the probes and the load at this "
                   "nice value (below 0: root), apart from what else a shared machine runs")
    args = p.parse_args()
    if args.probe:
        url, path, role, rps, seconds = json.loads(args.probe)
        print(json.dumps(asyncio.run(probe(url, path, role, rps, seconds))))
        return
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
