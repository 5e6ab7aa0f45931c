"""E_{n,n}(|x|, [−1, 1]) for every even n ≤ n_max in multiprecision, with certified brackets.

Measures the continuation sweep of :func:`rational_approx.fitting.highprec.abs_minimax_table` (one Remez solve per
even n, each at 8k + 200 bits, each re-solved at 64 more bits to estimate its correct digits) and, for
n ≤ --certify-max, the rigorous bracket of :func:`rational_approx.verification.certify.certify`. Prints a table and
writes
CSV and JSON.

    python benchmarks/highprec_table.py --n-max 80 --certify-max 40 --out benchmarks/results/highprec_table

Columns: n, E_n (25 significant digits), digits (agreement of the two precisions), prec_bits, Remez iterations
at that n, seconds for that n, E_n / (8 exp(−π √n)) (Stahl's asymptote), and when certified: lower, upper,
relative width, certificate seconds.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import time

import mpmath

from rational_approx.fitting.highprec import abs_minimax_table
from rational_approx.verification.certify import certify

E2 = "0.043689012692076362"
E30 = "2.1739878201697943e-7"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-max", type=int, default=80)
    ap.add_argument("--certify-max", type=int, default=40, help="certify E_n for n up to this (0: none)")
    ap.add_argument("--out", default="benchmarks/results/highprec_table", help="path stem for .csv and .json")
    args = ap.parse_args()

    rows: list[dict] = []
    t_start = time.perf_counter()
    print(
        f"{'n':>3} {'E_n':>27} {'digits':>6} {'bits':>5} {'it':>3} {'s':>6} {'E/Stahl':>8}"
        f" {'lower':>22} {'upper':>22} {'rel.width':>9} {'cert s':>6}",
        flush=True,
    )

    def report(res) -> None:
        n = res.type[0]
        row = {
            "n": n,
            "E": mpmath.nstr(res.error, 25),
            "digits": round(res.digits, 1) if math.isfinite(res.digits) else "inf",
            "prec_bits": res.prec,
            "iterations": res.iterations,
            "seconds": round(res.seconds, 2),
            "stahl_ratio": float(res.error) / (8 * math.exp(-math.pi * math.sqrt(n))),
        }
        if n <= args.certify_max:
            cert = certify("abs", res)
            row.update(
                lower=cert.lower,
                upper=cert.upper,
                relative_width=cert.relative_width,
                certified=cert.certified,
                certify_seconds=round(cert.seconds, 2),
            )
        rows.append(row)
        cert_cols = (
            (
                f" {row['lower']:22.16e} {row['upper']:22.16e} {row['relative_width']:9.1e}"
                f" {row['certify_seconds']:6.2f}"
            )
            if "lower" in row
            else ""
        )
        print(
            f"{n:3d} {row['E']:>27} {row['digits']:>6} {row['prec_bits']:5d} {row['iterations']:3d}"
            f" {row['seconds']:6.2f} {row['stahl_ratio']:8.4f}{cert_cols}",
            flush=True,
        )

    abs_minimax_table(args.n_max, callback=report)
    total = time.perf_counter() - t_start
    by_n = {r["n"]: r for r in rows}
    checks = {}
    for n, ref in ((2, E2), (30, E30)):
        if n in by_n:
            with mpmath.workdps(40):
                diff = abs(mpmath.mpf(by_n[n]["E"]) - mpmath.mpf(ref))
            checks[f"E_{n}"] = {"reference": ref, "computed": by_n[n]["E"], "abs_diff": float(diff)}
    print(f"total {total:.1f} s on {os.cpu_count()} cores ({platform.processor() or platform.machine()})")
    for name, c in checks.items():
        print(
            f"check {name}: reference {c['reference']}, computed {c['computed']}, |diff| {c['abs_diff']:.1e}"
        )

    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(args.out + ".csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    with open(args.out + ".json", "w") as fh:
        rule = "8k + 200 bits for n = 2k, re-solved at +64 bits"
        json.dump(
            {
                "total_seconds": total,
                "cpus": os.cpu_count(),
                "precision_rule": rule,
                "checks": checks,
                "rows": rows,
            },
            fh,
            indent=1,
        )
    print(f"wrote {args.out}.csv and {args.out}.json")


if __name__ == "__main__":
    main()
