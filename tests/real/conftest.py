"""The real tier reuses the end-to-end fixtures; its own control plane is tests/realkube.py."""

from tests.e2e.fixtures import env, sandbox

__all__ = ["env", "sandbox"]
