"""The `canaryd` console script: one entry point, one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from canaryd import __version__

# Each name is a module under canaryd.commands exposing `register(subparsers)`; the
# registered parser sets `handler`, a callable taking the parsed args and returning an exit code.
COMMANDS: tuple[str, ...] = (
    "serve", "sandbox", "config", "lint", "demo", "client", "backtest",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canaryd",
        description="Progressive delivery for Kubernetes: canary and blue-green rollouts.",
    )
    parser.add_argument("--version", action="version", version=f"canaryd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"canaryd.commands.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code
