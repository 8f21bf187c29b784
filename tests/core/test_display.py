"""How values and check results read: the template's unit, a sensible precision, each
number once. Results come from the real verdicts, as the controller stores them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from canaryd.client.render import check_line
from canaryd.core import units
from canaryd.core.analysisspec import Check
from canaryd.core.model import Evidence
from canaryd.core.verdict import Measurement, judge

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("value", "unit", "shown"), [
    (94.42000000001, "ms", "94 ms"), (170.4, "ms", "170 ms"), (4.25, "ms", "4.2 ms"),
    (99.87123, "%", "99.87%"), (100.0, "%", "100%"), (5.0, "%", "5%"),
    (12.0, "", "12"), (0.012345, "", "0.01235"), (123456.7, "", "123457"),
    (0.0000012, "", "0.000001"), (-0.0, "", "0"),
])
def test_quantities(value: float, unit: str, shown: str) -> None:
    assert units.quantity(value, unit) == shown


def stored(check: dict[str, object], m: Measurement) -> dict[str, object]:
    result = judge(Check.model_validate(check), m, min_requests=20, now=NOW, step=0)
    return result.wire()  # what status (and the event stream) holds


def test_a_check_line_says_the_value_once_with_its_unit() -> None:
    latency = stored({"metric": "istio-latency-p99", "max": 200},
                     Measurement("istio-latency-p99", "q", value=94.42000000001, requests=500,
                                 unit="ms"))
    assert check_line(latency) == "istio-latency-p99 94 ms <= 200 ms ok"
    rate = stored({"metric": "istio-success-rate", "min": 99.5},
                  Measurement("istio-success-rate", "q", value=98.123, requests=500, unit="%"))
    assert check_line(rate) == "istio-success-rate 98.12% >= 99.5% FAIL"
    assert rate["reason"] == "98.12% is below the minimum 99.5%"
    ratio = stored({"metric": "istio-latency-p99", "max": 500, "maxRatioToStable": 1.5},
                   Measurement("istio-latency-p99", "q", value=170.2, stable_value=81.0,
                               requests=500, unit="ms"))
    assert check_line(ratio) == ("istio-latency-p99 170 ms (stable 81 ms) <= 500 ms and "
                                 "<= 1.5 x stable FAIL")
    idle = stored({"metric": "istio-latency-p99", "max": 200},
                  Measurement("istio-latency-p99", "q", value=90.0, requests=3, unit="ms"))
    assert check_line(idle) == ("istio-latency-p99 90 ms <= 200 ms inconclusive: too few "
                                "requests: 3 < 20 (canary idle or starved)")


def test_sequential_checks_print_the_e_value_and_the_errors_seen() -> None:
    seq = {"metric": "istio-error-count", "sequential": {"alpha": 0.01}}

    def interval(canary: float, stable: float, evidence: object = (), requests: float = 50,
                 ) -> Measurement:
        return Measurement("istio-error-count", "q", value=canary, stable_value=stable,
                           requests=requests, stable_requests=450, canary_share=0.1,
                           evidence=tuple(Evidence.model_validate(e) for e in evidence))

    first = stored(seq, interval(2, 4))
    e = first["value"]
    assert isinstance(e, float) and e < 100
    assert check_line(first) == (
        f"istio-error-count e={e:.3g} (2 errors where its traffic share explains 0.6) < 100 ok")
    caught = stored(seq, interval(7, 0, first["evidence"]))
    assert caught["verdict"] == "Fail"
    assert check_line(caught).endswith("(9 errors where its traffic share explains 1.3) "
                                       "< 100 FAIL")
    # Too few requests: the evidence so far, never this interval's raw error count.
    starved = stored(seq, interval(4, 0, first["evidence"], requests=5))
    assert starved["verdict"] == "Inconclusive" and starved["value"] == e
    assert starved["errors"] == 2 and starved["stableErrors"] == 4
    assert check_line(starved) == (
        f"istio-error-count e={e:.3g} (2 errors where its traffic share explains 0.6) < 100 "
        "inconclusive: too few requests: 5 < 20 (canary idle or starved)")
    at_100 = stored(seq, Measurement("istio-error-count", "q", value=1, requests=500,
                                     canary_share=1.0))
    assert check_line(at_100) == ("istio-error-count e=? < 100 not applicable: no stable "
                                  "traffic to compare with at 100%")


def test_old_status_without_units_still_reads() -> None:
    old = {"metric": "m", "value": 94.42000000001, "threshold": "<= 200", "verdict": "Pass",
           "reason": "94.42 within <= 200"}
    assert check_line(old) == "m 94.42 <= 200 ok"
    old_seq = {"metric": "istio-error-count", "value": 3.2, "errors": 2, "stableErrors": 1,
               "threshold": "e-value < 100 (errors vs traffic share)", "verdict": "Pass"}
    assert check_line(old_seq) == ("istio-error-count e=3.2 (2 of 3 errors) < 100 (errors vs "
                                   "traffic share) ok")


def test_dry_run_checks_are_shown_apart() -> None:
    from canaryd.commands.get import describe

    deciding = stored({"metric": "istio-success-rate", "min": 99},
                      Measurement("istio-success-rate", "q", value=99.9, requests=500, unit="%"))
    trying = stored({"metric": "istio-latency-p99", "max": 50, "dryRun": True},
                    Measurement("istio-latency-p99", "q", value=94.0, requests=500, unit="ms"))
    assert check_line(trying) == "[dry-run] istio-latency-p99 94 ms <= 50 ms FAIL"
    obj = {"metadata": {"namespace": "demo", "name": "r"}, "spec": {},
           "status": {"checks": [dict(deciding, seq=3), dict(trying, seq=3)]}}
    lines = describe(obj)
    at = lines.index("dry-run checks (recorded, never decide):")
    assert lines[at - 2:] == ["checks:", "  istio-success-rate 99.9% >= 99% ok",
                              "dry-run checks (recorded, never decide):",
                              "  istio-latency-p99 94 ms <= 50 ms FAIL"]
