"""Helpers for the deployment tests: the manifests under deploy/, rendered and validated."""

from __future__ import annotations

import asyncio
import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from canaryd.sandbox.apiserver import schema

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TEST_CRDS = Path(__file__).resolve().parent / "crds"
# The oldest Kubernetes release the manifests are meant for (policy/v1 PDBs, seccomp fields,
# Pod Security labels, `sizeLimit` on emptyDirs: all GA well before it).
KUBERNETES_VERSION = "1.29.0"
KUSTOMIZATIONS = ("deploy", "deploy/overlays/namespaced", "deploy/istio")
Doc = dict[str, Any]


def require_kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl is required in CI but is not on PATH")
        pytest.skip("kubectl is not installed")
    return path


def load_documents(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def manifest_files() -> list[Path]:
    """Every Kubernetes object file under deploy/ (not kustomizations, not the config copy,
    not the Helm chart: its templates are not YAML until rendered, tests/deploy/test_helm.py
    validates what they render)."""
    return sorted(
        p for p in DEPLOY.rglob("*.yaml")
        if p.name != "kustomization.yaml" and p.parent != DEPLOY / "config"
        and DEPLOY / "helm" not in p.parents
    )


def render(kustomization: str) -> list[Doc]:
    """`kubectl kustomize DIR`: the objects `kubectl apply -k DIR` would send."""
    kubectl = require_kubectl()
    out = subprocess.run([kubectl, "kustomize", str(ROOT / kustomization)], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def crd_schemas() -> dict[tuple[str, str], Doc]:
    """(apiVersion, kind) -> openAPIV3Schema, from deploy/crds and the test-only CRDs."""
    out: dict[tuple[str, str], Doc] = {}
    for path in sorted([*(DEPLOY / "crds").glob("*.yaml"), *TEST_CRDS.glob("*.yaml")]):
        for crd in load_documents(path):
            if crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                out[key] = version["schema"]["openAPIV3Schema"]
    return out


def validate(doc: Doc, crds: dict[tuple[str, str], Doc]) -> list[str]:
    """Problems with one object: Kubernetes' own schemas (strict: no unknown fields) for
    built-in kinds, its CRD's structural schema for a custom resource."""
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        return []
    except kubernetes_validate.SchemaNotFoundError:
        pass
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return [f"{doc['kind']} {doc['metadata'].get('name')}: {where}: {exc.message}"]
    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    if key not in crds:
        return [f"no schema for {key}: neither a Kubernetes kind nor a known CRD"]
    problems = []
    obj = copy.deepcopy(doc)
    if schema.prune(copy.deepcopy(obj), crds[key], root=True) != obj:
        problems.append(f"{key}: fields the CRD does not declare (they would be pruned)")
    problems += [c["message"] for c in schema.validate(obj, crds[key])]
    return problems


def by_kind(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind
             and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


async def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None,
                  check: bool = True) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        require_kubectl(), "--kubeconfig", str(kubeconfig), *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else None,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )
    out, err = await asyncio.wait_for(
        proc.communicate(stdin.encode() if stdin is not None else None), timeout=60)
    rc = proc.returncode or 0
    if check and rc != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({rc}): {err.decode()}")
    return rc, out.decode(), err.decode()
