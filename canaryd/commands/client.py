"""The API client subcommands, for pipelines and people: submit, get, list, and the actions
pause, resume, promote, abort. Each lives in a module of its own; this registers them."""

from __future__ import annotations

from typing import Any

from canaryd.commands import action, get, listing, submit


def register(sub: Any) -> None:
    for module in (submit, get, listing, action):
        module.register(sub)
