"""`canaryd serve`: run the controller and its HTTP API."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from canaryd import log as logging_setup
from canaryd.api.auth import TokenError
from canaryd.core.settings import ConfigError
from canaryd.core.shards import MAX_SHARDS


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
    ha = p.add_argument_group(
        "leader election",
        "Every replica serves the API; the one holding a coordination.k8s.io Lease drives "
        "rollouts (client-go semantics: lease duration > renew deadline > 1.2 x retry period).",
    )
    ha.add_argument("--leader-elect", action=argparse.BooleanOptionalAction,
                    default=_env_bool("CANARYD_LEADER_ELECT", True),
                    help="elect a leader through a Lease (env CANARYD_LEADER_ELECT; default on)")
    ha.add_argument("--lease-namespace", default=os.environ.get("CANARYD_LEASE_NAMESPACE"),
                    help="the Lease's namespace (env CANARYD_LEASE_NAMESPACE; default: the "
                         "pod's namespace in a cluster, else 'default')")
    ha.add_argument("--lease-name", default=os.environ.get("CANARYD_LEASE_NAME",
                                                           "canaryd-leader"),
                    help="the Lease's name (env CANARYD_LEASE_NAME)")
    ha.add_argument("--lease-duration", type=_seconds,
                    default=os.environ.get("CANARYD_LEASE_DURATION", "15"),
                    help="how long a silent leader keeps the Lease, seconds (default 15)")
    ha.add_argument("--renew-deadline", type=_seconds,
                    default=os.environ.get("CANARYD_RENEW_DEADLINE", "10"),
                    help="the leader stops acting when it could not renew for this long "
                         "(default 10)")
    ha.add_argument("--retry-period", type=_seconds,
                    default=os.environ.get("CANARYD_RETRY_PERIOD", "2"),
                    help="how often candidates try and the leader renews (default 2)")
    ha.add_argument("--drain-timeout", type=_seconds,
                    default=os.environ.get("CANARYD_DRAIN_TIMEOUT", "10"),
                    help="on SIGTERM, how long the reconcile round in flight may take to "
                         "finish before the Lease is released (default 10)")
    sh = p.add_argument_group(
        "sharding",
        "Split the targets over N shards, each led through its own Lease "
        "(<lease-name>-shard-<i>); replicas take up to a fair share each (docs/scale.md).",
    )
    sh.add_argument("--shards", type=_shards, default=os.environ.get("CANARYD_SHARDS", "1"),
                    help=f"number of shards, 1 to {MAX_SHARDS} (env CANARYD_SHARDS; default 1: "
                         "one leader drives every rollout)")
    p.set_defaults(handler=run)


def _shards(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and {MAX_SHARDS}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


def run(args: argparse.Namespace) -> int:
    from canaryd.daemon import Daemon, DaemonOptions
    from canaryd.runtime.leader import LeaseTiming

    logging_setup.configure(level=args.log_level)
    try:
        timing = LeaseTiming(lease_duration=args.lease_duration,
                             renew_deadline=args.renew_deadline, retry_period=args.retry_period)
    except ValueError as exc:
        print(f"canaryd: leader election: {exc}")
        return 2
    try:
        options = DaemonOptions(
            config=args.config, kubeconfig=args.kubeconfig, host=args.host, port=args.port,
            prometheus_url=args.prometheus_url, tokens_file=args.tokens_file,
            leader_election=args.leader_elect, lease_namespace=args.lease_namespace,
            lease_name=args.lease_name, lease_timing=timing, drain_timeout=args.drain_timeout,
            shards=args.shards,
        )
    except ValueError as exc:
        print(f"canaryd: {exc}", file=sys.stderr)
        return 2
    if args.identity:
        options.identity = args.identity
    try:
        daemon = Daemon(options)
        asyncio.run(daemon.run())
    except (ConfigError, TokenError) as exc:
        print(f"canaryd: {exc}", file=sys.stderr)
        return 2
    return 0
