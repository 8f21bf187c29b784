"""What the browser tests share: the processes (sandbox, `canaryd serve`), a hook receiver,
plain HTTP calls, and the chromium flags that keep the browser off the network."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "canaryd.yaml"
EXAMPLE = ROOT / "config" / "examples" / "canary.yaml"
ARTIFACTS = Path(os.environ.get("CANARYD_ARTIFACTS", ROOT / "build" / "artifacts")) / "ui"
TOKENS = {"read": "ui-read-token-5b1e0c7d9a", "submit": "ui-submit-token-3f9d2a61c4",
          "operate": "ui-operate-token-8c4b7e2f10", "elsewhere": "ui-elsewhere-token-d41c9b"}
# name, role and namespaces of each token (`elsewhere`: an operator of another namespace)
TOKEN_ENTRIES = [{"name": f"ui-{key}", "role": "operate" if key == "elsewhere" else key,
                  "token": token, **({"namespaces": ["other"]} if key == "elsewhere" else {})}
                 for key, token in TOKENS.items()]
# Keep the browser off the network: every name resolves to nothing but loopback, anything
# else would go to a proxy that is not there, and the background services are off.
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking", "--disable-sync",
    "--disable-component-update", "--disable-default-apps", "--disable-domain-reliability",
    "--disable-client-side-phishing-detection", "--metrics-recording-only", "--no-pings",
    "--disable-features=OptimizationHints,Translate,MediaRouter,AutofillServerCommunication",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>;127.0.0.1",
]
T = TypeVar("T")


def require() -> str:
    """The chromium binary; skip (fail in CI) without it, playwright or prometheus."""
    missing = []
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        missing.append("chromium is not installed (as root: apt-get install -y chromium, "
                       "or make chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package is not installed (pip install '.[test]')")
    if shutil.which("prometheus") is None:
        missing.append("prometheus is not installed (make prometheus)")
    if missing:
        if os.environ.get("CI"):
            pytest.fail("the browser tests need: " + "; ".join(missing))
        pytest.skip("; ".join(missing))
    assert chromium is not None
    return chromium


def until(probe: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """The first truthy result of `probe`, polled; AssertionError naming `what` at the end."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        last = probe()
        if last:
            return last  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")
        time.sleep(0.2)


def call(method: str, url: str, body: Any = None, *, token: str | None = None,
         content_type: str = "application/json") -> tuple[int, Any]:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310 (loopback)
            text = resp.read()
            return resp.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        text = exc.read()
        return exc.code, json.loads(text) if text else None


def read_line(proc: subprocess.Popen[bytes], timeout: float, what: str) -> dict[str, Any]:
    """The first JSON line `proc` prints, read in a thread so that the wait is bounded."""
    out: list[bytes] = []
    stdout = proc.stdout
    assert stdout is not None
    reader = threading.Thread(target=lambda: out.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not out or not out[0]:
        raise AssertionError(f"{what} did not say it was ready within {timeout}s "
                             f"(exit code {proc.poll()})")
    data: dict[str, Any] = json.loads(out[0])
    return data


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    """The sandbox, `canaryd serve` (restartable on its port) and the browser."""

    url: str
    kube_url: str
    tmp: Path
    serve_args: list[str]
    hook_url: str
    browser: Any = None
    serve: subprocess.Popen[bytes] | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[IO[bytes]] = field(default_factory=list)

    def start_serve(self) -> None:
        log = (self.tmp / "serve.log").open("ab")
        self.logs.append(log)
        self.serve = subprocess.Popen(self.serve_args, stdout=subprocess.PIPE, stderr=log,
                                      cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.procs.append(self.serve)
        ready = read_line(self.serve, 60, "canaryd serve")
        assert ready.get("url") == self.url, ready

    def stop_serve(self) -> None:
        assert self.serve is not None
        self.serve.send_signal(signal.SIGTERM)
        self.serve.wait(timeout=30)

    def api(self, method: str, path: str, body: Any = None, role: str = "operate"
            ) -> tuple[int, Any]:
        return call(method, self.url + path, body, token=TOKENS[role])

    def rollout(self, name: str) -> dict[str, Any]:
        status, body = self.api("GET", f"/api/v1/rollouts/demo/{name}", role="read")
        assert status == 200, body
        return dict(body)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()


@contextmanager
def hook_receiver(answer: dict[str, Any]) -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server answering every hook call 200 with `answer`; yields its URL
    and the paths it was called on."""
    calls: list[str] = []
    body = json.dumps(answer).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            calls.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", calls
    finally:
        server.shutdown()
        server.server_close()
