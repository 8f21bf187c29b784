"""`canaryd serve --shards`: bad values are refused before anything starts, naming the option."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from canaryd.daemon import DaemonOptions


@pytest.mark.parametrize(("args", "named", "says"), [
    (["--shards", "257"], "--shards", "between 1 and 256"),
    (["--shards", "4", "--no-leader-elect"], "--shards", "needs leader election"),
])
def test_bad_shard_options_are_refused_naming_the_option(args: list[str], named: str,
                                                         says: str) -> None:
    done = subprocess.run([sys.executable, "-m", "canaryd", "serve", *args],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done
    assert named in done.stderr and says in done.stderr, done.stderr


def test_one_shard_is_the_single_leader_and_needs_nothing_else() -> None:
    options = DaemonOptions(config=Path("x"), leader_election=False)
    assert options.shards == 1
    assert DaemonOptions(config=None, shards=256).shards == 256
    with pytest.raises(ValueError, match="--shards: shards must be between 1 and 256"):
        DaemonOptions(config=None, shards=0)
    with pytest.raises(ValueError, match=r"--lease-name: .* label value"):
        DaemonOptions(config=None, shards=4, lease_name="x" * 64)
