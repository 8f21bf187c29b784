"""`canaryd config check` through the real console entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "canaryd", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_shipped_config_checks_clean() -> None:
    result = run("config", "check", str(ROOT / "config" / "canaryd.yaml"))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout and "sandbox" in result.stdout


def test_errors_are_listed_with_their_paths(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "prometheus: {timeout: soon}\n"
        "profiles:\n"
        "  p: {checks: [{metric: nope, min: 1}]}\n"
    )
    result = run("config", "check", str(bad))
    assert result.returncode == 1
    assert "prometheus.timeout" in result.stderr


def test_unknown_template_is_reported_with_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("profiles:\n  p: {checks: [{metric: nope, min: 1}]}\n")
    result = run("config", "check", str(bad))
    assert result.returncode == 1
    assert "profiles.p.checks[0].metric: unknown metric template 'nope'" in result.stderr
