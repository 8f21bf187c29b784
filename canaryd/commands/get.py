"""`canaryd get [NAMESPACE/]NAME [--wait]`: one rollout's state, or follow it to its verdict."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from canaryd.client import cli, errors, render


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "get", help="show a rollout (with --wait: follow it to its verdict)",
        description="Show a rollout: phase, weights, step, reason and its latest checks.",
    )
    cli.add_ref(p)
    p.add_argument("--wait", action="store_true",
                   help="follow the rollout's events and exit with its verdict (as submit)")
    p.add_argument("--timeout", type=cli.duration, default=None, metavar="DURATION",
                   help="with --wait: give up after this long (exit 4)")
    cli.add_output(p)
    cli.add_connection(p)
    p.set_defaults(handler=lambda args: cli.run(lambda: get(args)))


def describe(obj: dict[str, Any]) -> list[str]:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    weights = status.get("weights") or {}
    lines = [
        f"rollout:  {meta['namespace']}/{meta['name']}",
        f"target:   {spec.get('target')} -> {spec.get('version')}",
        f"phase:    {status.get('phase', 'Pending')}",
        f"step:     {render.step_of(status)}",
        f"weights:  canary {weights.get('canary', 0)}% / stable {weights.get('stable', 100)}%",
        f"reason:   {status.get('reason', '')}",
    ]
    checks = status.get("checks") or []
    if checks:
        last = [c for c in checks if c.get("seq") == checks[-1].get("seq")]
        deciding = [c for c in last if not c.get("dryRun")]
        trying = [c for c in last if c.get("dryRun")]
        if deciding:
            lines.append("checks:")
            lines.extend(f"  {render.check_line(c)}" for c in deciding)
        if trying:
            lines.append("dry-run checks (recorded, never decide):")
            lines.extend(f"  {render.check_line(c).removeprefix('[dry-run] ')}"
                         for c in trying)
    hooks = status.get("hooks") or []
    if hooks:
        lines.append("hooks:")
        lines.extend(f"  {render.hook_line(h).removeprefix('hook ')}" for h in hooks)
    return lines


async def get(args: argparse.Namespace) -> int:
    ns, name = cli.ref(args)
    async with cli.client(args) as api:
        obj = await api.get(ns, name)
        if args.wait:
            return await cli.watch(api, ns, name, as_json=args.output == "json",
                                   deadline=args.timeout, out=sys.stdout, err=sys.stderr)
    print(json.dumps(obj, indent=2) if args.output == "json" else "\n".join(describe(obj)))
    return errors.SUCCEEDED
