"""`canaryd.embedded.for_sandbox`: the daemon `canaryd sandbox` runs, reachable with its admin
token."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator

import aiohttp
import pytest
import yaml

from canaryd.embedded import for_sandbox
from canaryd.sandbox.runner import Sandbox
from canaryd.sandbox.testing import eventually
from tests.api.support import EXAMPLE

pytestmark = pytest.mark.prometheus


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    if shutil.which("prometheus") is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is required in CI")
        pytest.skip("prometheus is not installed")
    async with Sandbox() as sb:
        yield sb


async def test_the_sandbox_daemon_serves_the_example_rollout_with_its_admin_token(
    sandbox: Sandbox,
) -> None:
    async with for_sandbox(sandbox) as served:
        assert served.url.startswith("http://127.0.0.1:")
        assert sandbox.workdir is not None
        tokens = sandbox.workdir / "canaryd-tokens.yaml"
        assert tokens.stat().st_mode & 0o077 == 0  # readable by its owner only
        headers = {"Authorization": f"Bearer {served.token}"}
        async with aiohttp.ClientSession(base_url=served.url,
                                         timeout=aiohttp.ClientTimeout(total=10)) as http:
            async with http.get("/api/v1/whoami", headers=headers) as resp:
                assert await resp.json() == {"name": "sandbox-admin", "role": "admin",
                                             "namespaces": "*"}
            body = yaml.safe_load(EXAMPLE.read_text())
            async with http.post("/api/v1/rollouts", json=body, headers=headers) as resp:
                assert resp.status == 201, await resp.text()

            async def progressing() -> bool:
                async with http.get("/api/v1/rollouts/demo/podinfo-v2",
                                    headers=headers) as resp:
                    status = (await resp.json()).get("status") or {}
                return status.get("phase") == "Progressing"

            # The controller leads (no election in the sandbox) and drives the rollout.
            await eventually(progressing, timeout=20, what="the example rollout to progress")
