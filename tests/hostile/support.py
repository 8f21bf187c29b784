"""The real `canaryd serve` process against the sandbox API server process, and a raw HTTP
client that sends exactly the bytes a test gives it (aiohttp's client would refuse most of
what these tests send)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "canaryd.yaml"
CRD = ROOT / "canaryd" / "data" / "crds" / "canaryd-rollout.yaml"
VS_CRD = ROOT / "canaryd" / "data" / "crds" / "istio-virtualservice.yaml"
EXAMPLE = ROOT / "config" / "examples" / "canary.yaml"
TOKENS = {role: f"{role}-hostile-token-7f3a9c2e51" for role in
          ("read", "submit", "operate", "admin")}
# Small bounds, so that tests reach them with a few connections and within a second.
LIMITS = {"HEADER_TIMEOUT": "1", "BODY_TIMEOUT": "1", "MAX_CONNECTIONS": "48",
          "MAX_STREAMS": "7", "MAX_STREAMS_PER_TOKEN": "2"}


def auth(role: str = "admin") -> bytes:
    return f"Authorization: Bearer {TOKENS[role]}\r\n".encode()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after answering

    def json(self) -> Any:
        return json.loads(self.body)


_STATUS = re.compile(rb"^HTTP/1\.[01] (\d{3})")


async def exchange(port: int, data: bytes, *, wait: float = 10.0) -> Answer:
    """Send `data` on a new connection; read one response (Content-Length framed, or up to
    close) within `wait` seconds."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(wait):
            return await read_answer(reader)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    head = await reader.readuntil(b"\r\n\r\n")
    match = _STATUS.match(head)
    assert match is not None, head[:200]
    headers: dict[str, str] = {}
    for line in head.split(b"\r\n")[1:]:
        if b":" in line:
            name, _, value = line.partition(b":")
            headers[name.decode().lower()] = value.strip().decode("latin-1")
    length = headers.get("content-length")
    if length is not None:
        body = await reader.readexactly(int(length))
    else:
        body = await reader.read()
    closed = headers.get("connection", "").lower() == "close" or reader.at_eof()
    return Answer(int(match.group(1)), headers, body, closed)


def request(method: str, target: str, *headers: bytes, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1\r\n".encode(), b"Host: canaryd\r\n", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}\r\n".encode())
    return b"".join(lines) + b"\r\n" + body


def manifest(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"] = {"name": name, "namespace": "demo"}
    body["spec"]["target"] = name
    body["spec"]["router"]["istio"]["virtualService"] = name
    body["spec"]["workloads"].update(stable=f"{name}-stable", canary=f"{name}-canary")
    body["spec"].update(spec)
    return body


def virtual_service(name: str) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "demo"},
            "spec": {"hosts": [name], "http": [{"name": "primary", "route": [
                {"destination": {"host": "podinfo", "subset": "stable"}, "weight": 100},
                {"destination": {"host": "podinfo", "subset": "canary"}, "weight": 0}]}]}}


def deployment(name: str, *, unavailable: bool) -> dict[str, Any]:
    labels = {"app": name}
    annotations = {"sandbox.canaryd.io/unavailable": "true"} if unavailable else {}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "demo", "annotations": annotations},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                         {"name": "app", "image": "ghcr.io/stefanprodan/podinfo:6.4.0"}]}}}}


async def pending_rollout(daemon: Daemon, name: str) -> None:
    """A rollout that stays Pending: its router is at 100/0 and both Deployments exist (a
    release starts only from that steady state), but the stable never becomes available, so
    it waits for it (readyTimeout, 300 s) and streams stay open."""
    async with aiohttp.ClientSession() as http:
        async with http.post(
                f"{daemon.kube_url}/apis/networking.istio.io/v1/namespaces/demo/"
                "virtualservices", json=virtual_service(name)) as resp:
            assert resp.status == 201, await resp.text()
        for role in ("stable", "canary"):
            async with http.post(
                    f"{daemon.kube_url}/apis/apps/v1/namespaces/demo/deployments",
                    json=deployment(f"{name}-{role}", unavailable=role == "stable")) as resp:
                assert resp.status == 201, await resp.text()
        async with http.post(f"{daemon.url}/api/v1/rollouts", json=manifest(name),
                             headers={"Authorization": f"Bearer {TOKENS['submit']}"}) as resp:
            assert resp.status == 201, await resp.text()


@dataclass
class Daemon:
    url: str
    port: int
    pid: int
    log: Path
    kube_url: str
    kubeconfig: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


