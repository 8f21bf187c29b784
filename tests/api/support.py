"""Helpers for the API tests: tokens per role, manifests, status writes, a cuttable proxy."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from kubernetes_asyncio import client

from canaryd.client.sse import Decoder, Message

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "canaryd.yaml"
EXAMPLE = ROOT / "config" / "examples" / "canary.yaml"
ROLLOUT_CRD = ROOT / "canaryd" / "data" / "crds" / "canaryd-rollout.yaml"
GROUP, VERSION, PLURAL = "canaryd.io", "v1alpha1", "rollouts"
TOKENS = {role: f"{role}-token-0123456789abcdef" for role in ("read", "submit", "operate",
                                                                "admin")}


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def tokens_yaml() -> str:
    return yaml.safe_dump([{"name": f"ci-{role}", "role": role, "token": token}
                           for role, token in TOKENS.items()])


def manifest(name: str = "podinfo-v2", *, namespace: str = "demo", target: str = "podinfo",
             own: str | None = None, **spec: Any) -> dict[str, Any]:
    """The example Rollout; with `own`, on objects of its own (VirtualService `own`,
    Deployments `own-stable`/`own-canary`), so that it shares nothing with the example's."""
    body: dict[str, Any] = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    body["metadata"] = {"name": name, "namespace": namespace}
    body["spec"]["target"] = target
    if own is not None:
        body["spec"]["router"]["istio"]["virtualService"] = own
        body["spec"]["workloads"].update(stable=f"{own}-stable", canary=f"{own}-canary")
    body["spec"].update(spec)
    return body


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class StatusWriter:
    """Plays the controller's part: appends transitions and checks to a rollout's status,
    numbering them with status.sequence exactly as the state machine does."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace, self.name = namespace, name
        self.status: dict[str, Any] = {"phase": "Pending", "sequence": 0, "history": [],
                                       "checks": []}

    async def _write(self) -> None:
        await self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, PLURAL, self.name, {"status": self.status},
            _content_type="application/merge-patch+json", _request_timeout=10,
        )

    async def transition(self, phase: str, reason: str, canary: int | None = None) -> str:
        seq = self.status["sequence"] + 1
        entry: dict[str, Any] = {"seq": seq, "time": _now(), "source": self.status["phase"],
                                 "phase": phase, "trigger": "Test", "reason": reason}
        if canary is not None:
            entry["weights"] = {"stable": 100 - canary, "canary": canary}
            self.status["weights"] = entry["weights"]
        self.status.update(phase=phase, reason=reason, sequence=seq, phaseStartedAt=entry["time"],
                           history=[*self.status["history"], entry])
        if phase == "Progressing":
            self.status["stepStartedAt"] = entry["time"]
        await self._write()
        return str(seq)

    async def checks(self, *values: float, verdict: str = "Pass") -> list[str]:
        seq = self.status["sequence"] + 1
        new = [{"seq": seq, "metric": f"metric-{i}", "query": "vector(1)", "value": v,
                "threshold": ">= 99", "verdict": verdict, "reason": f"{v} vs >= 99",
                "time": _now(), "stepIndex": 0} for i, v in enumerate(values)]
        self.status.update(sequence=seq, checks=[*self.status["checks"], *new])
        await self._write()
        return [f"{seq}.{i + 1}" for i in range(len(values))]


class CuttableProxy:
    """A loopback TCP proxy whose live connections can be cut: a dropped stream, for real."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}"

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}

    def cut(self) -> None:
        for w in list(self._writers):
            w.transport.abort()

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def messages(resp: aiohttp.ClientResponse) -> AsyncIterator[Message]:
    """The server-sent events of a streaming answer, decoded as the CLI decodes them."""
    decoder = Decoder()
    async for raw in resp.content:
        message = decoder.feed(raw.decode().rstrip("\r\n"))
        if message is not None:
            yield message
