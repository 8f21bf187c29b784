"""Several `canaryd serve` processes against one sandbox, each seen through its own door.

`Door` is a second HTTP entrance to the sandbox API server: the same `Api` object serves
the request (so it lands in `ApiServer.requests` too), and the door records which client
made it and when, on the test process's monotonic clock. One door per replica tells the
replicas' requests apart without trusting anything the replicas say about themselves.

Used by tests/ha, tests/deploy (RBAC) and bench/failover_bench.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from canaryd.sandbox.apiserver import ApiServer
from canaryd.sandbox.apiserver.errors import ApiError
from canaryd.sandbox.apiserver.handlers import json_response
from canaryd.sandbox.apiserver.server import TOKEN
from canaryd.sandbox.testing import eventually

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "canaryd.yaml"
EXAMPLE = ROOT / "config" / "examples" / "canary.yaml"
GROUP, VERSION, PLURAL = "canaryd.io", "v1alpha1", "rollouts"
NS = "demo"
TERMINAL = {"Succeeded", "RolledBack", "Failed", "Aborted"}
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
# Short lease timings for tests: lease 2 s, renew deadline 1.5 s, retry 0.3 s.
FAST_LEASE = {"lease_duration": 2.0, "renew_deadline": 1.5, "retry_period": 0.3}


@dataclass(frozen=True)
class Call:
    client: str
    verb: str
    group: str
    resource: str
    subresource: str
    namespace: str
    name: str
    status: int
    started: float
    finished: float

    @property
    def landed(self) -> bool:
        return self.verb in WRITE_VERBS and 200 <= self.status < 300


class Door:
    """An audited entrance to `server` for one client; writes a kubeconfig pointing at it."""

    def __init__(self, server: ApiServer, client_name: str, calls: list[Call]) -> None:
        self.server = server
        self.client = client_name
        self.calls = calls
        self.url = ""
        self.non_resource: list[str] = []  # paths outside /api, /apis (discovery, ...)
        # Called with (verb, resource) as each resource request arrives.
        self.on_request: Callable[[str, str], None] | None = None
        # Resources this door answers with 503 itself: an outage only this client sees.
        self.unavailable: set[str] = set()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                     shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def write_kubeconfig(self, path: Path) -> Path:
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "door", "cluster": {"server": self.url}}],
            "users": [{"name": self.client, "user": {"token": TOKEN}}],
            "contexts": [{"name": "door", "context": {"cluster": "door", "user": self.client,
                                                      "namespace": "default"}}],
            "current-context": "door",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return path

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        api = self.server.api
        segs = [s for s in request.path.split("/") if s]
        target = api.parse(segs) if segs and segs[0] in ("api", "apis") else None
        verb = api.verb(request, target) if target is not None else ""
        if target is None:
            self.non_resource.append(f"{request.method} {request.path}")
        started = time.monotonic()
        status = 500

        def record() -> None:
            if target is not None:
                self.calls.append(Call(
                    client=self.client, verb=verb, group=target.group,
                    resource=target.rdef.plural, subresource=target.subresource or "",
                    namespace=target.namespace or "", name=target.name or "", status=status,
                    started=started, finished=time.monotonic(),
                ))

        if target is not None and self.on_request is not None:
            self.on_request(verb, target.rdef.plural)
        if verb == "watch":
            # A watch streams for minutes and answers 200 even to end in an ERROR event:
            # recorded when it starts.
            status = 200
            record()
        try:
            if target is not None and target.rdef.plural in self.unavailable:
                raise ApiError(503, f"injected outage for {self.client}")
            resp = await api.handle(request)
            status = resp.status
            return resp
        except ApiError as exc:
            status = exc.code
            return json_response(exc.status(), exc.code, exc.headers)
        finally:
            if verb != "watch":
                record()


# ---------------------------------------------------------------------- replicas


@dataclass
class Replica:
    """One `canaryd serve` process, reaching the API server through its own door."""

    name: str
    door: Door | None  # None: straight to the API server (a real one), nothing recorded
    kubeconfig: Path
    log_path: Path
    argv: list[str]
    proc: asyncio.subprocess.Process | None = None
    url: str = ""
    started_at: float = 0.0
    exited_at: float | None = None
    _log: Any = None
    _reader: asyncio.Task[None] | None = None

    async def start(self, *, timeout: float = 30) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in wait_exit/kill)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CANARYD_")}
        env.update(PYTHONUNBUFFERED="1", CANARYD_LOG_LEVEL="info")
        self.started_at = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdout=asyncio.subprocess.PIPE, stderr=self._log, env=env,
        )
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = await self.proc.stdout.readline()
                    if not line:
                        raise AssertionError(f"{self.name} exited before it was ready; "
                                             f"see {self.log_path}")
                    with contextlib.suppress(ValueError):
                        event = json.loads(line)
                        if event.get("event") == "ready":
                            self.url = str(event["url"])
                            break
        except BaseException:
            await self.kill()
            raise
        self._reader = asyncio.create_task(self._drain(self.proc.stdout))

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        while await stream.readline():
            pass

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), timeout=timeout)
        self.exited_at = time.monotonic()
        await self._close()
        return code

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)  # a stopped process cannot die otherwise
                self.proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), timeout=10)
        await self._close()

    async def _close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        if self._log is not None:
            self._log.close()
            self._log = None

    async def metric(self, name: str) -> float | None:
        """One sample of this replica's /metrics, or None when unreachable."""
        try:
            timeout = aiohttp.ClientTimeout(total=2)
            async with aiohttp.ClientSession(timeout=timeout) as session, \
                    session.get(f"{self.url}/metrics") as resp:
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError):
            return None
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def calls(self) -> list[Call]:
        if self.door is None:
            return []
        return [c for c in self.door.calls if c.client == self.name]


