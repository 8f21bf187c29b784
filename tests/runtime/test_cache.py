"""The cache's per-resourceVersion memos: a changed object is read and arbitrated afresh."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from canaryd.core import reading, summary
from canaryd.core.model import Phase, RolloutStatus
from canaryd.runtime.cache import RolloutCache


def _obj(rv: str, canary: str, phase: str | None) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "demo", "name": "r1", "resourceVersion": rv,
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"target": "app", "workloads": {"stable": "app-stable", "canary": canary}},
        "status": {"phase": phase} if phase else {},
    }


def test_entry_follows_the_resource_version() -> None:
    cache = RolloutCache()
    first = _obj("1", "app-canary", None)
    cache.put(first)
    entry = cache.entry(first)
    assert entry == reading.entry(first)
    assert cache.entry(cache["demo/r1"]) is entry  # the same version: remembered

    second = _obj("2", "app-next", "Aborted")
    cache.put(second)
    fresh = cache.entry(second)
    assert fresh == reading.entry(second)
    assert fresh.phase is Phase.ABORTED and not fresh.active
    assert "app-next" in {c.name for c in fresh.claims}


def test_a_dropped_object_is_not_remembered() -> None:
    cache = RolloutCache()
    obj = _obj("1", "app-canary", None)
    cache.put(obj)
    cache.entry(obj)
    cache.drop("demo/r1")
    other = _obj("1", "app-other", None)  # same key and version, a new object
    cache.put(other)
    assert "app-other" in {c.name for c in cache.entry(other).claims}


def test_managed_fields_are_not_kept() -> None:
    cache = RolloutCache()
    obj = _obj("1", "app-canary", None)
    obj["metadata"]["managedFields"] = [{"manager": "kubectl", "operation": "Update"}]
    cache.put(obj)
    kept = cache["demo/r1"]
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["resourceVersion"] == "1" and kept["spec"] == obj["spec"]


# ---------------------------------------------------------------------------- summaries

FINISHED = json.loads(
    (Path(__file__).parents[2] / "bench/data/finished-rollouts.json").read_text())


def _finished(rv: str = "10") -> dict[str, Any]:
    obj = copy.deepcopy(FINISHED[1])  # RolledBack, as the sandbox wrote it
    obj["metadata"]["resourceVersion"] = rv
    return obj


def test_a_finished_rollout_is_cached_as_its_summary() -> None:
    cache = RolloutCache()
    obj = _finished()
    key = cache.put(obj)
    assert not cache.whole(key) and cache.summarised() == 1
    assert cache[key] == summary.summary(obj)
    read = cache.read(cache[key])
    assert read.label == "RolledBack" and read.terminal and not read.active
    assert read.status == RolloutStatus(phase=Phase.ROLLED_BACK), "its phase only"
    assert cache.read(cache[key]) is read  # one read per terminal phase, nothing parsed
    parsed = reading.read_status(cache[key]).status  # what else the summary holds
    assert parsed is not None and parsed.sequence == 8 and parsed.release is not None
    # A whole copy of the same version is read whole, and not remembered in its place.
    whole_read = cache.read(obj)
    assert whole_read.status is not None and len(whole_read.status.checks) == 6
    assert cache.read(obj) is whole_read, "the object just put: parsed once, for its listeners"
    cache.put(_finished("11"))
    assert cache.read(obj) is not whole_read  # only the last one put
    assert cache.read(cache[key]) is read
    small, big = cache.entry(cache[key]), reading.entry(obj)
    assert (small.key, small.target, small.phase, small.active) == (
        big.key, big.target, big.phase, False)  # arbitration: it holds nothing either way


def test_a_rollout_that_leaves_its_terminal_phase_is_whole_again() -> None:
    cache = RolloutCache()
    key = cache.put(_finished("10"))
    back = _finished("11")
    back["status"]["phase"] = "Paused"  # a client's patch; canaryd never writes this
    back["status"]["pausedBy"] = "operator"
    cache.put(back)
    assert cache.whole(key) and cache.summarised() == 0
    assert cache[key]["status"]["checks"] == back["status"]["checks"]
    assert cache.read(cache[key]).label == "Paused"
    cache.put(_finished("12"))
    assert not cache.whole(key)
    cache.drop(key)
    assert cache.whole(key) and cache.summarised() == 0 and key not in cache


def test_what_canaryd_still_acts_on_stays_whole() -> None:
    out = _finished()
    out["status"]["hooks"] = [{"id": "postRollout/notify", "name": "notify",
                               "stage": "postRollout", "outcome": "Running",
                               "started": "2026-12-02T14:04:19Z", "seq": 8}]
    assert reading.read_status(out).status is not None
    unreadable = _finished()
    unreadable["status"]["weights"] = {"stable": "lots"}
    asked = _finished()
    cache = RolloutCache(keep_whole=lambda obj, read: obj is asked)
    for obj, name in ((out, "hook-out"), (unreadable, "unreadable"), (asked, "owed")):
        obj["metadata"]["name"] = name
        key = cache.put(obj)
        assert cache.whole(key), name
        assert cache[key]["status"]["checks"] == obj["status"]["checks"]
    assert cache.read_key("demo/unreadable").status is None  # type: ignore[union-attr]
