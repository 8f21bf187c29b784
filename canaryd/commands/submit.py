"""`canaryd submit -f rollout.yaml [--set k=v] --wait`: submit, follow, exit with the verdict."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from typing import Any

from canaryd.client import cli, errors
from canaryd.client import manifest as manifests

EPILOG = """exit codes: 0 Succeeded, 1 rolled back / failed / aborted, 2 bad input or usage,
3 server unreachable or auth failed, 4 --timeout reached (the rollout goes on)"""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "submit", help="submit a rollout; with --wait, follow it and exit with its verdict",
        description="Submit a Rollout manifest to canaryd. With --wait, print one line per "
                    "event (weights, each check against its threshold, pauses, the verdict) "
                    "and exit with the verdict.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-f", "--filename", required=True, metavar="FILE",
                   help="the Rollout manifest, YAML or JSON (- for stdin)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, e.g. spec.version=ghcr.io/org/app:1.2.3 or "
                        "spec.plan.steps[0].weight=5 (repeatable)")
    p.add_argument("-n", "--namespace", default=None,
                   help="namespace, when the manifest names none")
    p.add_argument("--dry-run", action="store_true",
                   help="validate everything the server and Kubernetes check (the models, the "
                        "config's profile, the target, the CRD schema and admission: "
                        "dryRun=All) and create nothing")
    p.add_argument("--wait", action="store_true", help="follow the rollout to its verdict")
    p.add_argument("--timeout", type=cli.duration, default=None, metavar="DURATION",
                   help="with --wait: give up after this long (exit 4), e.g. 15m")
    p.add_argument("--idempotency-key", default=None,
                   help="reuse across retries of the same job (e.g. the pipeline run id) so a "
                        "retried submit returns the same rollout; default: one per invocation")
    cli.add_output(p)
    cli.add_connection(p)
    p.set_defaults(handler=handler)


def handler(args: argparse.Namespace) -> int:
    return cli.run(lambda: submit(args))


async def submit(args: argparse.Namespace) -> int:
    if args.dry_run and args.wait:
        raise manifests.ManifestError("--wait has nothing to follow with --dry-run")
    doc = manifests.load(args.filename)
    for assignment in args.sets:
        manifests.apply_set(doc, assignment)
    if args.namespace and isinstance(doc.get("metadata"), dict):
        doc["metadata"].setdefault("namespace", args.namespace)
    key = args.idempotency_key or str(uuid.uuid4())
    async with cli.client(args) as api:
        created, replayed = await api.submit(doc, idempotency_key=key, dry_run=args.dry_run)
        for warning in api.warnings:
            print(f"canaryd: warning: {warning}", file=sys.stderr)
        meta = created["metadata"]
        ns, name = meta["namespace"], meta["name"]
        if args.dry_run:
            if args.output == "json":
                print(json.dumps({"event": "dryRun", "id": None, "data": {
                    "rollout": f"{ns}/{name}", "valid": True, "warnings": api.warnings}}))
            else:
                print(f"rollout {ns}/{name} is valid (dry run, nothing created): "
                      f"{created['spec'].get('target')} -> {created['spec'].get('version')}")
            return errors.SUCCEEDED
        if args.output == "json":
            print(json.dumps({"event": "submitted", "id": None, "data": {
                "rollout": f"{ns}/{name}", "replayed": replayed,
                "url": f"{api.url}/api/v1/rollouts/{ns}/{name}"}}), flush=True)
        else:
            verb = "already submitted (same Idempotency-Key)" if replayed else "submitted"
            print(f"rollout {ns}/{name} {verb}: {created['spec'].get('target')} -> "
                  f"{created['spec'].get('version')}", flush=True)
        if not args.wait:
            return errors.SUCCEEDED
        return await cli.watch(api, ns, name, as_json=args.output == "json",
                               deadline=args.timeout, out=sys.stdout, err=sys.stderr)
