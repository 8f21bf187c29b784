"""core/summary.py: what a finished rollout is cached as, and that every reader of a cached
finished rollout (the list and its rows, `list --target`, the status read, retention, the
idempotent replay) sees in the summary what it sees in the whole object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from canaryd.api.liststream import META_KEYS, SPEC_KEYS, STATUS_KEYS
from canaryd.commands import listing
from canaryd.core import reading, summary
from canaryd.core.model import Phase

# Two rollouts the sandbox really ran (canaryd sandbox, config/examples/canary.yaml): one
# promoted, one rolled back after a failed analysis; as `kubectl get -o json` returned them.
FINISHED = json.loads(
    (Path(__file__).parents[2] / "bench/data/finished-rollouts.json").read_text())


def whole(phase: str) -> dict[str, Any]:
    return {
        "apiVersion": "canaryd.io/v1alpha1", "kind": "Rollout",
        "metadata": {
            "name": "r1", "namespace": "demo", "uid": "u-1", "resourceVersion": "42",
            "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"team": "web"},
            "annotations": {"canaryd.io/idempotency-key": "k1",
                            "canaryd.io/request-digest": "d1",
                            "kubectl.kubernetes.io/last-applied-configuration": "{...}"},
            "managedFields": [{"manager": "canaryd", "operation": "Update"}],
        },
        "spec": {"target": "app", "version": "v2", "plan": {"steps": [{"weight": 10}]},
                 "workloads": {"stable": "app-stable", "canary": "app-canary"}},
        "status": {
            "phase": phase, "stepIndex": 0, "stepCount": 1, "stepProgress": "1/1",
            "weights": {"stable": 100, "canary": 0}, "reason": "done",
            "phaseStartedAt": "2026-01-01T00:05:00Z", "sequence": 4, "notified": {"chat": 4},
            "release": {"from": {"images": {"app": "app:1"}}, "to": {"images": {"app": "app:2"}}},
            "checks": [{"metric": "m", "seq": 3}], "conditions": [{"type": "Ready"}],
            "evidence": [], "hooks": [], "lastAnalysisAt": "2026-01-01T00:04:00Z",
            "history": [
                {"seq": 1, "phase": "Progressing", "time": "2026-01-01T00:01:00Z"},
                {"seq": 4, "phase": phase, "time": "2026-01-01T00:05:00Z"},
            ],
        },
    }


@pytest.mark.parametrize("phase", [p.value for p in Phase if p.terminal])
def test_a_terminal_phase_is_summarisable(phase: str) -> None:
    assert summary.summarisable(whole(phase))


@pytest.mark.parametrize("status", [None, {}, {"phase": "Progressing"}, {"phase": "Paused"},
                                    {"phase": ["Succeeded"]}, {"phase": "succeeded"}, "x"])
def test_anything_else_is_not(status: Any) -> None:
    obj = whole("Succeeded")
    obj["status"] = status
    assert not summary.summarisable(obj)


def test_the_summary_keeps_what_the_list_retention_and_replay_read() -> None:
    assert summary.summary(whole("RolledBack")) == {
        "apiVersion": "canaryd.io/v1alpha1", "kind": "Rollout",
        "metadata": {
            "name": "r1", "namespace": "demo", "uid": "u-1", "resourceVersion": "42",
            "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"team": "web"},
            "annotations": {"canaryd.io/idempotency-key": "k1",
                            "canaryd.io/request-digest": "d1"},
        },
        "spec": {"target": "app", "version": "v2"},
        "status": {
            "phase": "RolledBack", "stepIndex": 0, "stepCount": 1, "stepProgress": "1/1",
            "weights": {"stable": 100, "canary": 0}, "reason": "done",
            "phaseStartedAt": "2026-01-01T00:05:00Z", "sequence": 4, "notified": {"chat": 4},
            "release": {"from": {"images": {"app": "app:1"}},
                        "to": {"images": {"app": "app:2"}}},
            "history": [{"seq": 4, "phase": "RolledBack", "time": "2026-01-01T00:05:00Z"}],
        },
    }


def test_no_verdict_entry_leaves_an_empty_history() -> None:
    obj = whole("Aborted")
    obj["status"]["history"] = obj["status"]["history"][:1]
    assert summary.summary(obj)["status"]["history"] == []
    del obj["status"]["history"]
    assert "history" not in summary.summary(obj)["status"]


@pytest.mark.parametrize("obj", FINISHED, ids=lambda o: o["status"]["phase"])
def test_a_real_finished_rollout_reads_the_same_from_its_summary(obj: dict[str, Any]) -> None:
    small = summary.summary(obj)
    assert summary.summarisable(obj)
    read, read_small = reading.read_status(obj), reading.read_status(small)
    assert read_small.status is not None, read_small.problem
    assert (read_small.label, read_small.terminal, read_small.active) == (
        read.label, True, False)
    assert read_small.status.notified == read.status.notified  # type: ignore[union-attr]
    assert read_small.status.sequence == read.status.sequence  # type: ignore[union-attr]
    # the list stream's row, `canaryd list` and `canaryd list --target`
    for part, keys in (("metadata", META_KEYS), ("spec", SPEC_KEYS), ("status", STATUS_KEYS)):
        assert {k: obj[part][k] for k in keys if k in obj[part]} == {
            k: small[part][k] for k in keys if k in small[part]}
    assert listing.table([small]) == listing.table([obj])
    assert listing.release(small) == listing.release(obj)
    assert listing.release(small)["finished"] is not None
    # arbitration: it holds nothing either way
    assert not reading.entry(small, read_small).active
    # a fifth of the bytes or less: the checks, conditions and the rest of history go
    assert len(json.dumps(small)) * 5 < len(json.dumps(obj))
