"""The CI examples in docs/ci parse, and their canaryd commands parse with the real CLI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from canaryd.cli import build_parser
from tests.api.support import ROOT

JOBS = sorted((ROOT / "docs" / "ci").glob("*.yml"))


def canaryd_commands(text: str) -> list[list[str]]:
    flat = re.sub(r"\\\n\s*", " ", text)  # shell line continuations
    found = []
    for line in flat.splitlines():
        match = re.search(r"canaryd (submit|abort) .*", line)
        if match:
            found.append(shlex.split(match.group(0).split("||")[0].split(";")[0])[1:])
    return found


@pytest.mark.parametrize("job", JOBS, ids=lambda p: p.name)
def test_ci_jobs_submit_and_wait_with_valid_arguments(job: Path) -> None:
    text = job.read_text()
    yaml.safe_load(text)
    folded = re.sub(r">\n\s+", "", text).replace("\n      --", " --")
    commands = canaryd_commands(folded)
    assert any(c[0] == "submit" and "--wait" in c for c in commands), commands
    parser = build_parser()
    for argv in commands:
        parser.parse_args(argv)
