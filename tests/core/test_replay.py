"""Replaying a profile over history (canaryd backtest's core): range answers split per time,
the daemon's query plan, verdicts and state machine on a virtual clock. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from canaryd.core import queryplan, replay
from canaryd.core.model import Phase, RolloutSpec, Verdict
from canaryd.core.plan import resolve_analysis, steps
from canaryd.core.settings import parse_settings

T0 = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
SETTINGS = parse_settings({"prometheus": {"queryOffset": "1s"}, "profiles": {"p": {
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


def labels(workload: str) -> dict[str, str]:
    return {"destination_workload_namespace": "demo", "destination_workload": workload}


def interval_of(t: datetime) -> int:
    """Which 10 s interval of the history t lies in (1: T0 < t <= T0 + 10 s)."""
    return int((t - T0).total_seconds() + 9.999) // 10


def ranges(success: dict[int, float], share: float, start: datetime, step: float,
           end: datetime) -> replay.Ranges:
    """What Prometheus answers a range query from start to end: per series, its points at
    start + k * step, the canary's success rate as `success` says for the interval."""
    analysis = resolve_analysis(SETTINGS, spec({"steps": [{"weight": 20}]}))
    rate, requests = replay.queries(SETTINGS, analysis, TARGET)
    times = []
    t = start
    while t <= end:
        times.append(t)
        t += timedelta(seconds=step)
    return {
        rate: [(labels("app-canary"), [(t.timestamp(), success.get(interval_of(t), 99.9))
                                       for t in times]),
               (labels("app-stable"), [(t.timestamp(), 99.9) for t in times])],
        requests: [(labels("app-canary"), [(t.timestamp(), 1000 * share) for t in times]),
                   (labels("app-stable"), [(t.timestamp(), 1000 * (1 - share)) for t in times])],
    }


def replayed(s: RolloutSpec | None, success: dict[int, float], end: datetime,
             share: float = 0.2) -> tuple[replay.Replay, list[datetime]]:
    """Replay as `canaryd backtest` does: where the replay stops for answers, fetch a range
    from there to the end at the interval, and replay again. Also: where it fetched."""
    analysis = resolve_analysis(SETTINGS, s or spec({"steps": [{"weight": 20}]}))
    fetched = replay.Fetched()
    fetches: list[datetime] = []
    while True:
        result = replay.replay(SETTINGS, analysis, steps(s) if s else None, TARGET, T0, end,
                               fetched)
        if result.missing is None:
            return result, fetches
        fetches.append(result.missing)
        fetched.add(result.missing, analysis.interval, end,
                    ranges(success, share, result.missing, analysis.interval, end))


def test_the_replay_follows_the_plan_and_rolls_back_where_the_daemon_would() -> None:
    s = spec({"steps": [{"weight": 20}, {"weight": 50, "pause": "25s"}, {"weight": 80}]})
    result, fetches = replayed(s, {5: 97.0, 6: 96.0}, T0 + timedelta(minutes=2))
    assert [(run.step, run.weight, run.verdict) for run in result.runs] == [
        (0, 20, Verdict.PASS), (1, 50, Verdict.PASS), (1, 50, Verdict.PASS),
        (2, 80, Verdict.FAIL), (2, 80, Verdict.FAIL)]
    # As the daemon times them (queryOffset 1 s): a run is due interval + offset after its
    # step's start or the last run, evaluated offset before; a step starts at its decision:
    # step 2 at 11 s, step 3 once step 2's 25 s pause is over in evaluation time (37 s).
    assert [(run.time - T0).total_seconds() for run in result.runs] == [10, 21, 31, 47, 57]
    assert fetches == [T0 + timedelta(seconds=t) for t in (10, 21, 47)]  # one per step
    assert result.phase is Phase.ROLLED_BACK
    assert result.decided_at == T0 + timedelta(seconds=58)
    assert "istio-success-rate" in result.reason
    [last] = result.runs[-1].results
    assert (last.value, last.stable_value, last.time) == (96.0, 99.9, result.runs[-1].time)


def test_without_a_query_offset_runs_are_evaluated_when_due() -> None:
    settings = parse_settings({**SETTINGS.model_dump(by_alias=True, mode="json"),
                               "prometheus": {"queryOffset": "0s"}})
    s = spec({"steps": [{"weight": 20}, {"weight": 50}]})
    analysis = resolve_analysis(settings, s)
    asked: list[datetime] = []

    def answers_at(t: datetime) -> Mapping[str, queryplan.Answer]:
        asked.append(t)
        return {text: [(series_labels, points[0][1]) for series_labels, points in series]
                for text, series in ranges({}, 0.2, t, 10, t).items()
                if not isinstance(series, str)}

    result = replay.replay(settings, analysis, steps(s), TARGET, T0,
                           T0 + timedelta(minutes=1), answers_at)
    assert asked == [T0 + timedelta(seconds=10), T0 + timedelta(seconds=20)]
    assert result.phase is Phase.SUCCEEDED and result.decided_at == asked[-1]


def test_without_a_plan_one_step_spans_the_window_at_the_measured_share() -> None:
    result, fetches = replayed(None, {}, T0 + timedelta(seconds=60), share=0.3)
    assert result.phase is Phase.PROGRESSING and result.decided_at is None
    assert len(result.runs) == 6 and {run.weight for run in result.runs} == {30}
    assert all(run.verdict is Verdict.PASS for run in result.runs)
    assert len(fetches) == 1  # one step: one grid


def test_fetched_answers_only_on_their_grid() -> None:
    fetched = replay.Fetched()
    start = T0 + timedelta(milliseconds=1500)
    fetched.add(start, 10, T0 + timedelta(seconds=40),
                {"q": [(labels("a"), [(start.timestamp(), 1.0),
                                      (start.timestamp() + 20, 3.0)])], "e": "boom"})
    assert fetched(start) == {"q": [(labels("a"), 1.0)], "e": "boom"}
    assert fetched(start + timedelta(seconds=10)) == {"q": [], "e": "boom"}  # no point: empty
    assert fetched(start + timedelta(seconds=20)) == {"q": [(labels("a"), 3.0)], "e": "boom"}
    assert fetched(start + timedelta(seconds=5)) is None  # off the grid: not fetched
    assert fetched(start + timedelta(seconds=50)) is None  # past its end
    assert fetched(T0) is None


def test_a_query_error_is_inconclusive_at_every_point() -> None:
    analysis = resolve_analysis(SETTINGS, spec({"steps": [{"weight": 20}]}))
    texts = replay.queries(SETTINGS, analysis, TARGET)
    fetched = replay.Fetched()
    fetched.add(T0, 1, T0 + timedelta(seconds=40),
                {t: "HTTP Status Code 422 (b'execution')" for t in texts})
    result = replay.replay(SETTINGS, analysis, steps(spec({"steps": [{"weight": 20}]})),
                           TARGET, T0, T0 + timedelta(seconds=40), fetched)
    assert [run.verdict for run in result.runs] == [Verdict.INCONCLUSIVE] * 3
    assert [(run.time - T0).total_seconds() for run in result.runs] == [10, 20, 30]  # tiled
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
