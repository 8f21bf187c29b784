"""`canaryd list`: rollouts, filtered by namespace, target or phase."""

from __future__ import annotations

import argparse
import json
from typing import Any

from canaryd.client import cli, errors, render
from canaryd.core.model import Phase


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "list", help="list rollouts", description="List rollouts (all namespaces by default).")
    p.add_argument("-n", "--namespace", default=None, help="only this namespace")
    p.add_argument("--target", default=None, help="only rollouts of this target")
    p.add_argument("--phase", default=None, choices=[ph.value for ph in Phase])
    cli.add_output(p)
    cli.add_connection(p)
    p.set_defaults(handler=lambda args: cli.run(lambda: listing(args)))


def table(items: list[dict[str, Any]]) -> str:
    rows = [("NAMESPACE", "NAME", "TARGET", "PHASE", "CANARY", "STEP", "REASON")]
    for obj in items:
        meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
        weights = status.get("weights") or {}
        rows.append((
            meta["namespace"], meta["name"], str(spec.get("target", "")),
            str(status.get("phase", "Pending")), f"{weights.get('canary', 0)}%",
            render.step_of(status),
            str(status.get("reason", ""))[:60],
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    )


async def listing(args: argparse.Namespace) -> int:
    async with cli.client(args) as api:
        items = await api.list(namespace=args.namespace, target=args.target, phase=args.phase)
    print(json.dumps(items, indent=2) if args.output == "json" else table(items))
    return errors.SUCCEEDED
