"""Hook calls and notifications: what the guarded HTTP client costs, and what the pure side
(notices, Slack/Teams/CloudEvents rendering) costs per rollout. Prints figures, asserts
nothing.

    .venv/bin/python bench/hooks_bench.py [--calls 500] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from canaryd.adapters import notify, webhook
from canaryd.core.model import CheckResult, HistoryEntry, Phase, RolloutStatus, Verdict
from canaryd.core.notices import notices
from tests.hooks.receiver import receiver


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def calls(n: int, concurrency: int) -> None:
    async with receiver() as rec, webhook.session(webhook.AddressPolicy()) as http:
        url = f"{rec.url}/hook"
        body = {"rollout": {"namespace": "demo", "name": "x"}, "checks": [{"v": 1}] * 5}
        for label, secret in (("unsigned", None), ("signed", b"k" * 32)):
            lat = []
            for _ in range(n):
                t = time.perf_counter()
                await webhook.post(http, url, body, deadline=5, retries=0, secret=secret)
                lat.append((time.perf_counter() - t) * 1000)
            print(f"sequential {label} POST: p50 {pct(lat, .5):.2f} ms, "
                  f"p99 {pct(lat, .99):.2f} ms over {n} calls")
        sem = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with sem:
                await webhook.post(http, url, body, deadline=5, retries=0, secret=b"k")

        t = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        took = time.perf_counter() - t
        print(f"{concurrency} concurrent signed POSTs: {n / took:.0f} calls/s")
        rec.answers["/flaky"] = (503, {})
        t = time.perf_counter()
        answer = await webhook.post(http, f"{rec.url}/flaky", body, deadline=30, retries=3)
        print(f"a 503 receiver, 3 retries with backoff: given up after "
              f"{time.perf_counter() - t:.2f} s ({answer.detail})")


def pure(rollouts: int) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    P = Phase
    history = [HistoryEntry(seq=i, time=t0 + timedelta(seconds=i), source=P.PROGRESSING,
                            phase=P.PROGRESSING, trigger="StepPassed", reason="step passed")
               for i in range(1, 99)]
    history.append(HistoryEntry(seq=99, time=t0, source=P.ROLLING_BACK, phase=P.ROLLED_BACK,
                                trigger="TrafficConfirmed", reason="analysis failed"))
    checks = [CheckResult(seq=98, metric=f"m{i}", query="q", value=90.0, unit="%",
                          threshold=">= 99%", verdict=Verdict.FAIL, reason="r", time=t0,
                          step=0) for i in range(20)]
    status = RolloutStatus(phase=P.ROLLED_BACK, sequence=99, history=history, checks=checks)
    meta = {"namespace": "demo", "name": "x", "uid": "u"}
    spec = {"target": "podinfo", "version": "v2"}
    t = time.perf_counter()
    for _ in range(rollouts):
        found = notices(meta, spec, status)
    took = (time.perf_counter() - t) / rollouts
    print(f"notices of a full status (100 transitions, 20 checks): {took * 1e6:.0f} us "
          f"({len(found)} notices)")
    last = found[-1]
    for name, render in notify.RENDER.items():
        t = time.perf_counter()
        for _ in range(rollouts):
            render(last, "https://canaryd.example")
        print(f"render {name}: {(time.perf_counter() - t) / rollouts * 1e6:.0f} us per message")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(calls(args.calls, args.concurrency))
    pure(300)


if __name__ == "__main__":
    main()
