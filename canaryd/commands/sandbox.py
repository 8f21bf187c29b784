"""`canaryd sandbox`: run the local sandbox (API server, mesh, Prometheus) until stopped.

Prints where everything is (or, with `--json`, one JSON line on stdout once the sandbox is
ready, for scripts and tests), then runs until SIGINT or SIGTERM and tears everything down:
no child process and no temporary file survives, only a kubeconfig written to a path the user
chose. Logs go to stderr so stdout stays machine-readable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from canaryd import aio, log

if TYPE_CHECKING:
    from canaryd.embedded import SandboxDaemon
    from canaryd.sandbox.realkube import Binaries
    from canaryd.sandbox.runner import Sandbox

_TRAFFIC_TIMEOUT = 30.0


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "sandbox",
        help="run the local sandbox",
        description="Run a local Kubernetes API server, a simulated service mesh with an "
        "example application, and Prometheus, until interrupted.",
    )
    parser.add_argument(
        "--kubeconfig",
        metavar="PATH",
        type=Path,
        help="write the kubeconfig here and keep it after exit "
        "(default: inside the sandbox's temporary directory)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON line with the endpoints when ready"
    )
    parser.add_argument(
        "--rps",
        type=float,
        default=None,
        help="requests per second the mesh sends to the example app (default: from its YAML)",
    )
    parser.add_argument(
        "--no-example-app",
        dest="example_app",
        action="store_false",
        help="do not create the example application (podinfo in namespace demo)",
    )
    parser.add_argument(
        "--kube", choices=("emulator", "real"), default="emulator",
        help="emulator: canaryd's embedded API server (default); real: etcd, kube-apiserver, "
        "controller-manager, scheduler and kwok built by `make realkube`",
    )
    parser.add_argument(
        "--config", type=Path, default=None, metavar="FILE",
        help="canaryd config for the daemon: try your own profiles and thresholds "
        "(default: config/canaryd.yaml)",
    )
    parser.add_argument("--log-level", default="info", help="debug, info, warning or error")
    parser.add_argument(
        "--no-daemon", action="store_true",
        help="run only the sandbox, without canaryd's controller and API",
    )
    parser.set_defaults(handler=handler)


def handler(args: argparse.Namespace) -> int:
    log.configure(level=args.log_level, json=True if args.json else None)
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    if args.config is not None and not args.no_daemon:
        from canaryd.config import load_settings
        from canaryd.core.settings import ConfigError

        try:
            load_settings(args.config, env={})
        except (ConfigError, OSError) as exc:
            print(f"canaryd sandbox: {exc}", file=sys.stderr)
            return 2
    # Imported here: every `canaryd` invocation builds this parser, few run the sandbox.
    from canaryd.sandbox.prometheus import PrometheusError
    from canaryd.sandbox.runner import Sandbox, SandboxError

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)

    from canaryd.sandbox.realkube import BinariesNotBuiltError, RealKube, RealKubeError

    real = None
    if args.kube == "real":
        try:
            real = RealKube()
            real.binaries = await asyncio.to_thread(_binaries)
        except BinariesNotBuiltError as exc:
            print(f"canaryd sandbox: {exc}", file=sys.stderr)
            return 1
    sandbox = Sandbox(
        kubeconfig_path=args.kubeconfig.resolve() if args.kubeconfig else None,
        example_app=args.example_app,
        rps=args.rps,
        kube=real,
        own_kube=real is not None,
    )
    # Start in a task so that a signal during start-up aborts it (Sandbox.start cleans up
    # after itself when cancelled) instead of waiting for a start that may hang.
    starting = asyncio.create_task(_start(sandbox, wait_for_traffic=args.example_app))
    stop_wait = asyncio.create_task(stopping.wait())
    await aio.first(starting, stop_wait)
    if not starting.done():
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await sandbox.stop()
        return 0
    try:
        starting.result()
    except Exception as exc:
        stop_wait.cancel()
        # Expected failures (missing binary, timeouts) read well as they are; show the type
        # of anything else, e.g. an ApiException from the API server.
        known = isinstance(exc, SandboxError | PrometheusError | RealKubeError | OSError)
        print(f"canaryd sandbox: {exc if known else repr(exc)}", file=sys.stderr)
        return 1

    from canaryd.embedded import for_sandbox

    try:
        if args.no_daemon:
            _announce(sandbox, None, as_json=args.json)
            await stop_wait
        else:
            async with for_sandbox(sandbox, config_path=args.config) as daemon:
                _announce(sandbox, daemon, as_json=args.json)
                await stop_wait
    finally:
        await sandbox.stop()
    return 0


def _binaries() -> Binaries:
    from canaryd.sandbox.realkube import find_binaries

    return find_binaries()


async def _start(sandbox: Sandbox, *, wait_for_traffic: bool) -> None:
    await sandbox.start()
    if wait_for_traffic:
        # "Ready" means queries already answer: Prometheus holds the example's series.
        try:
            await sandbox.wait_for_traffic(timeout=_TRAFFIC_TIMEOUT)
        except BaseException:
            await sandbox.stop()
            raise


def _announce(sandbox: Sandbox, daemon: SandboxDaemon | None, *, as_json: bool) -> None:
    endpoints = sandbox.endpoints()
    if daemon is not None:
        # The admin token is printed on purpose: this is the user's own local sandbox, and
        # `canaryd submit` needs it. It is never logged.
        endpoints = {**endpoints, "api_url": daemon.url, "token": daemon.token}
    if as_json:
        print(json.dumps(endpoints), flush=True)
        return
    lines = [
        "canaryd sandbox is running (Ctrl-C to stop)",
        f"  Kubernetes API:  {endpoints['kube_api_url']}",
        f"  kubeconfig:      {endpoints['kubeconfig']}",
        f"  Prometheus:      {endpoints['prometheus_url']}",
        f"  mesh metrics:    {endpoints['mesh_metrics_url']}",
    ]
    if daemon is not None:
        lines += [
            f"  canaryd API:     {daemon.url}",
            f"  dashboard:       {daemon.url}/ui/ (sign in with the admin token)",
            f"  admin token:     {daemon.token}",
        ]
    lines += [
        "Try:",
        f"  kubectl --kubeconfig {endpoints['kubeconfig']} get virtualservices -n demo",
    ]
    if daemon is not None:
        lines.append(
            f"  CANARYD_URL={daemon.url} CANARYD_TOKEN={daemon.token} "
            "canaryd submit -f config/examples/canary.yaml --wait"
        )
    print("\n".join(lines), flush=True)
