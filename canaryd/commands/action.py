"""`canaryd pause|resume|promote|abort [NAMESPACE/]NAME`: ask the controller to act."""

from __future__ import annotations

import argparse
import json
from typing import Any

from canaryd.client import cli, errors
from canaryd.core import transitions

_HELP = {
    "pause": "pause a progressing rollout (traffic stays where it is)",
    "resume": "resume a paused rollout, or approve a manual gate",
    "promote": "skip the remaining steps: all traffic to the canary",
    "abort": "roll back: all traffic to stable",
}
ACTIONS = {a: _HELP[a] for a in transitions.ACTIONS}  # the state machine's actions


def register(sub: Any) -> None:
    for action, text in ACTIONS.items():
        p: argparse.ArgumentParser = sub.add_parser(action, help=text, description=text[0].upper()
                                                    + text[1:] + ". Needs role operate.")
        cli.add_ref(p)
        cli.add_output(p)
        cli.add_connection(p)
        p.set_defaults(handler=lambda args, a=action: cli.run(lambda: act(args, a)))


async def act(args: argparse.Namespace, action: str) -> int:
    ns, name = cli.ref(args)
    async with cli.client(args) as api:
        obj = await api.act(ns, name, action)
    if args.output == "json":
        print(json.dumps(obj, indent=2))
    else:
        phase = (obj.get("status") or {}).get("phase", "Pending")
        print(f"{action} requested for rollout {ns}/{name} (phase {phase}); "
              "the controller acts on it within a tick")
    return errors.SUCCEEDED
