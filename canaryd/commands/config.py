"""`canaryd config check FILE`: validate a configuration, listing every error with its path."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from canaryd.config import load_settings
from canaryd.core.settings import ConfigError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("config", help="work with configuration files")
    inner = p.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    check = inner.add_parser("check", help="validate a config file")
    check.add_argument("file", type=Path)
    check.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.file, env={})
    except FileNotFoundError:
        print(f"{args.file}: no such file", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(
        f"{args.file}: ok ({len(settings.metrics)} metric templates, "
        f"{len(settings.profiles)} profiles: {', '.join(sorted(settings.profiles))})"
    )
    return 0
