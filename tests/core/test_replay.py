"""Replaying a profile over history (canaryd backtest's core): range answers split per time,
the daemon's query plan, verdicts and state machine on a virtual clock. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from canaryd.core import replay
from canaryd.core.model import Phase, RolloutSpec, Verdict
from canaryd.core.plan import resolve_analysis, steps
from canaryd.core.settings import parse_settings

T0 = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
SETTINGS = parse_settings({"profiles": {"p": {
    "interval": "10s", "minInterval": "1s", "minRequests": 10,
    "checks": [{"metric": "istio-success-rate", "min": 99}],
    "limits": {"failures": 2, "consecutiveFailures": 2},
}}})
TARGET = replay.Target("demo", "app-canary", "app-stable")


def spec(plan: dict[str, object]) -> RolloutSpec:
    return RolloutSpec.model_validate({
        "target": "app", "version": "v2",
        "router": {"istio": {"virtualService": "app",
                             "stable": {"host": "app", "subset": "stable"},
                             "canary": {"host": "app", "subset": "canary"}}},
        "workloads": {"stable": "app-stable", "canary": "app-canary"},
        "plan": plan, "analysis": {"profile": "p"},
    })


def history(success: dict[int, float], share: float = 0.2) -> replay.AnswersAt:
    """Range answers as Prometheus gives them: per series, points at t0 + 10 s * k."""
    analysis = resolve_analysis(SETTINGS, spec({"steps": [{"weight": 20}]}))
    rate, requests = replay.queries(SETTINGS, analysis, TARGET)

    def labels(workload: str) -> dict[str, str]:
        return {"destination_workload_namespace": "demo", "destination_workload": workload}

    times = [(T0 + timedelta(seconds=10 * k)).timestamp() for k in range(1, 13)]
    canary_rate = [(t, success.get(k + 1, 99.9)) for k, t in enumerate(times)]
    ranges = {
        rate: [(labels("app-canary"), canary_rate),
               (labels("app-stable"), [(t, 99.9) for t in times])],
        requests: [(labels("app-canary"), [(t, 1000 * share) for t in times]),
                   (labels("app-stable"), [(t, 1000 * (1 - share)) for t in times])],
    }
    return replay.points_at(ranges)


def test_the_replay_follows_the_plan_and_rolls_back_where_the_daemon_would() -> None:
    s = spec({"steps": [{"weight": 20}, {"weight": 50, "pause": "25s"}, {"weight": 80}]})
    analysis = resolve_analysis(SETTINGS, s)
    result = replay.replay(SETTINGS, analysis, steps(s), TARGET, T0,
                           T0 + timedelta(minutes=2), history({4: 97.0, 5: 96.0}))
    assert [(run.step, run.weight, run.verdict) for run in result.runs] == [
        (0, 20, Verdict.PASS), (1, 50, Verdict.PASS), (1, 50, Verdict.PASS),
        (1, 50, Verdict.FAIL), (1, 50, Verdict.FAIL)]
    assert result.phase is Phase.ROLLED_BACK
    assert result.decided_at == T0 + timedelta(seconds=50)
    assert "istio-success-rate" in result.reason
    [last] = result.runs[-1].results
    assert (last.value, last.stable_value, last.time) == (96.0, 99.9, result.decided_at)


def test_without_a_plan_one_step_spans_the_window_at_the_measured_share() -> None:
    analysis = resolve_analysis(SETTINGS, spec({"steps": [{"weight": 20}]}))
    end = T0 + timedelta(seconds=60)
    result = replay.replay(SETTINGS, analysis, None, TARGET, T0, end, history({}, share=0.3))
    assert result.phase is Phase.PROGRESSING and result.decided_at is None
    assert len(result.runs) == 6 and {run.weight for run in result.runs} == {30}
    assert all(run.verdict is Verdict.PASS for run in result.runs)


def test_a_query_error_is_inconclusive_at_every_point() -> None:
    analysis = resolve_analysis(SETTINGS, spec({"steps": [{"weight": 20}]}))
    texts = replay.queries(SETTINGS, analysis, TARGET)
    answers = replay.points_at({t: "HTTP Status Code 422 (b'execution')" for t in texts})
    result = replay.replay(SETTINGS, analysis, steps(spec({"steps": [{"weight": 20}]})),
                           TARGET, T0, T0 + timedelta(seconds=30), answers)
    assert [run.verdict for run in result.runs] == [Verdict.INCONCLUSIVE] * 3
    assert result.phase is Phase.PAUSED and "422" in result.reason


def test_backtest_refuses_bad_input_naming_the_flag(capsys: object) -> None:
    import pytest

    from canaryd.cli import main

    cases = [
        ([], "give --rollout"),
        (["--target", "demo/Bad_Name", "--stable", "s", "--from", "now-5m"], "--target"),
        (["--target", "demo/app", "--from", "now-5m"], "--stable: required"),
        (["--target", "demo/app", "--stable", "app", "--from", "now-5m"], "--stable: must differ"),
        (["--target", "demo/app", "--stable", "s", "--from", "yesterday"], "--from: 'yesterday'"),
        (["--target", "demo/app", "--stable", "s", "--from", "now-5m", "--profile", "nope"],
         "--profile nope: spec.analysis.profile: unknown profile"),
    ]
    for argv, message in cases:
        assert main(["backtest", *argv]) == 2, argv
        err = capsys.readouterr().err  # type: ignore[attr-defined]
        assert message in err, (argv, err)
    with pytest.raises(SystemExit):
        main(["backtest", "--nonsense"])
