"""Files shipped inside the package must match their sources in the repository."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic.alias_generators import to_camel, to_snake

from canaryd import crd
from canaryd.core.settings import ControllerSettings, parse_settings

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


def test_the_shipped_config_names_every_controller_setting_with_its_default() -> None:
    """Every copy of the config (package, repository, kustomize, Helm values) spells out each
    controller key at its default, so an operator sees what can be tuned (identity is the
    pod's name, set per replica on the command line)."""
    wanted = {to_camel(name): field.default
              for name, field in ControllerSettings.model_fields.items() if name != "identity"}
    assert "keepFinished" in wanted and wanted["keepFinished"] == 50
    copies = {
        "config/canaryd.yaml": yaml.safe_load((ROOT / "config/canaryd.yaml").read_text()),
        "canaryd/data/canaryd.yaml": yaml.safe_load((DATA / "canaryd.yaml").read_text()),
        "deploy/config/canaryd.yaml": yaml.safe_load(
            (ROOT / "deploy/config/canaryd.yaml").read_text()),
        "values.yaml config": yaml.safe_load(
            (ROOT / "deploy/helm/canaryd/values.yaml").read_text())["config"],
    }
    for where, doc in copies.items():
        shipped = parse_settings(doc, source=where).controller
        assert set(doc["controller"]) == set(wanted), where
        for key, default in wanted.items():
            assert getattr(shipped, to_snake(key)) == default, f"{where}: controller.{key}"


def test_rollout_policy_crd_is_generated_from_the_models() -> None:
    rendered = crd.render_policy()
    for folder in (DATA / "crds", ROOT / "deploy" / "crds", ROOT / "deploy/helm/canaryd/crds"):
        assert (folder / "canaryd-rolloutpolicy.yaml").read_text() == rendered, folder
