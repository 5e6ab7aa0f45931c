"""Refinement of a double-precision minimax result by Remez exchange in multiprecision (any target).

**General targets.** :func:`refine_minimax` restarts the Remez iteration from a double-precision
:class:`~rational_approx.fitting.minimax.MinimaxResult` (its extremal points are the initial reference), with p and q
in the Chebyshev basis of the domain's hull, and extrema located by sampling plus golden-section search in the
working precision. It is meant for the moderate types (m, n ≤ 20) where double precision is the bottleneck,
not the basis.

The levelled solve is :func:`rational_approx.fitting.mp_remez.solve_pencil`; p and q are returned as exact
monomial coefficients in x (:func:`rational_approx.representation.multiprecision.cheb_to_monomial`).
"""

from __future__ import annotations

import math
import time

import mpmath
import numpy as np
from flint import arb, arb_mat

from rational_approx.errors import ConvergenceError, TargetError
from rational_approx.fitting.mp_remez import HighPrecResult, solve_pencil
from rational_approx.representation.extrema import alternating_indices, golden_section_max
from rational_approx.representation.multiprecision import (
    arb_from_mpf,
    cheb_to_monomial,
    mpf_from_arb,
    working_precision,
)
from rational_approx.representation.targets import Target, get_target

__all__ = ["refine_minimax"]


def _as_target(target: Target | str) -> Target:
    if isinstance(target, Target):
        return target
    if isinstance(target, str):
        return get_target(target)
    raise TargetError(f"expected a Target or a target name, got {type(target).__name__}")



def _cheb_row(x: arb, deg: int, a: arb, b: arb) -> list:
    s = (2 * x - (a + b)) / (b - a)
    row = [arb(1), s]
    for _ in range(deg - 1):
        row.append(2 * s * row[-1] - row[-2])
    return row[: deg + 1]


