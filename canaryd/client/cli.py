"""What the client subcommands share: connection flags, output, following, exit codes."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

from canaryd.client import errors, render
from canaryd.client.follow import Event, follow
from canaryd.client.http import CanarydClient
from canaryd.client.manifest import ManifestError
from canaryd.core.durations import parse_duration

DEFAULT_URL = "http://127.0.0.1:8080"


def duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_connection(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection")
    g.add_argument("--url", default=os.environ.get("CANARYD_URL", DEFAULT_URL),
                   help=f"canaryd API URL (env CANARYD_URL; default {DEFAULT_URL})")
    g.add_argument("--token", default=os.environ.get("CANARYD_TOKEN"),
                   help="API bearer token (env CANARYD_TOKEN, preferred: flags show in ps)")
    g.add_argument("--request-timeout", type=duration, default=15.0, metavar="DURATION",
                   help="timeout of each API call (default 15s)")


def add_output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=("text", "json"), default="text",
                   help="text: one line per item; json: JSON (lines, when following)")


def add_ref(p: argparse.ArgumentParser) -> None:
    p.add_argument("rollout", metavar="[NAMESPACE/]NAME", help="the rollout")
    p.add_argument("-n", "--namespace", default=os.environ.get("CANARYD_NAMESPACE", "default"),
                   help="namespace when not given as NAMESPACE/NAME (env CANARYD_NAMESPACE)")


def ref(args: argparse.Namespace) -> tuple[str, str]:
    ns, sep, name = str(args.rollout).rpartition("/")
    return (ns if sep else args.namespace), name


def client(args: argparse.Namespace) -> CanarydClient:
    return CanarydClient(args.url, args.token, timeout=args.request_timeout)


def run(body: Callable[[], Coroutine[Any, Any, int]], *, err: TextIO | None = None) -> int:
    """Run a command, turning every expected failure into its exit code and a clear message."""
    err = err or sys.stderr
    try:
        return asyncio.run(body())
    except errors.ProblemError as exc:
        print("\n".join(f"canaryd: {line}" for line in exc.lines()), file=err)
        if isinstance(exc, errors.AuthFailed) and exc.status == 401:
            print("canaryd: set CANARYD_TOKEN (or --token) to a valid API token", file=err)
        return exc.exit_code
    except errors.ClientError as exc:
        print(f"canaryd: {exc}", file=err)
        return exc.exit_code
    except ManifestError as exc:
        print(f"canaryd: {exc}", file=err)
        return errors.USAGE
    except KeyboardInterrupt:
        return 130


def emit(event: Event, *, as_json: bool, out: TextIO) -> None:
    if as_json:
        print(json.dumps({"event": event.kind, "id": event.id, "data": event.data}), file=out,
              flush=True)
        return
    text = render.line(event)
    if text is not None:
        print(text, file=out, flush=True)


async def watch(
    api: CanarydClient, namespace: str, name: str, *, as_json: bool, deadline: float | None,
    out: TextIO, err: TextIO,
) -> int:
    """Print the events until the verdict: 0 Succeeded, 1 otherwise, 4 at the timeout."""
    outcome: dict[str, Any] = {}

    async def consume() -> None:
        seen_state = False
        async for event in follow(api, namespace, name,
                                  on_reconnect=lambda m: print(f"canaryd: {m}", file=err)):
            if event.kind == "state":
                if seen_state:
                    continue  # sent again on every reconnect
                seen_state = True
            emit(event, as_json=as_json, out=out)
            if event.kind == "verdict":
                outcome.update(event.data)

    try:
        await asyncio.wait_for(consume(), deadline)
    except TimeoutError:
        print(f"canaryd: timed out after {deadline:g}s; rollout {namespace}/{name} goes on "
              "(abort it with: canaryd abort " f"{namespace}/{name})", file=err)
        return errors.TIMEOUT
    return errors.SUCCEEDED if outcome.get("succeeded") else errors.FAILED
