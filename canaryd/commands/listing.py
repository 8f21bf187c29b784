"""`canaryd list`: rollouts, filtered by namespace, target or phase; with `--target`, the
target's release history (newest first: version, from, to, verdict, times)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from canaryd.client import cli, errors, render
from canaryd.core.model import TERMINAL_PHASES, Phase

TERMINAL = frozenset(p.value for p in TERMINAL_PHASES)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "list", help="list rollouts", description="List rollouts (all namespaces by default); "
        "with --target, that target's release history, newest first.")
    p.add_argument("-n", "--namespace", default=None, help="only this namespace")
    p.add_argument("--target", default=None, metavar="[NAMESPACE/]TARGET",
                   help="the release history of this spec.target (in NAMESPACE, if given)")
    p.add_argument("--phase", default=None, choices=[ph.value for ph in Phase])
    cli.add_output(p)
    cli.add_connection(p)
    p.set_defaults(handler=lambda args: cli.run(lambda: listing(args)))


def _columns(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    )


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
    return _columns(rows)


def images(revision: Any) -> str:
    """status.release.from/to as people read it: the image (one container), or
    container=image for each; '-' when not recorded."""
    found = revision.get("images") if isinstance(revision, Mapping) else None
    if not isinstance(found, Mapping) or not found:
        return "-"
    if len(found) == 1:
        return str(next(iter(found.values())))
    return ",".join(f"{name}={image}" for name, image in sorted(found.items()))


def finished_at(status: Mapping[str, Any]) -> str | None:
    """When the rollout reached its terminal phase (its last history entry into one)."""
    history = status.get("history")
    if status.get("phase") not in TERMINAL or not isinstance(history, list):
        return None
    for entry in reversed(history):
        if isinstance(entry, Mapping) and entry.get("phase") == status.get("phase"):
            return str(entry.get("time") or "") or None
    return None


def release(obj: Mapping[str, Any]) -> dict[str, Any]:
    """One release of a target, as `list --target` shows it (and prints with -o json)."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    status = obj.get("status") if isinstance(obj.get("status"), Mapping) else {}
    assert isinstance(status, Mapping)
    rel = status.get("release") if isinstance(status.get("release"), Mapping) else {}
    assert isinstance(rel, Mapping)
    phase = str(status.get("phase") or "Pending")
    return {
        "namespace": meta.get("namespace"), "name": meta.get("name"),
        "target": spec.get("target"), "version": spec.get("version"),
        "from": images(rel.get("from")), "to": images(rel.get("to")),
        "phase": phase, "verdict": phase if phase in TERMINAL else None,
        "started": meta.get("creationTimestamp"), "finished": finished_at(status),
        "reason": str(status.get("reason") or ""),
    }


def history(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every release, newest first (by creation, to the second; then by name, last first)."""
    releases = [release(obj) for obj in items]
    releases.sort(key=lambda r: (str(r["started"] or ""), str(r["name"])), reverse=True)
    return releases


def history_table(releases: list[dict[str, Any]]) -> str:
    rows = [("NAMESPACE", "NAME", "VERSION", "FROM", "TO", "VERDICT", "STARTED", "FINISHED",
             "REASON")]
    for r in releases:
        rows.append((
            str(r["namespace"]), str(r["name"]), str(r["version"]), r["from"], r["to"],
            r["verdict"] or f"({r['phase']})", str(r["started"] or "-"),
            str(r["finished"] or "-"), r["reason"][:60],
        ))
    return _columns(rows)


def target_filter(text: str | None, namespace: str | None) -> tuple[str | None, str | None]:
    """`--target NAMESPACE/TARGET` or `--target TARGET` (with -n) as the API's namespace and
    target filters (the API checks both names and answers 400 naming the bad one)."""
    if text is None:
        return namespace, None
    ns, sep, target = text.rpartition("/")
    if not sep:
        return namespace, target
    if namespace is not None and namespace != ns:
        raise ValueError(f"--target {text} names namespace {ns}, -n names {namespace}")
    return ns, target


async def listing(args: argparse.Namespace) -> int:
    try:
        namespace, target = target_filter(args.target, args.namespace)
    except ValueError as exc:
        print(f"canaryd list: {exc}", file=sys.stderr)
        return errors.USAGE
    async with cli.client(args) as api:
        items = await api.list(namespace=namespace, target=target, phase=args.phase)
    if target is not None:
        releases = history(items)
        print(json.dumps(releases, indent=2) if args.output == "json"
              else history_table(releases))
    else:
        print(json.dumps(items, indent=2) if args.output == "json" else table(items))
    return errors.SUCCEEDED
