"""`canaryd demo`'s releases (canaryd.commands.demo, what `canaryd demo` runs once its sandbox
and daemon are up): a healthy version promoted, then a faulty one rolled back, one after the
other on one target. The second starts from the steady state canaryd itself left: every
write to the VirtualService is one of canaryd's recorded weight changes, none is the demo's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import config

from canaryd.commands import demo
from canaryd.sandbox.runner import Sandbox
from tests.e2e.fixtures import canaryd_running
from tests.e2e.support import GROUP, NS, PLURAL, VERSION, Kube

pytestmark = [pytest.mark.prometheus, pytest.mark.emulator_only]  # the request log
WRITES = ("create", "update", "patch", "delete")


@pytest.fixture
async def demo_sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(rps=500) as sb:  # as `canaryd demo` starts it
        yield sb


def weight_changes(history: list[dict[str, Any]]) -> int:
    """How many router writes a rollout's history records, from 100/0."""
    writes, last = 0, {"stable": 100, "canary": 0}
    for entry in history:
        if entry.get("weights") not in (None, last):
            writes, last = writes + 1, entry["weights"]
    return writes


async def test_the_demo_runs_consecutive_releases_and_never_writes_the_router(
    demo_sandbox: Sandbox, capsys: pytest.CaptureFixture[str],
) -> None:
    sb = demo_sandbox
    assert sb.api_server is not None
    api = await config.new_client_from_config(config_file=str(sb.kubeconfig))
    kube = Kube(api)
    try:
        async with canaryd_running(sb) as daemon:
            await sb.wait_for_traffic(timeout=30)
            start = len(sb.api_server.requests)
            results = [await demo._scenario(api, daemon, scenario, i)
                       for i, scenario in enumerate(("healthy", "faulty"))]
        out = capsys.readouterr().out
        assert results == [True, True], out
        assert "== release 1, healthy: ghcr.io/stefanprodan/podinfo:6.8.0" in out
        assert "== verdict: Succeeded - as expected" in out
        assert "== release 2, faulty: ghcr.io/stefanprodan/podinfo:6.9.0" in out
        assert "== verdict: RolledBack - as expected" in out
        # Promotion handed 6.8.0 to stable; the rollback of 6.9.0 left it there.
        assert out.count("steady state: podinfo-stable runs "
                         "ghcr.io/stefanprodan/podinfo:6.8.0") == 2, out
        assert await kube.vs_weights() == {"stable": 100, "canary": 0}
        listed = await kube.custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)
        histories = {o["metadata"]["name"]: o["status"]["history"] for o in listed["items"]}
        assert set(histories) == {"podinfo-healthy-0", "podinfo-faulty-1"}
        recorded = sum(weight_changes(h) for h in histories.values())
        writes = [r for r in sb.api_server.requests[start:]
                  if r.resource == "virtualservices" and r.verb in WRITES and r.status < 300]
        assert recorded >= 5  # 10, 30, 60, 0; then 10, 0
        assert len(writes) == recorded, [(r.verb, r.status) for r in writes]
    finally:
        await api.close()
