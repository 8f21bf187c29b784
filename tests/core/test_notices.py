"""What people are told, derived from status alone (pure), and how each receiver shows it."""

from __future__ import annotations

from datetime import UTC, datetime

from canaryd.adapters import notify
from canaryd.core.hookspec import HookRun
from canaryd.core.model import CheckResult, HistoryEntry, Phase, RolloutStatus, Verdict
from canaryd.core.notices import notices

T = datetime(2026, 1, 1, tzinfo=UTC)
META = {"namespace": "demo", "name": "podinfo-v2", "uid": "u-1"}
SPEC = {"target": "podinfo", "version": "6.5.0"}


def entry(seq: int, source: Phase, phase: Phase, trigger: str, reason: str) -> HistoryEntry:
    return HistoryEntry(seq=seq, time=T, source=source, phase=phase, trigger=trigger,
                        reason=reason)


def test_a_rollback_carries_the_failing_checks_value_and_threshold() -> None:
    P = Phase
    status = RolloutStatus(phase=P.ROLLED_BACK, sequence=5, step_count=2, history=[
        entry(1, P.PENDING, P.PROGRESSING, "CanaryReady", "canary available"),
        entry(3, P.PROGRESSING, P.ROLLING_BACK, "AnalysisFailed", "analysis failed"),
        entry(4, P.ROLLING_BACK, P.ROLLED_BACK, "TrafficConfirmed", "analysis failed; back"),
    ], checks=[
        CheckResult(seq=2, metric="istio-success-rate", query="q", value=94.84, unit="%",
                    threshold=">= 99%", verdict=Verdict.FAIL, reason="low", time=T, step=0),
        CheckResult(seq=2, metric="istio-latency-p99", query="q", value=80, unit="ms",
                    threshold="<= 200 ms", verdict=Verdict.PASS, reason="ok", time=T, step=0),
    ], hooks=[HookRun(id="rollback/page", name="page", stage="rollback", outcome="Failed",
                      started=T, finished=T, reason="HTTP 500", seq=3, finished_seq=5)])
    found = notices(META, SPEC, status)
    assert [(n.event, n.seq) for n in found] == [("started", 1), ("rolledBack", 4),
                                                  ("hookFailed", 5)]
    rolled = found[1]
    assert rolled.failing == ("istio-success-rate 94.84% (threshold >= 99%)",)
    assert "rollback hook page failed: HTTP 500" in found[2].reason
    for render in (notify.slack, notify.teams):
        text = str(render(rolled, "https://canaryd.example"))
        assert "94.84%" in text and ">= 99%" in text and "podinfo rolled back" in text
        assert "https://canaryd.example/api/v1/rollouts/demo/podinfo-v2" in text
    assert rolled.previous is None, "no release recorded: no previous version"
    event = notify.cloudevent(rolled)
    assert event["specversion"] == "1.0" and event["id"] == "u-1/4"
    assert event["type"] == "io.canaryd.rollout.rolledBack"
    assert event["data"]["failingChecks"][0]["value"] == 94.84
