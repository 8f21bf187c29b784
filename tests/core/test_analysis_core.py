"""PromQL escaping, verdicts and config validation."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from canaryd.core import promql
from canaryd.core.analysisspec import Check
from canaryd.core.model import RolloutSpec, Verdict
from canaryd.core.settings import ConfigError, parse_settings
from canaryd.core.verdict import Measurement, judge, overall

NOW = datetime(2026, 1, 1, tzinfo=UTC)
INJECTION = 'x"} or vector(1) #'


def test_injection_target_is_refused_at_the_boundary() -> None:
    with pytest.raises(ValidationError) as info:
        RolloutSpec.model_validate({"target": INJECTION, "version": "v", "router": {},
                                    "workloads": {"stable": INJECTION, "canary": "c"},
                                    "plan": {"stepWeight": 10}})
    fields = {e["loc"] for e in info.value.errors()}
    assert ("target",) in fields and ("workloads", "stable") in fields


def test_escaping_holds_even_if_a_bad_name_got_through() -> None:
    rendered = promql.render('up{job="{{ workload }}"}', strings={"workload": INJECTION}, raw={})
    assert rendered == 'up{job="x\\"} or vector(1) #"}'
    regex = promql.regex_alternation([INJECTION, "a.b"])
    assert regex == '"a\\\\.b|x\\"\\\\} or vector\\\\(1\\\\) #"'
    with pytest.raises(promql.TemplateError):
        promql.regex_alternation([""])


def test_control_characters_are_escaped() -> None:
    assert promql.escape_string("a\nb\x01\\") == "a\\nb\\x01\\\\"


def check(**kw: float) -> Check:
    return Check.model_validate({"metric": "m", **kw})


@pytest.mark.parametrize(
    ("measurement", "expected"),
    [
        (Measurement("m", "q", value=99.5, requests=100), Verdict.PASS),
        (Measurement("m", "q", value=95.0, requests=100), Verdict.FAIL),
        (Measurement("m", "q", value=95.0, requests=3), Verdict.INCONCLUSIVE),
        (Measurement("m", "q", value=math.nan, requests=100), Verdict.INCONCLUSIVE),
        (Measurement("m", "q", value=None, requests=None), Verdict.INCONCLUSIVE),
        (Measurement("m", "q", error="timeout"), Verdict.INCONCLUSIVE),
    ],
)
def test_three_outcomes(measurement: Measurement, expected: Verdict) -> None:
    result = judge(check(min=99), measurement, min_requests=10, now=NOW, step=0)
    assert result.verdict is expected
    assert result.threshold == ">= 99" and result.query == "q"


def test_ratio_to_stable() -> None:
    c = check(max=1000, maxRatioToStable=1.5)
    slow = Measurement("m", "q", value=160, stable_value=100, requests=50)
    fine = Measurement("m", "q", value=140, stable_value=100, requests=50)
    assert judge(c, slow, min_requests=1, now=NOW, step=0).verdict is Verdict.FAIL
    assert judge(c, fine, min_requests=1, now=NOW, step=0).verdict is Verdict.PASS


def test_overall_verdict() -> None:
    p = judge(check(min=1), Measurement("m", "q", value=2), min_requests=0, now=NOW, step=0)
    i = judge(check(min=1), Measurement("m", "q"), min_requests=0, now=NOW, step=0)
    f = judge(check(min=1), Measurement("m", "q", value=0), min_requests=0, now=NOW, step=0)
    assert overall([p, p]) is Verdict.PASS
    assert overall([p, i]) is Verdict.INCONCLUSIVE
    assert overall([i, f]) is Verdict.FAIL
    assert overall([]) is Verdict.INCONCLUSIVE


def test_config_check_reports_every_error_with_its_path() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({
            "prometheus": {"timeout": "soon"},
            "metrics": {"bad": {"query": "up{x=\"{{ nope }}\"}"}},
            "profiles": {
                "a": {"checks": [{"metric": "missing", "min": 1},
                                 {"metric": "istio-success-rate"}]},
                "b": {"interval": "0.5s", "checks": [{"metric": "istio-success-rate", "min": 1}]},
            },
        })
    paths = [p for p, _ in info.value.errors]
    assert "prometheus.timeout" in paths
    assert "metrics.bad" in paths
    assert "profiles.a.checks[1]" in paths
    assert "profiles.b" in paths


def test_shipped_config_is_valid() -> None:
    from pathlib import Path

    from canaryd.config import load_settings

    settings = load_settings(Path(__file__).parents[2] / "config" / "canaryd.yaml", env={})
    assert {"default", "sandbox"} <= set(settings.profiles)
