"""`canaryd lint` as a process: the API's validation, offline, every error with its path."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROLLOUT_HEAD = """apiVersion: canaryd.io/v1alpha1
kind: Rollout
metadata: {name: lint-me, namespace: demo}
spec:
  target: podinfo
  version: "1.0"
  router: {istio: {virtualService: vs, stable: {host: a}, canary: {host: b}}}
  workloads: {stable: podinfo-stable, canary: podinfo-canary}
"""


def lint(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "canaryd", "lint", *args], capture_output=True,
                          text=True, timeout=60, check=False, cwd=cwd)


def yaml_blocks(doc: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", (ROOT / doc).read_text(), re.DOTALL)


def readme_rollouts(doc: str = "README.md") -> list[str]:
    return [b for b in yaml_blocks(doc) if re.search(r"^kind: Rollout$", b, re.MULTILINE)]


def test_readme_and_shipped_examples_pass(tmp_path: Path) -> None:
    blocks = readme_rollouts()
    assert blocks, "the README shows a Rollout"
    readme = tmp_path / "readme.yaml"
    readme.write_text("---\n".join(blocks))
    examples = sorted((ROOT / "config" / "examples").glob("*.yaml"))
    packaged = ROOT / "canaryd" / "data" / "example-rollout.yaml"
    files = [readme, *examples, packaged]
    result = lint(*(a for f in files for a in ("-f", str(f))),
                  "--config", str(ROOT / "config" / "canaryd.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": ok (") == len(blocks) + len(examples) + 1, result.stdout


def test_every_error_is_listed_with_its_path_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        ROLLOUT_HEAD.replace("target: podinfo", "target: Bad_Name")
        + "  plan: {steps: [{weight: 10}, {weight: 300}]}\n"
        "---\n" + ROLLOUT_HEAD + "  plan: {stepWeight: 20}\n"
        "  analysis: {interval: 1s, thresholds: {istio-success-rate: {min: 90}, nope: {max: 1}}}\n"
    )
    result = lint("-f", str(bad))
    assert result.returncode == 2
    err = result.stderr
    assert "(document 1, demo/lint-me): 2 errors" in err
    assert "  spec.target: 'Bad_Name' is not a valid DNS-1123 label" in err
    assert "  spec.plan.steps[1].weight: Input should be less than or equal to 100" in err
    # the plan against the config's profile: bounds, unknown checks, overrides only tighten
    assert "(document 2, demo/lint-me): 3 errors" in err
    assert "  spec.analysis.interval: 1s is outside the profile's bounds 10s..600s" in err
    assert "  spec.analysis.thresholds.nope: the profile 'default' has no such check" in err
    assert ("  spec.analysis.thresholds.istio-success-rate.min: may only tighten the "
            "profile's min 99") in err


def test_profiles_come_from_the_given_config(tmp_path: Path) -> None:
    rollout = tmp_path / "r.yaml"
    rollout.write_text(ROLLOUT_HEAD + "  plan: {stepWeight: 20}\n  analysis: {profile: quick}\n")
    config = tmp_path / "canaryd.yaml"
    config.write_text("profiles:\n  quick: {interval: 5s, checks: "
                      "[{metric: istio-success-rate, min: 99}]}\n")
    shipped = lint("-f", str(rollout))
    assert shipped.returncode == 2
    assert "spec.analysis.profile: unknown profile 'quick'" in shipped.stderr
    result = lint("-f", str(rollout), "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "profile quick: 1 check every 5s" in result.stdout
    missing = lint("-f", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr


def test_one_analysis_interval_the_old_field_a_deprecated_alias(tmp_path: Path) -> None:
    """spec.analysis.interval is the one place; spec.plan.interval still works, with a
    warning, and is refused (naming both fields) when the two disagree."""
    both = tmp_path / "both.yaml"
    both.write_text(ROLLOUT_HEAD + "  plan: {stepWeight: 20, interval: 30s}\n"
                    "  analysis: {interval: 1m}\n")
    refused = lint("-f", str(both))
    assert refused.returncode == 2
    assert ("spec: spec.plan.interval (30s, deprecated) and spec.analysis.interval (1m) "
            "disagree: set only spec.analysis.interval") in refused.stderr
    old = tmp_path / "old.yaml"
    old.write_text(ROLLOUT_HEAD + "  plan: {stepWeight: 20, interval: 30s}\n")
    accepted = lint("-f", str(old))
    assert accepted.returncode == 0, accepted.stderr
    # maxWeight defaults to 100 with stepWeight; the deprecated interval still applies
    assert "20% -> 40% -> 60% -> 80% -> 100%" in accepted.stdout
    assert "every 30s" in accepted.stdout
    assert "warning: spec.plan.interval is deprecated: set spec.analysis.interval" in (
        accepted.stderr)


def test_the_analysis_guide_example_lints_with_its_config(tmp_path: Path) -> None:
    [config] = [b for b in yaml_blocks("docs/analysis.md") if b.startswith("# tutorial.yaml")]
    (tmp_path / "tutorial.yaml").write_text(config)
    [rollout] = readme_rollouts("docs/analysis.md")
    (tmp_path / "podinfo-a.yaml").write_text(rollout)
    result = lint("-f", str(tmp_path / "podinfo-a.yaml"), "--config",
                  str(tmp_path / "tutorial.yaml"))
    assert result.returncode == 0, result.stderr
    assert "profile tutorial: 3 checks every 5s" in result.stdout


def test_a_rollout_policy_is_checked_as_its_rollouts_would_be(tmp_path: Path) -> None:
    head = ROLLOUT_HEAD.replace("kind: Rollout", "kind: RolloutPolicy")
    bad = tmp_path / "policy.yaml"
    bad.write_text(
        head.replace("name: lint-me", "name: " + "p" * 53)
        + "  onChange: later\n  plan: {steps: [{weight: 10}]}\n"
        "---\n" + head.replace('  version: "1.0"\n', "")
        + "  plan: {steps: [{weight: 10}]}\n  analysis: {profile: nope}\n"
    )
    result = lint("-f", str(bad), "--config", str(ROOT / "config" / "canaryd.yaml"))
    assert result.returncode == 2
    err = result.stderr
    assert "(document 1, demo/" + "p" * 53 + "): 3 errors" in err, err
    assert "  metadata.name: at most 52 characters" in err
    assert "  spec.version: leave spec.version out" in err
    assert "  spec.onChange: Input should be 'supersede' or 'wait'" in err
    assert "(document 2, demo/lint-me): 1 error" in err
    assert "  spec.analysis.profile: unknown profile 'nope'" in err
