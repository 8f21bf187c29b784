"""`python -m canaryd.sandbox.apiserver`: run the emulator as its own process.

Prints one JSON line `{"kube_api_url": ..., "kubeconfig": ...}` once it is ready and
exits cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile

from canaryd.sandbox.apiserver.server import ApiServer


async def _run(args: argparse.Namespace) -> None:
    server = ApiServer(deployment_ready_delay=args.deployment_ready_delay)
    await server.start(host=args.host, port=args.port)
    path = args.kubeconfig
    if not path:
        fd, path = tempfile.mkstemp(prefix="sandbox-kubeconfig-", suffix=".yaml")
        os.close(fd)
    server.write_kubeconfig(path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sys.stdout.write(json.dumps({"kube_api_url": server.url, "kubeconfig": str(path)}) + "\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m canaryd.sandbox.apiserver")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--kubeconfig", default="")
    parser.add_argument("--deployment-ready-delay", type=float, default=0.5)
    asyncio.run(_run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
