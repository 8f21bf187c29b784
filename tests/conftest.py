"""Shared pytest fixtures and hooks."""

from tests.failure_report import pytest_runtest_makereport
from tests.realkube import (
    kube_backend,
    pytest_configure,
    pytest_generate_tests,
    pytest_report_header,
    pytest_terminal_summary,
    real_kube,
)

__all__ = [
    "kube_backend",
    "pytest_configure",
    "pytest_generate_tests",
    "pytest_report_header",
    "pytest_runtest_makereport",
    "pytest_terminal_summary",
    "real_kube",
]