@dataclass
class Cluster:
    """Replicas of canaryd against one API server, sharing one Lease: through an audited
    door to the emulator `server`, or (`kubeconfig`) straight to a real API server."""

    server: ApiServer | None
    workdir: Path
    prometheus_url: str
    lease_name: str = "canaryd-leader"
    lease_namespace: str = "default"
    timing: dict[str, float] = field(default_factory=lambda: dict(FAST_LEASE))
    extra_args: list[str] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    replicas: dict[str, Replica] = field(default_factory=dict)
    kubeconfig: Path | None = None

    async def add(self, name: str) -> Replica:
        door: Door | None = None
        if self.kubeconfig is not None:
            kubeconfig = self.kubeconfig
        else:
            assert self.server is not None
            door = Door(self.server, name, self.calls)
            await door.start()
            kubeconfig = door.write_kubeconfig(self.workdir / f"kubeconfig-{name}")
        argv = [
            sys.executable, "-m", "canaryd", "serve",
            "--kubeconfig", str(kubeconfig), "--prometheus-url", self.prometheus_url,
            "--config", str(CONFIG), "--host", "127.0.0.1", "--port", "0",
            "--identity", name, "--lease-namespace", self.lease_namespace,
            "--lease-name", self.lease_name,
            "--lease-duration", str(self.timing["lease_duration"]),
            "--renew-deadline", str(self.timing["renew_deadline"]),
            "--retry-period", str(self.timing["retry_period"]),
            *self.extra_args,
        ]
        replica = Replica(name=name, door=door, kubeconfig=kubeconfig,
                          log_path=self.workdir / f"{name}.log", argv=argv)
        self.replicas[name] = replica
        await replica.start()
        return replica

    async def start(self, *names: str) -> list[Replica]:
        return list(await asyncio.gather(*(self.add(n) for n in names)))

    async def close(self) -> None:
        for replica in self.replicas.values():
            await replica.kill()
            if replica.door is not None:
                await replica.door.stop()

    def logs(self) -> str:
        out = []
        for replica in self.replicas.values():
            with contextlib.suppress(OSError):
                tail = replica.log_path.read_text(errors="replace").splitlines()[-40:]
                out.append(f"--- {replica.name} ---\n" + "\n".join(tail))
        return "\n".join(out)