class MemoryGuard:
    """Watches a process's memory from a thread of this one. Its peak RSS over the block is
    VmHWM, reset on entry (and sampled every 10 ms where the kernel cannot reset it). Should
    it grow by more than `kill_mib`, it is SIGKILLed at once; its address space is capped
    meanwhile (4 GiB above its size), should this thread ever fall behind: a regression
    fails the test, never the machine."""

    def __init__(self, pid: int, *, kill_mib: int) -> None:
        self.pid, self.kill_kib = pid, kill_mib * 1024
        self.start = self.peak = 0
        self.killed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._limit: tuple[int, int] | None = None
        self._reset = False

    def kib(self, field: str) -> int:
        text = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(rf"{field}:\s+(\d+)", text).group(1))  # type: ignore[union-attr]

    def __enter__(self) -> MemoryGuard:
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
            self._reset = True
        self.start = self.peak = self.kib("VmRSS")
        with contextlib.suppress(OSError):
            self._limit = resource.prlimit(self.pid, resource.RLIMIT_AS)
            cap = (self.kib("VmSize") + 4 * 1024 * 1024) * 1024
            hard = self._limit[1]
            resource.prlimit(self.pid, resource.RLIMIT_AS,
                             (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            try:
                rss = self.kib("VmRSS")
            except (OSError, AttributeError):
                return  # gone
            self.peak = max(self.peak, rss)
            if rss - self.start > self.kill_kib:
                os.kill(self.pid, signal.SIGKILL)
                self.killed = True
                return

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(OSError, AttributeError):
            if self._reset:
                self.peak = max(self.peak, self.kib("VmHWM"))
            if self._limit is not None:
                resource.prlimit(self.pid, resource.RLIMIT_AS, self._limit)
        if self.killed:
            raise AssertionError(f"process {self.pid} grew by {self.grown_mib:.0f} MiB (over "
                                 f"{self.kill_kib // 1024}): killed")

    @property
    def grown_mib(self) -> float:
        return (self.peak - self.start) / 1024


def _call(url: str, body: dict[str, Any] | None = None) -> int:
    req = urllib.request.Request(  # noqa: S310 (a loopback http URL)
        url, data=json.dumps(body).encode() if body is not None else None,
        method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _served(url: str, deadline: float) -> None:
    while _call(url) != 200:
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} not served")
        time.sleep(0.05)


def _ready_line(proc: subprocess.Popen[bytes], deadline: float) -> dict[str, Any]:
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), True)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"process exited ({proc.poll()}) before it was ready")
        with contextlib.suppress(ValueError):
            data: dict[str, Any] = json.loads(line)
            return data
    raise AssertionError("process not ready in time")


@contextlib.contextmanager
def daemon_process(tmp: Path, *, env: dict[str, str] | None = None,
                   limits: dict[str, str] | None = LIMITS) -> Iterator[Daemon]:
    """The sandbox API server and `canaryd serve` as processes, stopped on exit. `limits`:
    CANARYD_HTTP_* bounds (small ones by default; None for the daemon's own defaults)."""
    kubeconfig = tmp / "kubeconfig"
    api = subprocess.Popen(
        [sys.executable, "-m", "canaryd.sandbox.apiserver", "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE, cwd=ROOT)
    procs = [api]
    try:
        kube_url = _ready_line(api, time.monotonic() + 20)["kube_api_url"]
        for crd in (CRD, VS_CRD):
            _call(f"{kube_url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                  yaml.safe_load(crd.read_text()))
        _call(f"{kube_url}/api/v1/namespaces", {"metadata": {"name": "demo"}})
        for path in ("canaryd.io/v1alpha1/rollouts", "networking.istio.io/v1/virtualservices"):
            _served(f"{kube_url}/apis/{path}", time.monotonic() + 20)
        tokens = tmp / "tokens.yaml"
        tokens.write_text(yaml.safe_dump([
            {"name": f"hostile-{role}", "role": role, "token": token}
            for role, token in TOKENS.items()]))
        log = tmp / "canaryd.log"
        with log.open("wb") as stderr:
            serve = subprocess.Popen(
                [sys.executable, "-m", "canaryd", "serve", "--config", str(CONFIG),
                 "--kubeconfig", str(kubeconfig), "--host", "127.0.0.1", "--port", "0",
                 "--tokens-file", str(tokens), "--no-leader-elect", "--identity", "hostile",
                 "--prometheus-url", "http://127.0.0.1:9", "--log-level", "info"],
                stdout=subprocess.PIPE, stderr=stderr, cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT),
                     **{f"CANARYD_HTTP_{k}": v for k, v in (limits or {}).items()}, **(env or {})})
        procs.append(serve)
        url = _ready_line(serve, time.monotonic() + 30)["url"]
        yield Daemon(url=url, port=int(url.rsplit(":", 1)[1]), pid=serve.pid, log=log,
                     kube_url=kube_url, kubeconfig=kubeconfig)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
