"""The cache's per-resourceVersion memos: a changed object is read and arbitrated afresh."""

from __future__ import annotations

from typing import Any

from canaryd.core import reading
from canaryd.core.model import Phase
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
