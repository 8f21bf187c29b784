"""Shared by the hooks tests: canaryd (its real API, with tokens) beside the sandbox, hooks
allowed to reach loopback (where the test's receiver listens), a secrets dir."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from kubernetes_asyncio import config

from canaryd.sandbox.runner import Sandbox
from tests.api.support import auth, tokens_yaml
from tests.e2e.fixtures import canaryd_running, sandbox
from tests.e2e.support import CONFIG, Kube
from tests.hooks.receiver import Receiver, receiver

__all__ = ["Hooked", "hook", "hook_settings", "hooked", "sandbox"]
SECRET = b"s3cr3t-for-hmac"


@dataclass
class Hooked:
    kube: Kube
    rec: Receiver
    url: str  # canaryd's API

    async def submit(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with aiohttp.ClientSession() as http, http.post(
                f"{self.url}/api/v1/rollouts", json=body, headers=auth("submit")) as resp:
            return resp.status, await resp.json(content_type=None)


def hook_settings(tmp_path: Path) -> Path:
    """The sandbox config, hooks allowed to loopback, a secrets dir with `hmac` in it."""
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "hmac").write_bytes(SECRET + b"\n")
    settings = yaml.safe_load(CONFIG.read_text())
    settings["hooks"] = {"secretsDir": str(secrets), "denyNetworks": []}
    path = tmp_path / "canaryd.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.fixture
async def hooked(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[Hooked]:
    """canaryd (its API with tokens) with hooks allowed to reach loopback (the receiver)
    and a secrets dir."""
    path = hook_settings(tmp_path)
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(tokens_yaml())
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    async with receiver() as rec:
        try:
            async with canaryd_running(sandbox, config=path, tokens_file=tokens) as daemon:
                assert daemon.url is not None
                yield Hooked(Kube(api), rec, daemon.url)
        finally:
            await api.close()


def hook(rec: Receiver, name: str, stage: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "stage": stage, "timeout": "5s",
            "webhook": {"url": f"{rec.url}/{name}", "secretFile": "hmac"}, **extra}


