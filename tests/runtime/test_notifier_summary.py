"""A finished rollout stays whole in the cache while a notice of it is owed (the notifier
reads its history and checks to tell of it), and is summarised once nothing is."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

from canaryd.adapters.kube import RolloutStore
from canaryd.core import reading
from canaryd.core.hooksettings import Notifications
from canaryd.core.settings import Settings
from canaryd.runtime.cache import RolloutCache
from canaryd.runtime.notifier import Notifier

FINISHED = json.loads(
    (Path(__file__).parents[2] / "bench/data/finished-rollouts.json").read_text())
ROLLED_BACK = FINISHED[1]  # its verdict's history entry is at 14:04:18Z, seq 8
AT = datetime(2026, 12, 2, 14, 4, 18, tzinfo=UTC)


def settings(namespaces: list[str] | None = None) -> Settings:
    route: dict[str, Any] = {"receivers": ["chat"], "events": ["rolledBack"]}
    if namespaces is not None:
        route["namespaces"] = namespaces
    return Settings(notifications=Notifications.model_validate({
        "receivers": [{"name": "chat", "kind": "slack", "urlFrom": {"env": "CHAT_URL"}}],
        "routes": [route], "backfill": "15m"}))


def finished(rv: str, notified: dict[str, int] | None = None) -> dict[str, Any]:
    obj = copy.deepcopy(ROLLED_BACK)
    obj["metadata"]["resourceVersion"] = rv
    obj["status"]["notified"] = notified or {}
    return obj


async def cache_with(conf: Settings, now: datetime) -> tuple[RolloutCache, Notifier]:
    cache = RolloutCache()
    api = client.ApiClient()
    await api.close()  # nothing here calls Kubernetes
    notifier = Notifier(settings=lambda: conf, cache=cache, store=RolloutStore(api),
                        may_write=lambda _key: False, clock=lambda: now)
    cache.keep_whole = notifier.owes
    return cache, notifier


async def test_kept_whole_until_the_verdict_is_told() -> None:
    cache, _ = await cache_with(settings(), AT + timedelta(minutes=1))
    key = cache.put(finished("10"))
    assert cache.whole(key), "the rolledBack notice is owed to chat"
    assert cache[key]["status"]["checks"], "the notice names the failing check"
    cache.put(finished("11", {"chat": 8}))  # the notifier's watermark write
    assert not cache.whole(key)


async def test_summarised_when_no_receiver_is_owed_anything() -> None:
    late, _ = await cache_with(settings(), AT + timedelta(minutes=16))
    assert not late.whole(late.put(finished("10"))), "older than backfill, never told"
    elsewhere, _ = await cache_with(settings(["prod"]), AT + timedelta(minutes=1))
    assert not elsewhere.whole(elsewhere.put(finished("10"))), "not routed to chat"


async def test_a_summary_is_looked_at_again_only_under_a_newer_configuration() -> None:
    now = AT + timedelta(minutes=1)
    conf = settings(["prod"])
    cache, notifier = await cache_with(conf, now)
    key = cache.put(finished("10"))
    assert not cache.whole(key)
    since = cache.summarised_at(key)
    assert since is not None
    notifier.sweep()  # the configuration it was summarised under: nothing to read
    assert not notifier._fetching
    read = reading.read_status(cache[key])  # the summary's notified and sequence
    assert read.status is not None and read.status.sequence == 8
    assert not notifier._maybe_owed(cache[key], read.status, conf.notifications)
    routed = settings()
    assert notifier._maybe_owed(cache[key], read.status, routed.notifications)
    notifier.settings = lambda: routed
    notifier._note(routed.notifications)
    assert since < notifier._judged_from, "summarised under the older configuration"
