"""Rational fitters side by side: scipy AAA, baryrat (aaa, brasil), and this package (aaa, lawson, minimax).

For each target — |x| on [−1, 1], ReLU on [−1, 1], sign on [−1, −0.1] ∪ [0.1, 1] — and each type (n, n),
every method is timed and its sup error is measured on one common check grid, built once per domain by
``interleave(Domain.sample(20000, cluster=(0,), depth=20), domain, k=3)``: 20000 Chebyshev-like points over
the domain, points 10^(−s) (s up to 20, six per decade) either side of 0 and of every interval end point, and
three equispaced points between every consecutive pair — about 82000 points, the same for every method.
Errors are also given as ratios to ours (minimax when :mod:`rational_approx.minimax` is importable, else
lawson). Real poles in the domain are counted where the method exposes its poles; a fit with such a pole has
a huge (or, if the pole falls between grid points, merely large) error on the grid.

Run:  OPENBLAS_NUM_THREADS=1 python benchmarks/bench_fitters.py [--types 4 8 16]
(one BLAS thread: on a shared machine multi-threaded BLAS makes small SVDs far slower, not faster).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from rational_approx.fitting.aaa import aaa, interleave, poles_on_domain
from rational_approx.fitting.lawson import lawson
from rational_approx.representation.barycentric import BarycentricRational
from rational_approx.representation.domain import Domain
from rational_approx.representation.targets import get_target

try:
    from rational_approx.fitting.minimax import minimax
except ImportError as exc:  # the lead's module may not exist yet
    minimax = None
    print(f"note: rational_approx.minimax is not importable ({exc}); its rows are skipped")

CASES = [
    ("abs", get_target("abs"), Domain.interval(-1.0, 1.0)),
    ("relu", get_target("relu"), Domain.interval(-1.0, 1.0)),
    ("sign", get_target("sign"), Domain.gapped(-1.0, 1.0, center=0.0, gap=0.1)),
]


def check_grid(domain: Domain) -> np.ndarray:
    return interleave(domain.sample(20000, cluster=(0.0,), depth=20), domain, k=3)


def uniform_grid(domain: Domain, n: int = 2000) -> np.ndarray:
    x = np.linspace(domain.a, domain.b, n)
    return x[domain.contains(x)]


def timed(fn):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fn()
    return out, time.perf_counter() - t0


def real_poles(poles: np.ndarray, domain: Domain) -> int:
    poles = np.asarray(poles)
    on = (np.abs(poles.imag) <= 1e-8 * np.abs(poles)) & domain.contains(poles.real)
    return int(np.count_nonzero(on))


def run_case(name, target, domain, n, grid, fx):
    """Rows (method, error, seconds, real poles or None) for one target and type (n, n)."""
    rows = []

    def add(method, fn, poles_of):
        try:
            r, secs = timed(fn)
        except Exception as exc:  # a failing reference method is a result, not a crash
            rows.append((method, np.nan, np.nan, None, f"failed: {type(exc).__name__}: {str(exc)[:60]}"))
            return
        with np.errstate(all="ignore"):
            err = float(np.max(np.abs(fx - np.real(r(grid)))))
        rows.append((method, err, secs, poles_of(r), ""))

    import baryrat
    from scipy.interpolate import AAA

    xu = uniform_grid(domain)
    xc = domain.sample(2000, cluster=(0.0,), depth=40)
    add("scipy AAA (2000 uniform)", lambda: AAA(xu, target.f(xu), max_terms=n + 1),
        lambda r: real_poles(r.poles(), domain))
    add("scipy AAA (our clustered samples)", lambda: AAA(xc, target.f(xc), max_terms=n + 1),
        lambda r: real_poles(r.poles(), domain))
    add("baryrat.aaa (2000 uniform)", lambda: baryrat.aaa(xu, target.f(xu), mmax=n + 1),
        lambda r: real_poles(r.poles(), domain))
    if domain.is_interval:
        add("baryrat.brasil", lambda: baryrat.brasil(target.f, (domain.a, domain.b), n, maxiter=300),
            lambda r: real_poles(r.poles(), domain))
    else:
        rows.append(("baryrat.brasil", np.nan, np.nan, None, "n/a: needs one interval"))
    add("rational_approx.aaa (degree=n)", lambda: aaa(target, domain, degree=n).r,
        lambda r: poles_on_domain(r, domain).size)
    add("rational_approx.lawson", lambda: lawson(target, n, domain).r,
        lambda r: poles_on_domain(r, domain).size)
    if minimax is not None:
        add("rational_approx.minimax", lambda: minimax(target, (n, n), domain, raise_on_failure=False).r,
            lambda r: poles_on_domain(r, domain).size if isinstance(r, BarycentricRational) else None)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--types", type=int, nargs="+", default=[4, 8, 16])
    args = ap.parse_args()
    for name, target, domain in CASES:
        grid = check_grid(domain)
        fx = target.f(grid)
        print(f"\n## {name} on {domain}  (check grid: {grid.size} points)")
        for n in args.types:
            rows = run_case(name, target, domain, n, grid, fx)
            ref_name = "rational_approx.minimax" if minimax is not None else "rational_approx.lawson"
            ref = next((r[1] for r in rows if r[0] == ref_name), np.nan)
            print(f"\n### type ({n}, {n}); ratios are error / error of {ref_name.split('.')[-1]}")
            print("| method | sup error on grid | time (s) | error ratio | real poles in domain | note |")
            print("|---|---|---|---|---|---|")
            for method, err, secs, poles, note in rows:
                ratio = err / ref if ref and np.isfinite(ref) and ref > 0 else np.nan
                print(f"| {method} | {err:.3e} | {secs:.3f} | {ratio:.3g} | "
                      f"{'' if poles is None else poles} | {note} |")


if __name__ == "__main__":
    main()
