"""`canaryd serve`: run the controller and its HTTP API."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from canaryd import log as logging_setup
from canaryd.config import ConfigError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="run the controller and its HTTP API",
        description="Run the canaryd daemon: drives Rollouts and serves the HTTP API.",
    )
    p.add_argument("--config", type=Path, default=os.environ.get("CANARYD_CONFIG"),
                   help="config file (env CANARYD_CONFIG); reloaded when it changes")
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"),
                   help="kubeconfig (default: in-cluster when KUBERNETES_SERVICE_HOST is set)")
    p.add_argument("--host", default=os.environ.get("CANARYD_HOST", "0.0.0.0"))  # noqa: S104 (pods serve on all interfaces)
    p.add_argument("--port", type=int, default=int(os.environ.get("CANARYD_PORT", "8080")))
    p.add_argument("--prometheus-url", default=os.environ.get("CANARYD_PROMETHEUS_URL"))
    p.add_argument("--identity", default=os.environ.get("CANARYD_IDENTITY"),
                   help="this replica's name (default: hostname-pid; use the pod name)")
    p.add_argument("--tokens-file", default=os.environ.get("CANARYD_TOKENS_FILE"),
                   help="API tokens file (name, role, token per entry)")
    p.add_argument("--log-level", default=os.environ.get("CANARYD_LOG_LEVEL", "info"))
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from canaryd.daemon import Daemon, DaemonOptions

    logging_setup.configure(level=args.log_level)
    options = DaemonOptions(
        config=args.config, kubeconfig=args.kubeconfig, host=args.host, port=args.port,
        prometheus_url=args.prometheus_url, tokens_file=args.tokens_file,
    )
    if args.identity:
        options.identity = args.identity
    try:
        daemon = Daemon(options)
    except ConfigError as exc:
        print(f"canaryd: {exc}")
        return 2
    asyncio.run(daemon.run())
    return 0
