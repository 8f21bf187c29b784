"""helm for the chart's tests: the binary deploy/helm/build-helm.sh builds into the cache."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.support import DEPLOY, KUBERNETES_VERSION, Doc

CHART = DEPLOY / "helm" / "canaryd"
BUILD = DEPLOY / "helm" / "build-helm.sh"
RELEASE = "canaryd"
NAMESPACE = "canaryd"


def helm_binary() -> str:
    """The cached helm, or a skip that says how to build it (a failure in CI)."""
    path = Path(subprocess.run(["bash", str(BUILD), "--print"], check=True,
                               capture_output=True, text=True).stdout.strip())
    if not path.is_file():
        reason = f"helm is not built ({path}): `make helm` builds it with Go"
        if os.environ.get("CI"):
            pytest.fail(f"CI needs helm: {reason}")
        pytest.skip(reason)
    return str(path)


def helm(*args: str, check: bool = True, timeout: float = 120
         ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([helm_binary(), *args], capture_output=True, text=True,
                          timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done


def template(*values: str, crds: bool = False) -> list[Doc]:
    """`helm template` of the chart as release `canaryd` in namespace `canaryd`, for the oldest
    Kubernetes the manifests are meant for; `values` are `--set` pairs."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE,
            "--kube-version", KUBERNETES_VERSION]
    args += [a for v in values for a in ("--set", v)]
    if crds:
        args.append("--include-crds")
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]
