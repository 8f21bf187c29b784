"""The status write's merge patch: applying the diff gives what applying the whole gives."""

from __future__ import annotations

import copy
from typing import Any

from canaryd.core.mergepatch import diff


def apply(target: Any, patch: Any) -> Any:
    """RFC 7386 MergePatch, as the API server applies it."""
    if not isinstance(patch, dict):
        return patch
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply(out.get(key), value)
    return out


OLD = {
    "phase": "Progressing", "sequence": 7, "weights": {"stable": 90, "canary": 10},
    "history": [{"seq": 1, "phase": "Progressing"}],
    "checks": [{"seq": 6, "metric": "m", "value": 1.0}],
    "release": {"from": {"app": "v1"}, "detail": "canary up"},
    "rollbackReason": "old", "stale": 1,
}


def test_only_what_differs_is_sent_and_the_result_is_the_same() -> None:
    new = copy.deepcopy(OLD)
    new["sequence"] = 8
    new["checks"] = [*OLD["checks"], {"seq": 8, "metric": "m", "value": 2.0}]
    new["release"] = {"from": {"app": "v1"}, "detail": "stable updated 1/2"}
    new["rollbackReason"] = None
    new["lastAnalysisAt"] = None  # absent before: nothing to delete
    patch = diff(OLD, new)
    assert patch == {"sequence": 8, "checks": new["checks"],
                     "release": {"detail": "stable updated 1/2"}, "rollbackReason": None}
    assert apply(OLD, patch) == apply(OLD, new)
    assert "stale" in apply(OLD, patch)  # a key the write leaves out stays, as before


def test_nothing_changed_is_an_empty_patch() -> None:
    assert diff(OLD, copy.deepcopy(OLD)) == {}


def test_a_status_that_is_not_an_object_is_replaced_whole() -> None:
    new = {"phase": "Pending"}
    assert diff("garbage", new) == new
    assert diff(None, new) == new
