"""What a finished Rollout costs in the daemon's cache: bytes per finished rollout, kept
whole (as before the summaries) and as its summary (`canaryd.core.summary`), and the
extrapolation to 50,000 (issue 17: under 500 MB RSS). Prints figures, asserts nothing.

    .venv/bin/python bench/cache_memory.py [--rollouts 5000] [--checks 20]

Each measurement runs in a fresh process of its own (`--child`): N finished rollouts, each
the JSON of a rollout the sandbox really rolled back (bench/data/finished-rollouts.json) with
its own name, uid, resourceVersion and check values, its check list grown to `--checks`
entries (`controller.checksKept`, default 20) from its own real entries, is decoded
(json.loads, as the Kubernetes client does) and handed to the controller's informer
(`Informer.apply`, which caches it and tells the controller and listeners), then read as a
reconcile round reads every cached rollout (the phase gauge, arbitration's entries,
retention). Measured: the Python heap (tracemalloc, current traced bytes after
`gc.collect()`) and, in another process without tracemalloc, the RSS (/proc/self/statm)
before and after.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "bench" / "data" / "finished-rollouts.json"
TARGET = 50_000
PAGE = os.sysconf("SC_PAGE_SIZE")


def template(checks: int) -> dict[str, Any]:
    """The longest real rolled-back rollout, its checks grown to `checks` entries (the
    real ones repeated as earlier analysis runs: earlier seq, their own values)."""
    items = json.loads(DATA.read_text())
    obj = max((i for i in items if i["status"]["phase"] == "RolledBack"),
              key=lambda i: len(i["status"].get("checks") or []))
    obj = copy.deepcopy(obj)
    real = obj["status"]["checks"]
    grown: list[dict[str, Any]] = []
    k = 0
    while len(grown) + len(real) < checks:
        c = copy.deepcopy(real[k % len(real)])
        c["seq"] = 1 + k // len(real)
        grown.append(c)
        k += 1
    obj["status"]["checks"] = grown + real
    return obj


def instances(base: dict[str, Any], n: int) -> Iterator[str]:
    """N distinct JSON texts of `base`, one at a time: what N list items or watch events
    would carry."""
    for i in range(n):
        obj = copy.deepcopy(base)
        meta = obj["metadata"]
        meta.update(name=f"old{i:06d}", namespace="history", uid=f"uid-{i:010d}",
                    resourceVersion=str(100_000 + i),
                    creationTimestamp=f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T00:00:00Z")
        obj["spec"]["target"] = f"t{i % 5000:04d}"
        for j, c in enumerate(obj["status"]["checks"]):
            if isinstance(c.get("value"), float):
                c["value"] = c["value"] + (i * 31 + j) * 1e-9  # no two equal floats
            if isinstance(c.get("requests"), float):
                c["requests"] = c["requests"] + i * 1e-6
        yield json.dumps(obj)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def child(mode: str, n: int, checks: int, traced: bool) -> dict[str, Any]:
    import asyncio

    from kubernetes_asyncio import client

    from canaryd.adapters.prometheus import PrometheusClient
    from canaryd.core import targets
    from canaryd.core.settings import Settings
    from canaryd.runtime.controller import Controller
    from canaryd.runtime.metrics import DaemonMetrics
    from canaryd.runtime.retention import finished

    base = template(checks)

    async def run() -> dict[str, Any]:
        api = client.ApiClient()
        try:
            conf = Settings()  # the defaults: no notification receivers
            controller = Controller(api=api, settings=lambda: conf, metrics=DaemonMetrics(),
                                    prometheus=PrometheusClient("http://127.0.0.1:9"),
                                    identity="bench")
            cache = controller.cache
            if mode == "whole":  # the cache as it was: every object whole
                cache.keep_whole = lambda _obj, _read: True
            gc.collect()
            if traced:
                tracemalloc.start()
            before_heap = tracemalloc.get_traced_memory()[0] if traced else 0
            before_rss = rss()
            took = 0.0
            for text in instances(base, n):
                t = time.perf_counter()
                controller._informer.apply("ADDED", json.loads(text))
                took += time.perf_counter() - t
            # A reconcile round's reads of every cached rollout, memos included.
            controller.reporter.phases()
            targets.arbitrate(cache.entry(o) for o in cache.values())
            finished(cache.values(), cache)
            gc.collect()
            heap = tracemalloc.get_traced_memory()[0] - before_heap if traced else 0
            grown = rss() - before_rss
            summarised = sum(1 for k in cache if not cache.whole(k))
            return {"mode": mode, "n": len(cache), "summarised": summarised,
                    "heap": heap, "rss_delta": grown, "rss": rss(), "apply_seconds": took,
                    "json_bytes": len(json.dumps(base)),
                    "checks": len(base["status"]["checks"])}
        finally:
            await api.close()

    return asyncio.run(run())


def spawn(mode: str, n: int, checks: int, traced: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, "--rollouts", str(n),
           "--checks", str(checks)] + (["--traced"] if traced else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1800)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rollouts", type=int, default=5000, help="finished rollouts loaded")
    p.add_argument("--checks", type=int, default=20,
                   help="status.checks entries per rollout (controller.checksKept)")
    p.add_argument("--summary-rollouts", type=int, default=None,
                   help="load this many for the summaries (default: --rollouts)")
    p.add_argument("--child", choices=("whole", "summary"), help=argparse.SUPPRESS)
    p.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.rollouts, args.checks, args.traced)))
        return
    sizes = {"whole": args.rollouts, "summary": args.summary_rollouts or args.rollouts}
    rows = {}
    for mode, n in sizes.items():
        traced = spawn(mode, n, args.checks, True)
        plain = spawn(mode, n, args.checks, False)
        rows[mode] = (traced, plain)
        print(f"{mode}: {n} finished rollouts ({traced['checks']} checks, "
              f"{traced['json_bytes']} bytes of JSON each), {traced['summarised']} cached "
              f"as summaries; decoding and applying one: "
              f"{plain['apply_seconds'] / n * 1e6:.0f} us", flush=True)
    print()
    print(f"{'cached as':<10} {'heap/rollout':>14} {'RSS/rollout':>13} "
          f"{'heap at 50k':>12} {'RSS at 50k':>11} {'process RSS':>12}")
    for mode, (traced, plain) in rows.items():
        n = traced["n"]
        heap, grown = traced["heap"] / n, plain["rss_delta"] / plain["n"]
        base_rss = plain["rss"] - plain["rss_delta"]
        print(f"{mode:<10} {heap / 1024:>10.1f} KiB {grown / 1024:>9.1f} KiB "
              f"{heap * TARGET / 2**20:>8.0f} MiB {(base_rss + grown * TARGET) / 2**20:>7.0f} MiB"
              f" {plain['rss'] / 2**20:>8.0f} MiB")
    w, s = rows["whole"][0]["heap"] / rows["whole"][0]["n"], (
        rows["summary"][0]["heap"] / rows["summary"][0]["n"])
    print(f"\nsummaries: {w / s:.1f}x less heap per finished rollout; 'RSS at 50k' is the "
          "process before loading plus 50,000 times the RSS growth per rollout")


if __name__ == "__main__":
    main()
