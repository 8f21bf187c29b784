"""`canaryd lint -f FILE [--config FILE]`: validate Rollout (and RolloutPolicy) manifests
offline.

The same checks the API runs before it creates anything (`canaryd.api.admission.validate`):
the models (every field at once), reserved annotations, and the plan against the config
(profile exists, overrides only tighten, interval within the profile's bounds). What only
the cluster can tell (namespace exists, target busy) is left to `canaryd submit --dry-run`.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from canaryd.client import errors
from canaryd.client.manifest import ManifestError, load_all
from canaryd.config import load_settings
from canaryd.core.settings import ConfigError, Settings

EPILOG = """exit codes: 0 every Rollout is valid, 2 an error (each printed with its path)"""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "lint", help="validate Rollout manifests offline, as the API would",
        description="Validate Rollout manifests without a server: the same checks canaryd's "
                    "API runs on submit (fields, profile, threshold overrides, interval "
                    "bounds), every error with its path.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-f", "--filename", dest="files", action="append", required=True,
                   metavar="FILE", help="a manifest file, YAML or JSON, one or more documents "
                                        "(- for stdin; repeatable)")
    p.add_argument("--config", type=Path, default=None,
                   help="canaryd config holding the profiles (default: env CANARYD_CONFIG, "
                        "else config/canaryd.yaml, else the packaged one)")
    p.set_defaults(handler=run)


def config_path(given: Path | None) -> Path:
    if given is not None:
        return given
    env = os.environ.get("CANARYD_CONFIG")
    if env:
        return Path(env)
    local = Path("config/canaryd.yaml")
    if local.exists():
        return local
    return Path(str(resources.files("canaryd").joinpath("data/canaryd.yaml")))


def dotted(pointer: str | None) -> str:
    """A JSON pointer as a field path: /spec/plan/steps/0/weight -> spec.plan.steps[0].weight"""
    if not pointer:
        return "(document)"
    out = ""
    for raw in pointer.lstrip("/").split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if part.isdigit():
            out += f"[{part}]"
        elif "." in part or "/" in part:
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else part
    return out


def summary(doc: dict[str, Any], settings: Settings) -> str:
    from canaryd.core import plan, policy
    from canaryd.core.manifest import RolloutManifest
    from canaryd.core.model import RolloutSpec

    spec: RolloutSpec
    if _policy(doc):
        checked = policy.check(doc.get("spec"))[0]
        assert checked is not None, "linted first"
        spec = checked
    else:
        spec = RolloutManifest.model_validate(doc).spec
    steps = plan.steps(spec)
    analysis = plan.resolve_analysis(settings, spec)
    if spec.strategy == "blueGreen":
        shape = "blue-green: checked on the preview service, then switched"
    else:
        shape = (f"canary in {len(steps)} step{'s' if len(steps) != 1 else ''} "
                 f"{' -> '.join(f'{s.weight}%' for s in steps)}, then 100%")
    n = len(analysis.checks)
    policy_text = (f"RolloutPolicy, onChange {doc['spec'].get('onChange', 'supersede')}: "
                   if _policy(doc) else "")
    return (f"{policy_text}{shape}; profile {analysis.profile}: {n} "
            f"check{'s' if n != 1 else ''} every {analysis.interval:g}s")


def _policy(doc: dict[str, Any]) -> bool:
    from canaryd.core.policy import POLICY_KIND

    return doc.get("kind") == POLICY_KIND


def lint(doc: dict[str, Any], settings: Settings) -> list[tuple[str, str]]:
    """Every error the API would answer for this document, as (path, message); a
    RolloutPolicy as canaryd checks it (its rollouts as a submit would)."""
    from canaryd.api import admission
    from canaryd.api.problems import Problem
    from canaryd.core import policy

    if _policy(doc):
        name = str((doc.get("metadata") or {}).get("name") or "")
        problem = policy.name_problem(name)
        named = [("metadata.name", problem.split("metadata.name: ", 1)[-1])] if problem else []
        return named + policy.check(doc.get("spec"), settings)[1]

    try:
        admission.validate(doc, settings)
    except Problem as exc:
        return [(dotted(e.pointer), e.detail) for e in exc.errors] or [("(document)", exc.detail)]
    return []


def run(args: argparse.Namespace) -> int:
    cfg = config_path(args.config)
    try:
        settings = load_settings(cfg, env={})
    except FileNotFoundError:
        print(f"canaryd lint: config {cfg}: no such file", file=sys.stderr)
        return errors.USAGE
    except ConfigError as exc:
        print(f"canaryd lint: the config is invalid: {exc}", file=sys.stderr)
        return errors.USAGE
    failed = False
    for path in args.files:
        try:
            docs = load_all(path)
        except ManifestError as exc:
            print(f"{exc}", file=sys.stderr)
            failed = True
            continue
        if not docs:
            print(f"{path}: no documents", file=sys.stderr)
            failed = True
        for i, doc in enumerate(docs):
            name = _name(doc)
            where = f"{path}" + (f" (document {i + 1}{', ' + name if name else ''})"
                                 if len(docs) > 1 else (f" ({name})" if name else ""))
            if not isinstance(doc, dict):
                print(f"{where}: 1 error\n  (document): must be a mapping", file=sys.stderr)
                failed = True
                continue
            problems = lint(doc, settings)
            if problems:
                failed = True
                count = len(problems)
                print(f"{where}: {count} error{'s' if count != 1 else ''}", file=sys.stderr)
                for field, message in problems:
                    print(f"  {field}: {message}", file=sys.stderr)
            else:
                print(f"{where}: ok ({summary(doc, settings)})")
                for warning in _deprecations(doc):
                    print(f"{where}: warning: {warning}", file=sys.stderr)
    return errors.USAGE if failed else errors.SUCCEEDED


def _deprecations(doc: dict[str, Any]) -> list[str]:
    from canaryd.core import policy
    from canaryd.core.manifest import RolloutManifest

    if _policy(doc):
        spec = policy.check(doc.get("spec"))[0]
        return spec.deprecations() if spec is not None else []
    return RolloutManifest.model_validate(doc).spec.deprecations()


def _name(doc: Any) -> str:
    if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
        return ""
    meta = doc["metadata"]
    name = meta.get("name") or meta.get("generateName") or ""
    ns = meta.get("namespace")
    return f"{ns}/{name}" if ns and name else str(name)
