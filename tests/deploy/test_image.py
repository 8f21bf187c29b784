"""The container image, as far as it can be tested without a Docker engine: the Dockerfile's
promises (pinned base, numeric non-root user, entrypoint, port, nothing baked in), and its
two stages replayed on this machine: build the wheel from exactly what stage 1 copies,
install only that wheel (and its dependencies) into a fresh virtualenv, then, as UID 10001
with the install read-only, run `canaryd serve --help` and probe a serving daemon's
/healthz. hadolint lints the Dockerfile itself (`make lint`)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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


IMAGE_UID = 10001  # the Dockerfile's USER, checked against it above


def _wheel_requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as zf:
        (meta,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        text = zf.read(meta).decode()
    return [Requirement(line.split(":", 1)[1].strip()) for line in text.splitlines()
            if line.startswith("Requires-Dist:")]


def _dependency_closure(wheel: Path) -> list[metadata.Distribution]:
    """The distributions `pip install <wheel>` would bring, as this test run has them
    installed (the wheel's Requires-Dist without extras, followed transitively)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [(r, ("",)) for r in _wheel_requirements(wheel)]
    while todo:
        req, extras = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e})
                                              for e in extras):
            continue
        dist = metadata.distribution(req.name)
        key = canonicalize_name(req.name)
        assert dist.version in req.specifier or not req.specifier, (req, dist.version)
        wanted = ("", *sorted(req.extras))
        if key in seen and not req.extras:
            continue
        seen[key] = dist
        todo += [(Requirement(r), wanted) for r in dist.requires or []]
    return list(seen.values())


def _copy_distributions(dists: list[metadata.Distribution], site: Path) -> None:
    """Each distribution's recorded files (bytecode too, as `pip install` compiles it; copy2
    keeps the sources' mtimes, so it stays valid)."""
    for dist in dists:
        base = Path(str(dist.locate_file("")))
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))
            if ".." in file.parts or not source.is_file():
                continue  # console scripts live outside site-packages
            target = site / source.relative_to(base)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _as_image_user() -> list[str]:
    """The command prefix that runs a process as the image's UID/GID, without groups."""
    if os.getuid() == IMAGE_UID:
        return []
    if os.getuid() == 0 and shutil.which("setpriv"):
        return ["setpriv", f"--reuid={IMAGE_UID}", f"--regid={IMAGE_UID}", "--clear-groups",
                "--"]
    reason = f"running as UID {IMAGE_UID} needs root and setpriv (uid {os.getuid()})"
    if os.environ.get("CI"):
        pytest.fail(f"CI must check the install as UID {IMAGE_UID}: {reason}")
    pytest.skip(reason)


