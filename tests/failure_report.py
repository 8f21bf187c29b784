"""On a failed test, describe every sandbox still running: what the mesh sees, Prometheus's
scrape health and rates, and, on the real control plane, kubectl's view of the demo namespace
(Deployments, ReplicaSets, Pods, recent Events). A timeout then says why, not only that."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from canaryd.sandbox.runner import Sandbox


def _kubectl(kubeconfig: str, *args: str) -> str:
    try:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", kubeconfig, "--request-timeout=5s", *args],
            capture_output=True, text=True, timeout=15, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"kubectl failed: {exc}"
    return (done.stdout + done.stderr)[-6000:]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    report: pytest.TestReport = yield
    if report.failed and call.when in ("call", "setup"):
        for n, sb in enumerate(list(Sandbox.running)):
            try:
                text = json.dumps(sb.describe(), indent=1, sort_keys=True, default=str)
            except Exception as exc:  # the report must not hide the failure itself
                text = f"describe failed: {exc!r}"
            if sb.real_kube is not None and sb.kubeconfig is not None:
                kc = str(sb.kubeconfig)
                text += "\n" + _kubectl(kc, "get", "deploy,rs,pods", "-n", "demo", "-o", "wide")
                text += "\n" + _kubectl(
                    kc, "get", "events", "-n", "demo", "--sort-by=.lastTimestamp"
                )
                for name, tail in sb.real_kube.log_tails().items():
                    text += f"\n--- {name} log ---\n{tail}"
            report.sections.append((f"sandbox {n} at failure", text))
    return report
