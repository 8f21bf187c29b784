"""Where the control-plane binaries are, and how to build them (`build.sh`)."""

from __future__ import annotations

import importlib.resources
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
BIN_ENV = "CANARYD_REALKUBE_BIN"


class BinariesNotBuiltError(RuntimeError):
    """The binaries are not in the cache (or where CANARYD_REALKUBE_BIN points)."""


@dataclass(frozen=True)
class Binaries:
    """The built control plane: one directory of binaries, kwok's stages, upstream CRDs."""

    bin_dir: Path

    @property
    def root(self) -> Path:
        return self.bin_dir.parent

    def path(self, name: str) -> str:
        return str(self.bin_dir / name)

    @property
    def stages(self) -> list[Path]:
        """kwok v0.8 has no built-in stages: node and pod lifecycles from its module."""
        base = self.root / "stages"
        wanted = [
            "node/fast/node-initialize.yaml",
            "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
            "pod/fast/pod-ready.yaml",
            "pod/fast/pod-complete.yaml",
            "pod/fast/pod-delete.yaml",
        ]
        return [base / name for name in wanted]

    @property
    def upstream_crds(self) -> Path:
        """CRDs from upstream modules (Istio's istio.io/api, sigs.k8s.io/gateway-api)."""
        return self.root / "crds"

    def missing(self) -> list[str]:
        absent = [n for n in COMPONENTS if not (self.bin_dir / n).is_file()]
        absent += [str(p) for p in self.stages if not p.is_file()]
        return absent


def build_script() -> Path:
    return Path(str(importlib.resources.files("canaryd.sandbox.realkube").joinpath("build.sh")))


def _script(*args: str) -> str:
    done = subprocess.run(
        ["bash", str(build_script()), *args], check=True, capture_output=True, text=True
    )
    return done.stdout.strip().splitlines()[-1]


def find_binaries() -> Binaries:
    """The built control plane, or an error that says how to build it."""
    given = os.environ.get(BIN_ENV)
    found = Binaries(Path(given) if given else Path(_script("--print")))
    missing = found.missing()
    if missing:
        how = "`make realkube`" if shutil.which("go") else "install Go 1.26, then `make realkube`"
        raise BinariesNotBuiltError(
            f"the real control plane is not built in {found.bin_dir} (missing: "
            f"{', '.join(missing)}); {how} builds it from the Go module proxy"
        )
    return found


def versions() -> dict[str, str]:
    """The pinned versions, as build.sh has them (`KEY=value` lines)."""
    out = subprocess.run(
        ["bash", str(build_script()), "--versions"], check=True, capture_output=True, text=True
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def build() -> Binaries:
    """Build (or reuse) the binaries; build.sh prints progress and timings on stderr."""
    subprocess.run(["bash", str(build_script())], check=True)
    return find_binaries()
