"""Files shipped inside the package must match their sources in the repository."""

from __future__ import annotations

from pathlib import Path

import yaml

from canaryd import crd

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "canaryd" / "data"


def test_packaged_config_matches_config_dir() -> None:
    assert (DATA / "canaryd.yaml").read_bytes() == (ROOT / "config/canaryd.yaml").read_bytes()


def test_packaged_example_rollout_matches_example() -> None:
    packaged = yaml.safe_load((DATA / "example-rollout.yaml").read_text())
    example = yaml.safe_load((ROOT / "config/examples/canary.yaml").read_text())
    assert packaged == example


def test_rollout_crd_is_generated_from_the_models() -> None:
    rendered = crd.render()
    assert (DATA / "crds" / "canaryd-rollout.yaml").read_text() == rendered
    assert (ROOT / "deploy" / "crds" / "canaryd-rollout.yaml").read_text() == rendered
