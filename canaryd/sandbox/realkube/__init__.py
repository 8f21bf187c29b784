"""A real Kubernetes control plane for tests, benchmarks and `canaryd sandbox --kube real`.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok, each built from its
Go module by `build.sh` (shipped beside this file) into a cache outside the repository, and
started on loopback by `RealKube`.
"""

from canaryd.sandbox.realkube.binaries import (
    Binaries,
    BinariesNotBuiltError,
    build,
    find_binaries,
)
from canaryd.sandbox.realkube.launcher import RealKube, RealKubeError

__all__ = [
    "Binaries",
    "BinariesNotBuiltError",
    "RealKube",
    "RealKubeError",
    "build",
    "find_binaries",
]