# ---------------------------------------------------------------------- observing the cluster


@dataclass(frozen=True)
class Holding:
    holder: str
    transitions: int
    seen_at: float


class LeaseWatch:
    """Polls the Lease (every 20 ms) and keeps each change of holder with when it was seen."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.name = name
        self.history: list[Holding] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LeaseWatch:
        self._task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(ApiException, aiohttp.ClientError, TimeoutError):
                lease = await self.custom.get_namespaced_custom_object(
                    "coordination.k8s.io", "v1", self.namespace, "leases", self.name,
                    _request_timeout=2,
                )
                spec = lease.get("spec") or {}
                holder = str(spec.get("holderIdentity") or "")
                if not self.history or self.history[-1].holder != holder:
                    self.history.append(Holding(holder, int(spec.get("leaseTransitions") or 0),
                                                time.monotonic()))
            await asyncio.sleep(0.02)

    @property
    def holder(self) -> str:
        return self.history[-1].holder if self.history else ""

    async def wait_holder(self, accept: Callable[[str], bool], *, timeout: float,
                          what: str) -> Holding:
        async def probe() -> Holding | None:
            if self.history and accept(self.history[-1].holder):
                return self.history[-1]
            return None

        return await eventually(probe, timeout=timeout, what=what, every=0.01)


# ---------------------------------------------------------------------- rollouts


def rollout_manifest(name: str = "podinfo-v2") -> dict[str, Any]:
    """config/examples/canary.yaml (three steps, profile sandbox, 5 s analysis interval)."""
    body: dict[str, Any] = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    body["metadata"]["name"] = name
    return body


class Rollouts:
    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)

    async def create(self, body: dict[str, Any]) -> None:
        await self.custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)

    async def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.custom.get_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, name, _request_timeout=5
        )
        return result

    async def status(self, name: str) -> dict[str, Any]:
        return (await self.get(name)).get("status") or {}

    async def act(self, name: str, action: str) -> None:
        await self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, name,
            {"metadata": {"annotations": {"canaryd.io/action": action}}},
            _content_type="application/merge-patch+json",
        )

    async def wait(self, name: str, accept: Callable[[dict[str, Any]], bool], *,
                   timeout: float, what: str) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            status = await self.status(name)
            return status if accept(status) else None

        return await eventually(probe, timeout=timeout, what=what, every=0.1)

    async def wait_phase(self, name: str, phases: set[str], timeout: float = 90) -> dict[str, Any]:
        return await self.wait(name, lambda s: s.get("phase") in phases, timeout=timeout,
                               what=f"{name} in {sorted(phases)}")


def expected_triggers(steps: int) -> list[str]:
    """The transition triggers of a healthy canary with `steps` steps, each exactly once."""
    return ["CanaryReady", *["StepPassed"] * (steps - 1), "AllStepsPassed", "StableUpdated",
            "TrafficConfirmed"]


def assert_history_single(status: dict[str, Any], steps: int, *, held: bool = False) -> None:
    """Every transition happened once, in order: no step doubled, none skipped (`held`:
    besides one pause and resume by the operator)."""
    history = status.get("history") or []
    if held:
        history = [h for h in history if h["trigger"] not in ("PauseRequested", "ResumeRequested")]
    seqs = [h["seq"] for h in history]  # analysis runs take sequence numbers too
    assert seqs == sorted(set(seqs)), f"sequence numbers repeat or go back: {seqs}"
    triggers = [h["trigger"] for h in history]
    assert triggers == expected_triggers(steps), triggers
    weights = [h["weights"]["canary"] for h in history]
    stepped = weights[:steps]
    assert stepped == sorted(set(stepped)), f"a step repeated or went backwards: {weights}"
    # Promotion holds the last step's weight until stable runs the new version, then all
    # traffic goes back to stable.
    assert weights[steps:] == [stepped[-1], 0, 0], f"not handed back to stable: {weights}"
