"""Cost of one tick of the simulated mesh's traffic model as the topology grows.

    python bench/mesh_bench.py [--services 10,150,500] [--ticks 50]

Each service splits its traffic between a primary and a canary workload (two flows), as the
sandbox's routes do. Prints, per size, the median and maximum milliseconds per tick and the
share of a 250 ms tick (the sandbox's default) that it takes: the mesh must keep up with its
own clock for Prometheus's rates to be right.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from canaryd.sandbox.mesh import topology, traffic

TICK = 0.25


def routes(services: int) -> list[topology.ServiceRoutes]:
    svc = topology.ServiceRef("shop", "web", 80)

    def workload(name: str, p50: float, p99: float, errors: float) -> topology.Workload:
        return topology.Workload("shop", name, (("app", name),), errors, p50, p99)

    return [
        topology.ServiceRoutes(
            topology.ServiceRef("shop", f"svc{i}", 80), 1000, "virtualservice",
            (
                topology.Flow(svc, svc, workload(f"w{i}-primary", 20, 80, 0.01), 0.9),
                topology.Flow(svc, svc, workload(f"w{i}-canary", i + 1, 4 * (i + 1), 0.0), 0.1),
            ),
        )
        for i in range(services)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", default="10,150,500")
    parser.add_argument("--ticks", type=int, default=50)
    args = parser.parse_args()
    print(f"{'workloads':>9} {'median ms/tick':>15} {'max ms/tick':>12} {'of a 250 ms tick':>17}")
    for services in (int(n) for n in args.services.split(",")):
        model = traffic.TrafficModel(rng=random.Random(8))
        plan = routes(services)
        model.advance(plan, TICK)  # warm the CDF cache
        times = []
        for _ in range(args.ticks):
            start = time.perf_counter()
            model.advance(plan, TICK)
            times.append(time.perf_counter() - start)
        med = statistics.median(times)
        print(f"{len(model.counters):>9} {med * 1000:>15.2f} {max(times) * 1000:>12.2f} "
              f"{med / TICK:>16.1%}")


if __name__ == "__main__":
    main()
