"""`canaryd demo`: the sandbox, then consecutive releases of one target: a healthy version
promoted (stable now runs it), then a faulty one rolled back (stable keeps the last good one).
Each release starts from the steady state the previous one left: canaryd itself puts the
traffic back on stable; the demo never touches the VirtualService.

Everything runs for real: the Kubernetes API emulator, the simulated mesh, a real Prometheus
and the canaryd controller. Progress is printed as it happens, from the Rollout's status.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from canaryd import log as logging_setup
from canaryd.client import render

SCENARIOS = ("healthy", "faulty", "latency")
EXPECTED = {"healthy": "Succeeded", "faulty": "RolledBack", "latency": "RolledBack"}
FAULTS = {
    "healthy": {"sandbox.canaryd.io/error-ratio": "0", "sandbox.canaryd.io/latency-p99-ms": "80",
                "sandbox.canaryd.io/latency-p50-ms": "20"},
    "faulty": {"sandbox.canaryd.io/error-ratio": "0.05"},
    "latency": {"sandbox.canaryd.io/error-ratio": "0", "sandbox.canaryd.io/latency-p50-ms": "150",
                "sandbox.canaryd.io/latency-p99-ms": "700"},
}


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="roll out a healthy and a faulty canary in the sandbox",
        description="Start the sandbox and canaryd, roll out a healthy canary (promoted) and a "
        "faulty one (rolled back), printing every step and check. Exit 0 when both end as "
        "expected.",
    )
    p.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all",
                   help="run one scenario (default: healthy then faulty)")
    p.add_argument("--config", type=Path, default=None,
                   help="canaryd config (default: config/canaryd.yaml or the packaged one)")
    p.add_argument("--verbose", action="store_true", help="also print canaryd's own logs")
    p.set_defaults(handler=run)


def _config_path(given: Path | None) -> Path:
    if given is not None:
        return given
    local = Path("config/canaryd.yaml")
    if local.exists():
        return local
    return Path(str(resources.files("canaryd").joinpath("data/canaryd.yaml")))


def manifest(name: str, version: str) -> dict[str, Any]:
    text = resources.files("canaryd").joinpath("data/example-rollout.yaml").read_text()
    body: dict[str, Any] = copy.deepcopy(yaml.safe_load(text))
    body["metadata"]["name"] = name
    body["spec"]["version"] = version
    return body


@dataclass
class Printer:
    name: str
    seen: int = 0
    checks_seen: int = 0

    def feed(self, status: dict[str, Any]) -> None:
        """Print new transitions and check results in the order they happened (by seq)."""
        lines: list[tuple[int, int, str]] = []
        for entry in status.get("history", []):
            if entry["seq"] > self.seen:
                weights = entry.get("weights") or {}
                weight = f"{weights.get('stable', '?')}/{weights.get('canary', '?')}"
                lines.append((entry["seq"], 1, f"{entry['phase']:<12} stable/canary "
                                               f"{weight:<7} {entry['reason']}"))
        for check in status.get("checks", []):
            if check.get("seq", 0) > self.checks_seen:
                lines.append((check.get("seq", 0), 0, f"  {render.check_line(check)}"))
        for _, _, line in sorted(lines, key=lambda x: (x[0], x[1])):
            print(f"  [{self.name}] {line}", flush=True)
        self.seen = max([self.seen, *(h["seq"] for h in status.get("history", []))])
        self.checks_seen = max([self.checks_seen,
                                *(c.get("seq", 0) for c in status.get("checks", []))])


async def _scenario(env: Any, daemon: Any, scenario: str, index: int) -> bool:
    from kubernetes_asyncio import client

    custom = client.CustomObjectsApi(env)
    apps = client.AppsV1Api(env)
    name = f"podinfo-{scenario}-{index}"
    version = f"ghcr.io/stefanprodan/podinfo:6.{8 + index}.0"
    # The version's behaviour: the sandbox reads it from the canary Deployment's annotations.
    await apps.patch_namespaced_deployment(
        "podinfo-canary", "demo", {"metadata": {"annotations": FAULTS[scenario]}}
    )
    print(f"\n== release {index + 1}, {scenario}: {version} as rollout demo/{name} "
          f"(canary annotations {FAULTS[scenario]}) ==", flush=True)
    updates: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def listen(_kind: str, obj: dict[str, Any]) -> None:
        if obj["metadata"]["name"] == name:
            updates.put_nowait(obj.get("status") or {})

    daemon.controller.listeners.append(listen)
    printer = Printer(name)
    try:
        await custom.create_namespaced_custom_object(
            "canaryd.io", "v1alpha1", "demo", "rollouts", manifest(name, version)
        )
        while True:
            status = await asyncio.wait_for(updates.get(), timeout=180)
            printer.feed(status)
            phase = status.get("phase")
            if phase in ("Succeeded", "RolledBack", "Failed", "Aborted"):
                ok: bool = phase == EXPECTED[scenario]
                verdict = "as expected" if ok else f"UNEXPECTED (wanted {EXPECTED[scenario]})"
                print(f"== verdict: {phase} - {verdict}\n   why: {status.get('reason')}",
                      flush=True)
                stable = await apps.read_namespaced_deployment("podinfo-stable", "demo")
                images = ", ".join(c.image for c in stable.spec.template.spec.containers)
                print(f"   steady state: podinfo-stable runs {images}", flush=True)
                return ok
    finally:
        daemon.controller.listeners.remove(listen)


async def _main(args: argparse.Namespace) -> int:
    from kubernetes_asyncio import config

    from canaryd.daemon import DaemonOptions
    from canaryd.embedded import embedded
    from canaryd.sandbox.runner import Sandbox

    scenarios = ["healthy", "faulty"] if args.scenario == "all" else [args.scenario]
    print("starting the sandbox: Kubernetes API emulator, simulated mesh, real Prometheus...",
          flush=True)
    # Enough requests per window that 5% errors never read as a pass by noise.
    async with Sandbox(rps=500) as sandbox:
        print(f"  kube API   {sandbox.kube_api_url}  (kubeconfig {sandbox.kubeconfig})")
        print(f"  Prometheus {sandbox.prometheus_url}")
        options = DaemonOptions(
            config=_config_path(args.config), kubeconfig=str(sandbox.kubeconfig),
            host="127.0.0.1", port=0, prometheus_url=sandbox.prometheus_url, identity="demo",
        )
        api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
        try:
            async with embedded(options) as daemon:
                await sandbox.wait_for_traffic(timeout=30)
                results = [await _scenario(api, daemon, s, i) for i, s in enumerate(scenarios)]
        finally:
            await api.close()
    print("\nall scenarios ended as expected" if all(results) else "\nsome scenario FAILED")
    return 0 if all(results) else 1


def run(args: argparse.Namespace) -> int:
    logging_setup.configure(level="info" if args.verbose else "error", json=False)
    try:
        return asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        print(f"canaryd demo: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