def _base_python(prefix: list[str]) -> str:
    """An interpreter of this test run's Python version that the image's UID can execute
    (the test's own may sit under a home directory no other user can enter)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [getattr(sys, "_base_executable", sys.executable),
                  shutil.which(f"python{version}"), f"/usr/local/bin/python{version}",
                  f"/usr/bin/python{version}"]
    for candidate in dict.fromkeys(c for c in candidates if c):
        probe = subprocess.run([*prefix, candidate, "-c", "import sys; print(sys.version)"],
                               capture_output=True, text=True, timeout=30, cwd="/")
        if probe.returncode == 0 and probe.stdout.startswith(version + "."):
            return candidate
    reason = f"no Python {version} that UID {IMAGE_UID} may execute ({candidates})"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _ready_url(proc: subprocess.Popen[bytes], key: str, deadline: float) -> str:
    """`key` of the first JSON line that has it (the emulator's and canaryd's ready lines;
    canaryd's log lines come before)."""
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"process exited ({proc.wait()}) before it was ready")
        with contextlib.suppress(ValueError, KeyError, TypeError):
            return str(json.loads(line)[key])
    raise AssertionError("process not ready in time")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_the_wheel_installed_alone_serves_as_the_image_user_from_a_read_only_install(
    wheel: Path,
) -> None:
    """Stage 2: a fresh virtualenv gets the wheel and its dependencies, nothing else of this
    checkout; owned by root and read-only, it runs `canaryd serve --help`, then serves
    /healthz as UID 10001 with HOME and TMPDIR on a writable scratch directory (the pod's
    /tmp emptyDir).

    The dependencies are copied from this test run's own environment (the distributions
    the wheel's Requires-Dist name, transitively), not downloaded from the package index, so
    the test runs offline; `pip check` then proves the wheel's declared requirements are met
    by exactly what the install holds.
    """
    prefix = _as_image_user()
    base_python = _base_python(prefix)
    root = Path(tempfile.mkdtemp(prefix="canaryd-image-"))  # reachable by the image's UID
    root.chmod(0o755)
    procs: list[subprocess.Popen[bytes]] = []
    venv = root / "opt" / "canaryd"
    try:
        subprocess.run([base_python, "-m", "venv", "--without-pip", str(venv)], check=True,
                       timeout=120)
        python = venv / "bin" / "python"
        pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
        # Without PYTHONPATH: pip would see the checkout's canaryd as installed already.
        pip_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        subprocess.run([*pip, "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                       check=True, timeout=300, capture_output=True, env=pip_env)
        site = Path(subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True).stdout.strip())
        _copy_distributions(_dependency_closure(wheel), site)
        check = subprocess.run([*pip, "check"], capture_output=True, text=True, timeout=120,
                               env=pip_env)
        assert check.returncode == 0, check.stdout + check.stderr

        # The image's root filesystem is read-only: here the install is root's, no writes.
        for path in [venv, *venv.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode & ~0o222 | 0o444 | (0o111 if path.is_dir() else 0))
        scratch = root / "tmp"
        scratch.mkdir()
        if prefix:
            os.chown(scratch, IMAGE_UID, IMAGE_UID)
        config = root / "canaryd.yaml"
        shutil.copy2(ROOT / "config" / "canaryd.yaml", config)
        config.chmod(0o444)
        env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(scratch),
               "TMPDIR": str(scratch), "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8",
               "PYTHONUNBUFFERED": "1"}
        canaryd = [*prefix, str(venv / "bin" / "canaryd")]

        result = subprocess.run([*canaryd, "serve", "--help"], env=env, cwd=scratch,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "--lease-namespace" in result.stdout and "--config" in result.stdout
        where = subprocess.run(
            [*prefix, str(python), "-c", "import canaryd, canaryd.daemon, aiohttp; "
             "print(canaryd.__file__); print(aiohttp.__file__)"],
            env=env, cwd=scratch, capture_output=True, text=True, timeout=60, check=True)
        assert all(line.startswith(str(venv)) for line in where.stdout.split()), where.stdout
        config_check = subprocess.run([*canaryd, "config", "check", str(config)], env=env,
                                      cwd=scratch, capture_output=True, text=True, timeout=60)
        assert config_check.returncode == 0, config_check.stdout + config_check.stderr
        written = subprocess.run([*prefix, str(python), "-c", f"open({str(site / 'x')!r}, 'w')"],
                                 env=env, cwd=scratch, capture_output=True, text=True)
        assert written.returncode != 0 and "Permission denied" in written.stderr

        kubeconfig = root / "kubeconfig"
        api = subprocess.Popen([sys.executable, "-m", "canaryd.sandbox.apiserver",
                                "--kubeconfig", str(kubeconfig)], stdout=subprocess.PIPE,
                               cwd=ROOT)
        procs.append(api)
        _ready_url(api, "kube_api_url", time.monotonic() + 30)
        kubeconfig.chmod(0o444)
        serve = subprocess.Popen(
            [*canaryd, "serve", "--config", str(config), "--kubeconfig", str(kubeconfig),
             "--host", "127.0.0.1", "--port", "0", "--no-leader-elect", "--identity", "image",
             "--prometheus-url", "http://127.0.0.1:9"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=scratch)
        procs.append(serve)
        url = _ready_url(serve, "url", time.monotonic() + 60)
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as resp:  # noqa: S310
            assert resp.status == 200
            assert json.loads(resp.read()) == {"status": "ok"}
        owner = Path(f"/proc/{serve.pid}/status").read_text()
        (uids,) = [line.split()[1:] for line in owner.splitlines() if line.startswith("Uid:")]
        assert set(uids) == {str(IMAGE_UID)}, f"canaryd serve ran as {uids}"
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for path in [venv, *venv.rglob("*")]:
            if path.exists() and not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o200)
        shutil.rmtree(root, ignore_errors=True)
