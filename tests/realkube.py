"""The real control plane under the tests: one per pytest worker, started on first use.

Test modules opt in to running against both API servers with a module-level
`KUBE_BACKENDS = ("emulator", "real")`; their `kube_backend` fixture is parametrized with it.
Without the binaries the real cases skip, saying how to build them; with CI=true they fail.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from canaryd.sandbox.realkube import BinariesNotBuiltError, RealKube, find_binaries
from canaryd.sandbox.realkube.binaries import versions

_started: list[RealKube] = []


def require_binaries() -> None:
    try:
        find_binaries()
    except BinariesNotBuiltError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the real control plane: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def real_kube() -> Iterator[RealKube]:
    """A running etcd + kube-apiserver + controller-manager + scheduler + kwok."""
    require_binaries()
    kube = RealKube()
    asyncio.run(kube.start())
    _started.append(kube)
    v = versions()
    print(
        f"\nreal control plane: Kubernetes {v['kubernetes']}, etcd {v['etcd']}, kwok "
        f"{v['kwok']}; ready in {kube.timings.total:.1f} s, "
        f"{sum(kube.memory().values()) / 2**20:.0f} MiB"
    )
    try:
        yield kube
    finally:
        asyncio.run(kube.stop())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kube_backend" in metafunc.fixturenames:
        backends = getattr(metafunc.module, "KUBE_BACKENDS", ("emulator",))
        metafunc.parametrize("kube_backend", backends, indirect=True)


@pytest.fixture
def kube_backend(request: pytest.FixtureRequest) -> RealKube | None:
    """None for the embedded emulator, else the worker's real control plane."""
    if request.param == "real":
        kube: RealKube = request.getfixturevalue("real_kube")
        return kube
    return None
