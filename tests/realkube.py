"""The real control plane under the tests: one per test module, started on first use.

Test modules opt in to running against both API servers with a module-level
`KUBE_BACKENDS = ("emulator", "real")`; their `kube_backend` fixture is parametrized with it
(tests marked `emulator_only` get the emulator alone, `real_only` the real one alone).
Without the binaries the real cases skip, saying how to build them; with CI=true they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from canaryd.sandbox.realkube import BinariesNotBuiltError, RealKube, find_binaries
from canaryd.sandbox.realkube.binaries import versions

_REPORT_ENV = "CANARYD_REALKUBE_REPORT_DIR"


def pytest_configure(config: pytest.Config) -> None:
    # Workers inherit the directory; each control plane started writes a line there, and
    # the controlling process prints them in the summary.
    if _REPORT_ENV not in os.environ:
        os.environ[_REPORT_ENV] = tempfile.mkdtemp(prefix="canaryd-realkube-report-")


def pytest_report_header(config: pytest.Config) -> str:
    try:
        found = find_binaries()
    except BinariesNotBuiltError as exc:
        return f"real control plane: not built, its tests skip ({exc})"
    v = versions()
    return (f"real control plane: Kubernetes {v['kubernetes']}, etcd {v['etcd']}, kwok "
            f"{v['kwok']} ({found.bin_dir})")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    folder = Path(os.environ.get(_REPORT_ENV, ""))
    if not folder.is_dir() or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    for path in sorted(folder.glob("*.json")):
        terminalreporter.write_line("real control plane " + path.read_text())
    shutil.rmtree(folder, ignore_errors=True)


def require_binaries() -> None:
    try:
        find_binaries()
    except BinariesNotBuiltError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the real control plane: {exc}")
        pytest.skip(str(exc))


@contextlib.contextmanager
def running(kube: RealKube) -> Iterator[RealKube]:
    """Start `kube` (binaries required: skipped, or failed in CI, without them), yield it,
    and stop it whatever happened: the body of every control-plane fixture."""
    require_binaries()
    asyncio.run(kube.start())
    try:
        yield kube
    finally:
        asyncio.run(kube.stop())


@pytest.fixture(scope="module")
def real_kube() -> Iterator[RealKube]:
    """A running etcd + kube-apiserver + controller-manager + scheduler + kwok, one per test
    module: what one module leaves in the cluster cannot reach another (about 7 s and
    500 MiB each)."""
    with running(RealKube()) as kube:
        report = {**versions(), "ready_seconds": round(kube.timings.total, 1),
                  "rss_mib_at_start": round(sum(kube.memory().values()) / 2**20)}
        try:
            yield kube
        finally:
            report["rss_mib_at_end"] = round(sum(kube.memory().values()) / 2**20)
            report["rss_mib_by_part_at_end"] = {
                name: round(rss / 2**20) for name, rss in kube.memory().items()}
            folder = Path(os.environ.get(_REPORT_ENV, tempfile.gettempdir()))
            name = f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{os.getpid()}-{id(kube)}"
            with contextlib.suppress(OSError):
                (folder / f"{name}.json").write_text(json.dumps(report))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kube_backend" in metafunc.fixturenames:
        backends = getattr(metafunc.module, "KUBE_BACKENDS", ("emulator",))
        if metafunc.definition.get_closest_marker("emulator_only"):
            backends = ("emulator",)
        elif metafunc.definition.get_closest_marker("real_only"):
            backends = ("real",)
        metafunc.parametrize("kube_backend", backends, indirect=True)


@pytest.fixture
def kube_backend(request: pytest.FixtureRequest) -> RealKube | None:
    """None for the embedded emulator, else the worker's real control plane."""
    if request.param == "real":
        kube: RealKube = request.getfixturevalue("real_kube")
        return kube
    return None
