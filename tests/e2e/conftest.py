"""The end-to-end fixtures (tests/e2e/fixtures.py)."""

from tests.e2e.fixtures import Env, canaryd_running, env, sandbox

__all__ = ["Env", "canaryd_running", "env", "sandbox"]
