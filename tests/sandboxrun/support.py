"""Helpers shared by the sandbox-runner tests: binaries that may be absent, process checks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def require_binary(name: str) -> str:
    """The binary's path; skip when it is absent, but only outside CI (CI must have it)."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI but is not on PATH")
        pytest.skip(f"{name} is not installed")
    return path


def process_alive(pid: int) -> bool:
    """True while `pid` is a live process (a zombie awaiting its reaper counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state letter follows the parenthesised command name, which may contain spaces.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def descendants_named(root_pid: int, name: str) -> list[int]:
    """PIDs of live processes under `root_pid` whose command name is `name`."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        head, tail = stat.rsplit(")", 1)
        pid = int(entry.name)
        names[pid] = head.split("(", 1)[1]
        parents[pid] = int(tail.split()[1])
    found = []
    for pid, comm in names.items():
        ancestor = parents.get(pid)
        while ancestor is not None and ancestor not in (0, 1, root_pid):
            ancestor = parents.get(ancestor)
        if ancestor == root_pid and comm == name:
            found.append(pid)
    return found
