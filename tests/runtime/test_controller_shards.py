"""The controller's per-rollout gate with shards: a round drives only the rollouts of the
shards this replica may write for, picks the others up once it may, and a rollout that
shares a router object with an older one is decided by the older one's shard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

from canaryd.adapters.prometheus import PrometheusClient
from canaryd.core.settings import Settings
from canaryd.runtime.controller import Controller
from canaryd.runtime.metrics import DaemonMetrics
from canaryd.sandbox.apiserver import ApiServer
from canaryd.sandbox.testing import kube_client


def rollout(name: str, target: str, phase: str | None, created: str, rv: str = "3",
            **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "canaryd.io/v1alpha1", "kind": "Rollout",
        "metadata": {"namespace": "demo", "name": name, "resourceVersion": rv,
                     "creationTimestamp": created, "uid": name},
        "spec": {"target": target, "router": {"istio": {"virtualService": "shared",
                                                        "route": "primary"}}, **spec}}
    if phase is not None:
        obj["status"] = {"phase": phase}
    return obj


def controller(api: client.ApiClient, allowed: set[str]) -> Controller:
    return Controller(api=api, settings=Settings, metrics=DaemonMetrics(),
                      prometheus=PrometheusClient("http://127.0.0.1:9"), identity="r1",
                      may_write=lambda ns, target: target in allowed, sharded=True)


async def test_a_blocked_or_waiting_rollout_is_decided_by_the_older_ones_shard() -> None:
    api = client.ApiClient()
    try:
        blocked = controller(api, {"a"})
        blocked._informer.apply("ADDED", rollout("first", "a", "Pending",
                                                 "2026-01-01T00:00:00Z"))
        blocked._informer.apply("ADDED", rollout("alias", "b", "Pending",
                                                 "2026-01-01T00:00:05Z"))
        blocked._arbitrate()
        assert blocked.owner("demo/first") == ("demo", "a")
        assert blocked.owner("demo/alias") == ("demo", "a"), "blocked by first: its shard"
        assert blocked.may_write("demo/alias")

        waiting = controller(api, {"a"})
        waiting._informer.apply("ADDED", rollout("first", "a", "Pending",
                                                 "2026-01-01T00:00:00Z"))
        waiting._informer.apply("ADDED", rollout("taker", "c", "Pending",
                                                 "2026-01-01T00:00:09Z", supersede=True))
        waiting._arbitrate()
        assert waiting.owner("demo/first") == ("demo", "a"), "superseded: still its own"
        assert waiting.owner("demo/taker") == ("demo", "a"), "waits for first: its shard"
        # Once first is done, the newer one is its own target's again.
        waiting._informer.apply("MODIFIED", rollout("first", "a", "RolledBack",
                                                    "2026-01-01T00:00:00Z", rv="4"))
        waiting._arbitrate()
        assert waiting.owner("demo/taker") == ("demo", "c")
        assert not waiting.may_write("demo/taker")
    finally:
        await api.close()


async def test_a_round_leaves_other_shards_rollouts_alone_until_this_replica_may(
    tmp_path: Path,
) -> None:
    # The sandbox API server answers the round's reads at once (404: only the cache has
    # these objects).
    server = ApiServer()
    await server.start(host="127.0.0.1", port=0)
    allowed = {"mine"}
    async with kube_client(server, tmp_path) as api:
        try:
            await drive_two_rounds(controller(api, allowed), allowed)
        finally:
            await server.stop()


async def drive_two_rounds(c: Controller, allowed: set[str]) -> None:
    c._informer.apply("ADDED", rollout("r-mine", "mine", "Progressing",
                                       "2026-01-01T00:00:00Z",
                                       router={"istio": {"virtualService": "vs-mine"}}))
    c._informer.apply("ADDED", rollout("r-theirs", "theirs", "Progressing",
                                       "2026-01-01T00:00:00Z",
                                       router={"istio": {"virtualService": "vs-theirs"}}))
    await c.round()
    assert c._unowned == {"demo/r-theirs"}
    assert not c.queue.busy("demo/r-theirs")
    assert c.queue.soonest(30.0) > 0.0, "the other shard's rollout is not due here"
    allowed.add("theirs")  # this replica took that shard
    assert c.may_write("demo/r-theirs")
    await c.round()
    assert c._unowned == set(), "picked up in the first round it may write for it"
