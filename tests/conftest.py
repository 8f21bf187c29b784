"""Shared pytest fixtures."""

from tests.realkube import kube_backend, pytest_generate_tests, real_kube

__all__ = ["kube_backend", "pytest_generate_tests", "real_kube"]
