"""`python -m canaryd.sandbox.mesh --kubeconfig PATH --port 0`: run the mesh standalone.

Prints one JSON line `{"metrics_url": ...}` on stdout once serving and synced, then runs
until SIGTERM or SIGINT, and exits 0 after a clean stop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from canaryd import log
from canaryd.sandbox.mesh.mesh import Mesh


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m canaryd.sandbox.mesh")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tick", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--sync-timeout", type=float, default=30.0)
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    mesh = Mesh(kubeconfig=args.kubeconfig, tick=args.tick, seed=args.seed)
    await mesh.start(host=args.host, port=args.port)
    try:
        await mesh.wait_synced(timeout=args.sync_timeout)
        print(json.dumps({"metrics_url": mesh.metrics_url}), flush=True)
        await stop.wait()
    finally:
        await mesh.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    log.configure(json=True)  # logs on stderr: stdout carries only the ready line
    return asyncio.run(run(_parse(argv)))


if __name__ == "__main__":
    sys.exit(main())
