"""`canaryd sandbox`: placeholder until the sandbox runner lands (owned by the sandbox work)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("sandbox", help="run the local sandbox")
    parser.set_defaults(handler=lambda _args: 1)
