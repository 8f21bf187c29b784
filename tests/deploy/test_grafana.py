"""The Grafana dashboard, without Prometheus: what every panel asks of, and that each series
it names is one canaryd exports (tests/real/test_helm_real.py runs every query against
real Prometheus scraping a canaryd that ran a canary)."""

from __future__ import annotations

import json
import re

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from canaryd.runtime.metrics import DaemonMetrics
from tests.deploy.grafana import DASHBOARD, expressions, panels

VALUES = {"namespace": ".*", "rollout": ".*", "__rate_interval": "1m", "__range": "1h"}


def _exported() -> set[str]:
    """Every series name canaryd's registry can export (histograms' and counters' too)."""
    registry = DaemonMetrics().registry
    names = {family.name for family in registry.collect()}
    samples = {s.name for f in text_string_to_metric_families(generate_latest(registry).decode())
               for s in f.samples}
    return names | samples | {f"{n}{suffix}" for n in names
                              for suffix in ("_bucket", "_sum", "_count", "_total")}


def test_every_series_the_dashboard_asks_for_is_one_canaryd_exports() -> None:
    exported = _exported()
    asked = set()
    for title, expr in expressions(VALUES):
        without_strings = re.sub(r'"[^"]*"', '""', expr)
        asked |= {(title, n) for n in re.findall(r"\b(canaryd_[a-z_]+)\b", without_strings)}
    unknown = sorted((t, n) for t, n in asked if n not in exported)
    assert not unknown, unknown
    covered = {n for _, n in asked}
    for wanted in ("canaryd_rollouts", "canaryd_rollout_canary_weight", "canaryd_check_value",
                   "canaryd_check_threshold", "canaryd_step_duration_seconds_bucket",
                   "canaryd_rollout_duration_seconds_bucket", "canaryd_check_outcomes_total",
                   "canaryd_prometheus_query_seconds_bucket",
                   "canaryd_prometheus_query_errors_total",
                   "canaryd_kube_request_seconds_bucket", "canaryd_kube_errors_total",
                   "canaryd_leader"):
        assert wanted in covered, f"no panel shows {wanted}"


def test_every_panel_queries_the_chosen_datasource_and_the_variables_exist() -> None:
    dash = json.loads(DASHBOARD.read_text())
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "namespace", "rollout"} <= variables
    for panel in panels(dash):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        assert panel["description"], panel["title"]
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids))
