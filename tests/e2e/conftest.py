"""The end-to-end fixtures (tests/e2e/fixtures.py)."""

from tests.e2e.fixtures import Env, env, sandbox, start_daemon, stop_daemon

__all__ = ["Env", "env", "sandbox", "start_daemon", "stop_daemon"]
