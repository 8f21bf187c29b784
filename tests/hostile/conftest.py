"""One `canaryd serve` process (and sandbox API server process) per test session and worker:
every test here talks to the real server over real sockets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hostile.support import Daemon, daemon_process


@pytest.fixture(scope="session")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with daemon_process(tmp_path_factory.mktemp("hostile")) as d:
        yield d