def refine_minimax(result, *, prec: int = 256, maxiter: int = 30, samples: int = 4000) -> HighPrecResult:
    """Refine a double-precision minimax result by Remez exchange at ``prec`` bits.

    Parameters
    ----------
    result : MinimaxResult
        From :func:`rational_approx.fitting.minimax.minimax`; its ``extremal_points`` (m + n + 2 − defect of them,
        alternating) start the iteration, its ``target`` must have an mpmath evaluation ``f_mp``.
    prec : int
        Working precision in bits (256 ≈ 77 digits).
    samples : int
        Points of the cluster-aware grid on which extrema are first located (then refined by golden-section
        search).

    Returns
    -------
    HighPrecResult (``method = "remez-chebyshev"``).

    Raises
    ------
    ConvergenceError if the levels do not equalise within ``maxiter`` iterations (``best`` holds the last
    iterate).
    """
    target = _as_target(result.target)
    if target.f_mp is None:
        raise TargetError(f"target {target.name!r} has no mpmath evaluation f_mp; high precision needs one")
    m, n = result.type
    domain = result.domain
    npts = m + n + 2
    x0 = np.sort(np.asarray(result.extremal_points, dtype=float))
    if x0.size < npts:
        raise ConvergenceError(
            f"the start has {x0.size} extremal points, type {result.type} needs {npts}; it is "
            f"degenerate or not converged — refine a non-degenerate best approximation",
            best=result,
        )
    errs0 = np.asarray(result.extremal_errors, dtype=float)
    order = np.argsort(np.asarray(result.extremal_points, dtype=float))
    errs0 = errs0[order]
    if x0.size > npts:  # keep the window of npts consecutive points with the largest minimum |error|
        best = max(range(x0.size - npts + 1), key=lambda i: np.min(np.abs(errs0[i : i + npts])))
        x0, errs0 = x0[best : best + npts], errs0[best : best + npts]
    s0 = 1 if errs0[0] > 0 else -1
    sg = [s0 * (-1) ** i for i in range(npts)]
    t_start = time.perf_counter()
    mpprec = prec

    with working_precision(prec), mpmath.workprec(mpprec):
        a, b = arb_from_mpf(domain.a), arb_from_mpf(domain.b)

        def fval(x: arb) -> arb:
            return arb_from_mpf(target.f_mp(mpf_from_arb(x)))

        xs = [arb_from_mpf(v) for v in x0]
        grid = domain.sample(samples, cluster=target.singular_points, depth=30)
        grid_arb = [arb_from_mpf(v) for v in grid]
        fixed = set(domain.endpoints.tolist()) | set(target.singular_points)
        h = None
        coeffs = None
        for it in range(1, maxiter + 1):
            F = [fval(x) for x in xs]
            T = [_cheb_row(x, max(m, n), a, b) for x in xs]

            def build(hh: arb, F=F, T=T, sg=sg) -> arb_mat:
                M = arb_mat(npts, npts)
                for i in range(npts):
                    g = -(F[i] - sg[i] * hh)
                    for j in range(m + 1):
                        M[i, j] = T[i][j]
                    for j in range(n + 1):
                        M[i, m + 1 + j] = g * T[i][j]
                return M

            def q_of(v: list, x: arb) -> arb:
                row = _cheb_row(x, max(m, n), a, b)
                return sum((v[m + 1 + j] * row[j] for j in range(n + 1)), arb(0))

            def admissible(v: list, xs=xs) -> bool:
                vals = [float(q_of(v, x)) for x in grid_arb[:: max(1, len(grid_arb) // 400)] + xs]
                return all(val > 0 for val in vals) or all(val < 0 for val in vals)

            v, h = solve_pencil(build, npts, list(range(m + 1, m + n + 2)), sg, h, admissible)
            coeffs = v

            def err(x: arb, v=v) -> arb:
                row = _cheb_row(x, max(m, n), a, b)
                pv = sum((v[j] * row[j] for j in range(m + 1)), arb(0))
                qv = sum((v[m + 1 + j] * row[j] for j in range(n + 1)), arb(0))
                return fval(x) - pv / qv

            ev = np.array([float(err(x)) for x in grid_arb])
            cand = _local_extrema(grid, ev, fixed)
            refined = []
            for i in cand:
                lo = grid[max(i - 1, 0)]
                hi = grid[min(i + 1, grid.size - 1)]
                if grid[i] in fixed or lo == grid[i] or hi == grid[i]:
                    refined.append((arb_from_mpf(grid[i]), err(arb_from_mpf(grid[i]))))
                    continue
                sgn = 1.0 if ev[i] > 0 else -1.0
                xg = golden_section_max(lambda x, sgn=sgn: sgn * err(x), arb_from_mpf(lo), arb_from_mpf(hi),
                                        iters=80)
                eg = err(xg)
                for c in fixed:  # a kink inside the bracket is where the maximum sits, not next to it
                    if lo <= c <= hi:
                        ec = err(arb_from_mpf(c))
                        if float(sgn * (ec - eg)) >= 0:
                            xg, eg = arb_from_mpf(c), ec
                refined.append((xg, eg))
            for c in sorted(fixed):  # kinks and end points are always candidates (the grid may skip them)
                if bool(domain.contains(c)):
                    refined.append((arb_from_mpf(c), err(arb_from_mpf(c))))
            refined.sort(key=lambda pe: mpf_from_arb(pe[0]))
            keep = alternating_indices([e for _, e in refined], npts)
            pts = [refined[i] for i in keep]
            if len(pts) < npts:
                raise ConvergenceError(
                    f"lost alternation at iteration {it}: fewer than {npts} alternating extrema", best=result
                )
            xs = [p for p, _ in pts]
            sg = [1 if float(e) > 0 else -1 for _, e in pts]
            levels = [mpf_from_arb(abs(e)) for _, e in pts]  # exact comparisons (floats would tie)
            spread = float((max(levels) - min(levels)) / max(levels))
            if spread < 2.0 ** (-prec / 2):
                break
        converged = spread < 2.0 ** (-prec / 2)
        # monomial coefficients in x, exact midpoints at the working precision
        p_mono, q_mono = cheb_to_monomial(coeffs[: m + 1], a, b), cheb_to_monomial(coeffs[m + 1 :], a, b)
        scale = max(q_mono, key=lambda c: abs(float(c)))  # largest |q_j| becomes +1
        p_mono = [mpf_from_arb(c / scale) for c in p_mono]
        q_mono = [mpf_from_arb(c / scale) for c in q_mono]
        out = HighPrecResult(
            target=target,
            type=(m, n),
            domain=domain,
            error=abs(mpf_from_arb(h)),
            p=p_mono,
            q=q_mono,
            extremal_points=[mpf_from_arb(x) for x in xs],
            extremal_errors=[mpf_from_arb(e) for _, e in pts],
            prec=prec,
            digits=-math.log10(max(spread, 2.0**-prec)),
            iterations=it,
            seconds=time.perf_counter() - t_start,
            converged=converged,
            method="remez-chebyshev",
        )
    out.notes.append("digits estimated from the spread of the levels |f − r| at the final reference")
    if not converged:
        raise ConvergenceError(
            f"levels still differ by {spread:.1e} (relative) after {maxiter} iterations", best=out
        )
    return out



def _local_extrema(x: np.ndarray, e: np.ndarray, fixed: set) -> list[int]:
    """Indices of local extrema of |e| on a sorted grid (end points and fixed points always included)."""
    idx = [0, x.size - 1]
    ae = np.abs(e)
    for i in range(1, x.size - 1):
        if x[i] in fixed or (ae[i] >= ae[i - 1] and ae[i] >= ae[i + 1] and e[i] != 0):
            idx.append(i)
    return sorted(set(idx))
