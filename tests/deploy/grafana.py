"""The Grafana dashboard's PromQL: every target's expression, template variables replaced
as Grafana would for a chosen selection."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.deploy.support import DEPLOY

DASHBOARD = DEPLOY / "grafana" / "canaryd.json"


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out += panel.get("panels", [])  # a collapsed row holds its panels
    return out


def expressions(values: dict[str, str], dashboard: dict[str, Any] | None = None
                ) -> list[tuple[str, str]]:
    """(panel title, expr) for every target, `$name`/`${name}` replaced from `values`
    (Grafana's own `$__rate_interval`, `$__range` included); a variable left over fails."""
    dash = dashboard if dashboard is not None else json.loads(DASHBOARD.read_text())
    out = []
    for panel in panels(dash):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name in sorted(values, key=len, reverse=True):
                expr = expr.replace("${" + name + "}", values[name]).replace("$" + name,
                                                                             values[name])
            left = re.findall(r"\$\{?\w+", expr)
            assert not left, f"{panel['title']}: unreplaced {left} in {expr}"
            out.append((panel["title"], expr))
    return out
