"""Benchmark: wall time of `minimax` on the acceptance cases (it measures; it asserts nothing).

    python benchmarks/bench_minimax.py [--repeat 3]

Prints, per case, the median and minimum wall time over ``--repeat`` runs (fresh calls, nothing cached), the error
and the convergence flag. Chebfun's `minimax` needs about 20 s for |x| at (80, 80) (REFERENCE.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from rational_approx import minimax

CASES = [
    ("abs", (80, 80), {}),
    ("abs", (80, 80), {"polish": False}),
    ("abs", (30, 30), {}),
    ("relu", (20, 20), {}),
    ("relu", (41, 40), {}),
    ("jumprelu", (9, 8), {"theta": 0.5, "gap": 0.05}),
    ("sign", (16, 16), {"gap": 0.05}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'target':<9} {'type':<9} {'options':<17} {'median s':>9} {'min s':>7} {'error':>12}  converged")
    for name, typ, kw in CASES:
        times, res = [], None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = minimax(name, typ, **kw)
            times.append(time.perf_counter() - t0)
        opts = ",".join(f"{k}={v}" for k, v in kw.items()) or "-"
        print(f"{name:<9} {str(typ):<9} {opts:<17} {statistics.median(times):>9.2f} {min(times):>7.2f} "
              f"{res.error:>12.5e}  {res.converged}")


if __name__ == "__main__":
    main()
