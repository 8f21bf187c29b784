"""The container image, as far as it can be tested without a Docker engine: the Dockerfile's
promises (pinned base, numeric non-root user, entrypoint, port, nothing baked in), and its
two stages replayed on this machine: build the wheel from exactly what stage 1 copies,
install only that wheel into a fresh virtualenv, run `canaryd serve --help` from it with the
install directory read-only."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.deploy.support import DEPLOY, ROOT

DOCKERFILE = ROOT / "Dockerfile"
PINNED_BASE = re.compile(
    r"^python:3\.11\.\d+-slim(-[a-z]+)?@sha256:[0-9a-f]{64}$"
)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def args_defaults() -> dict[str, str]:
    return {k: v for k, _, v in (rest.partition("=") for word, rest in instructions()
                                 if word == "ARG")}


def test_every_stage_starts_from_the_same_pinned_slim_python() -> None:
    bases = [rest.split()[0] for word, rest in instructions() if word == "FROM"]
    assert len(bases) == 2, "a build stage and a runtime stage"
    resolved = {args_defaults().get(b.strip("${}"), b) if b.startswith("$") else b
                for b in bases}
    assert len(resolved) == 1
    (base,) = resolved
    assert PINNED_BASE.match(base), f"base image not pinned to a version and digest: {base}"


def test_runs_as_a_numeric_non_root_user_matching_the_deployment() -> None:
    users = [rest for word, rest in instructions() if word == "USER"]
    assert users, "no USER: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0, f"USER must be a numeric non-root UID: {users[-1]}"
    assert gid.isdigit() and int(gid) > 0
    last_user = max(i for i, (w, _) in enumerate(instructions()) if w == "USER")
    assert not [w for w, _ in instructions()[last_user:] if w in ("RUN", "COPY", "ADD")]
    deployment = yaml.safe_load((DEPLOY / "base" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert pod["securityContext"]["runAsGroup"] == int(gid)


def test_entrypoint_port_and_writable_paths() -> None:
    ins = instructions()
    (entrypoint,) = [json.loads(rest) for word, rest in ins if word == "ENTRYPOINT"]
    assert entrypoint == ["canaryd", "serve"]
    assert [rest for word, rest in ins if word == "EXPOSE"] == ["8080"]
    env = " ".join(rest for word, rest in ins if word == "ENV")
    # Read-only root filesystem: home and temporary files under the /tmp emptyDir.
    assert "HOME=/tmp" in env and "TMPDIR=/tmp" in env and "PYTHONDONTWRITEBYTECODE=1" in env
    deployment = yaml.safe_load((DEPLOY / "base" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert [p["containerPort"] for p in container["ports"]] == [8080]
    assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}


def test_nothing_but_the_wheel_reaches_the_image() -> None:
    ins = instructions()
    copies = [rest for word, rest in ins if word in ("COPY", "ADD")]
    assert copies == ["pyproject.toml README.md ./", "canaryd ./canaryd"], copies
    runtime = ins[[i for i, (w, _) in enumerate(ins) if w == "FROM"][1]:]
    assert not [rest for word, rest in runtime if word in ("COPY", "ADD")]
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "pip wheel --no-deps" in text and "pip install /wheels/*.whl" in text
    for word, rest in ins:
        if word in ("ENV", "ARG"):
            assert not re.search(r"(?i)token|password|secret|CANARYD_CONFIG", rest), rest
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ignore[ignore.index("**")] == "**", "the build context starts from nothing"
    assert {"!pyproject.toml", "!README.md", "!canaryd"} <= set(ignore)


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stage 1: `pip wheel --no-deps` from a context holding only what the Dockerfile copies."""
    context = tmp_path_factory.mktemp("context")
    shutil.copy2(ROOT / "pyproject.toml", context)
    shutil.copy2(ROOT / "README.md", context)
    shutil.copytree(ROOT / "canaryd", context / "canaryd",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheels")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                    "--wheel-dir", str(out), str(context)], check=True, timeout=300,
                   capture_output=True)
    (built,) = out.glob("canaryd-*.whl")
    return built


def test_the_wheel_carries_the_package_data_and_nothing_else(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "canaryd/py.typed" in names
    assert "canaryd/data/crds/canaryd-rollout.yaml" in names
    assert "canaryd/data/example-app.yaml" in names
    assert not [n for n in names if n.startswith(("tests/", "deploy/", "config/"))]
    assert not [n for n in names if n.endswith(".pyc")]


def test_the_wheel_installed_alone_runs_canaryd_serve_help(wheel: Path, tmp_path: Path) -> None:
    """Stage 2: a fresh virtualenv gets the wheel, nothing else of this checkout.

    The wheel's dependencies come from this test run's own environment (a .pth line), not
    from the package index, so the test runs offline; `pip check` proves the wheel's
    declared requirements are met by them, as `pip install` would ensure in the image.
    """
    venv = tmp_path / "opt" / "canaryd"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = _venv_python(venv)
    site = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    (site / "_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True, timeout=300, capture_output=True)
    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True)
    assert "canaryd" not in check.stdout, check.stdout

    # The image's root filesystem is read-only: so is the install here.
    for path in [venv, *venv.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(scratch),
           "TMPDIR": str(scratch), "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    try:
        result = subprocess.run([str(venv / "bin" / "canaryd"), "serve", "--help"], env=env,
                                cwd=scratch, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "--lease-namespace" in result.stdout and "--config" in result.stdout
        where = subprocess.run(
            [str(python), "-c", "import canaryd, canaryd.daemon; print(canaryd.__file__)"],
            env=env, cwd=scratch, capture_output=True, text=True, timeout=60, check=True)
        assert where.stdout.strip().startswith(str(venv)), "imported from the checkout"
        config_check = subprocess.run(
            [str(venv / "bin" / "canaryd"), "config", "check", str(ROOT / "config/canaryd.yaml")],
            env=env, cwd=scratch, capture_output=True, text=True, timeout=60)
        assert config_check.returncode == 0, config_check.stdout + config_check.stderr
    finally:
        for path in [venv, *venv.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | stat.S_IWUSR)
