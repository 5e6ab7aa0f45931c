"""High-precision best rational approximation of |x| and ReLU on [−1, 1]: Remez for √t in a barycentric basis.

Double precision caps a minimax error at about 1e-16 relative to ‖f‖, and the equioscillation level of a
computed approximant is only as good as the arithmetic that produced it. This module recomputes best
approximations with hundreds of bits, so that the best error E_{m,n}(f) is known to 15+ significant digits and
can then be bracketed rigorously by :mod:`rational_approx.verification.certify`.
The levelled Remez step is in :mod:`rational_approx.fitting.mp_remez`; general targets are refined by
:func:`rational_approx.fitting.refine.refine_minimax`.

**|x| on [−1, 1] (and ReLU).** By symmetry the best approximant of |x| is even, E_{2k+1,2k+1} = E_{2k,2k} and

    E_{2k,2k}(|x|, [−1, 1]) = E_{k,k}(√t, [0, 1]),   r(x) = R(x²)                                      (2)

(REFERENCE.md). For √t the solver uses the barycentric basis N/D with support points at the odd-indexed
reference points (then (1) at a support point z_j reads α_j − (f_j − s_j h) β_j = 0 and the remaining rows
form a Cauchy matrix), which stays well conditioned although the reference points cluster exponentially at t =
0 (t_1 ≈ 4e-22 at k = 40); 8k + 200 bits suffice for 20 correct digits of E_{2k,2k} (checked by re-solving at
64 more bits). Degrees are reached by continuation in k: the reference for k is extrapolated, in log t, from
the one for k − 1. ReLU is (x + |x|)/2, so the best type-(2k+1, 2k) approximant of ReLU is (x + R(x²))/2 with
error E_{2k,2k}/2.

Arithmetic: python-flint's ``arb`` is used for speed (its linear algebra and eigenvalue routines run in C);
all quantities here are *midpoints* — this module computes, it does not certify. Rigorous bounds are the job
of :mod:`rational_approx.verification.certify`.

Example
-------
>>> from rational_approx.fitting.highprec import abs_minimax
>>> res = abs_minimax(2)
>>> float(res.error)            # E_2 from Chebfun's test suite: 0.043689012692076362
0.04368901269207636
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import mpmath
import numpy as np
from flint import arb, arb_mat, arb_poly, ctx

from rational_approx.errors import ConvergenceError, DegreeError
from rational_approx.fitting.mp_remez import HighPrecResult, solve_pencil
from rational_approx.representation.domain import Domain
from rational_approx.representation.multiprecision import exact_mid, mpf_from_arb, working_precision
from rational_approx.representation.targets import get_target

__all__ = [
    "abs_minimax",
    "abs_minimax_table",
    "relu_minimax",
    "abs_precision_bits",
    "SqrtState",
    "sqrt_remez",
    "sqrt_sweep",
    "continuation_reference",
    "abs_result",
]


@dataclass
class SqrtState:
    """Barycentric best approximant of √t on [0, 1] of type (k, k) and its reference (exact arb points).

    Returned by :func:`sqrt_remez`; :func:`abs_result` turns it into the type-(2k, 2k) approximant of |x|.

    Attributes
    ----------
    k : int
    ts : list of arb
        The 2k + 2 reference points, t_0 = 0 < t_1 < … < t_{2k+1} = 1.
    z, alpha, beta : lists of arb
        Support points (``ts[1::2]``) and the numerator / denominator weights: r = Σα_j/(t − z_j) / Σβ_j/(t − z_j).
    h : arb
        The levelled error (signed); |h| is the computed E_{k,k}(√t, [0, 1]) = E_{2k,2k}(|x|, [−1, 1]).
    iterations : int
        Remez iterations used.
    spread : float
        (max − min)/max of |√t − r| over the final reference (the equioscillation defect).
    """

    k: int
    ts: list  # 2k + 2 reference points, t_0 = 0, t_{2k+1} = 1
    z: list  # support points = ts[1::2]
    alpha: list
    beta: list
    h: arb
    iterations: int
    spread: float


def _sqrt_levelled(ts: list, k: int, h: arb | None) -> tuple[list, list, list, arb]:
    n = 2 * k + 2
    sup = list(range(1, n, 2))
    where = {i: j for j, i in enumerate(sup)}
    z = [ts[i] for i in sup]
    f = [t.sqrt() for t in ts]
    s = [(-1) ** (i + 1) for i in range(n)]
    cauchy = {}
    for i in range(n):
        if i not in where:
            row = [1 / (ts[i] - zj) for zj in z]
            scale = min(abs(ts[i] - zj) for zj in z)  # row scaling: entries O(1), helps pivoting
            cauchy[i] = [c * scale for c in row]

    def build(hh: arb) -> arb_mat:
        M = arb_mat(n, n)
        for i in range(n):
            g = -(f[i] - s[i] * hh)
            if i in where:
                j = where[i]
                M[i, j] = 1
                M[i, k + 1 + j] = g
            else:
                for j, c in enumerate(cauchy[i]):
                    M[i, j] = c
                    M[i, k + 1 + j] = g * c
        return M

    def admissible(v: list) -> bool:
        # q = ℓ·D has no zero in [0, 1] iff the weights β_j alternate in sign (ℓ'(z_j) alternates).
        beta = [float(b) for b in v[k + 1 :]]
        return all(beta[j] * beta[j + 1] < 0 for j in range(k))

    v, h = solve_pencil(build, n, list(range(k + 1, 2 * k + 2)), s, h, admissible)
    return z, v[: k + 1], v[k + 1 :], h


def _bary_eval(z: list, alpha: list, beta: list, t: arb, derivs: bool = False):
    """r(t) = Σα_j/(t − z_j) / Σβ_j/(t − z_j), exact at support points; with r', r'' when ``derivs``."""
    for zj, a, b in zip(z, alpha, beta, strict=True):
        if t == zj:
            if derivs:
                return None
            return a / b
    N = D = N1 = D1 = N2 = D2 = arb(0)
    for zj, a, b in zip(z, alpha, beta, strict=True):
        c = 1 / (t - zj)
        N += a * c
        D += b * c
        if derivs:
            c2 = c * c
            N1 -= a * c2
            D1 -= b * c2
            c3 = 2 * c2 * c
            N2 += a * c3
            D2 += b * c3
    r = N / D
    if not derivs:
        return r
    r1 = (N1 - r * D1) / D
    r2 = (N2 - 2 * r1 * D1 - r * D2) / D
    return r, r1, r2


def sqrt_remez(ts: list, k: int, h: arb | None, maxiter: int = 40) -> SqrtState:
    """Remez exchange for the best type-(k, k) approximant of √t on [0, 1], from the reference ``ts``.

    Works at flint's current precision (set it with
    :class:`~rational_approx.representation.multiprecision.working_precision`, e.g. :func:`abs_precision_bits`).

    Parameters
    ----------
    ts : list of arb
        2k + 2 starting reference points, t_0 = 0 and t_{2k+1} = 1 (e.g. from :func:`continuation_reference`).
    k : int
    h : arb or None
        A guess of the levelled error (speeds up the first levelled solve); None to solve for it from scratch.
    maxiter : int

    Raises
    ------
    ConvergenceError
        When the levels have not agreed to half the working precision after ``maxiter`` iterations.
    """
    n = 2 * k + 2
    sg = [(-1) ** (i + 1) for i in range(n)]
    tol = 2.0 ** (-ctx.prec / 2 + 8)
    for it in range(1, maxiter + 1):
        z, al, be, h = _sqrt_levelled(ts, k, h if it > 1 or k > 6 else None)

        def err(t: arb, z=z, al=al, be=be) -> arb:
            return t.sqrt() - _bary_eval(z, al, be, t)

        # zeros of e = √t − r between consecutive reference points (bisection in log t; the first one in t)
        brackets = []
        for i in range(n - 1):
            lo, hi = ts[i], ts[i + 1]
            for _ in range(24):
                mid = exact_mid((lo * hi).sqrt()) if lo > 0 else exact_mid(hi / 1024)
                if (float(err(mid)) > 0) == (sg[i] > 0):
                    lo = mid
                else:
                    hi = mid
            brackets.append((lo, hi))
        new = [ts[0]]
        for i in range(1, n - 1):
            ua, ub = float(brackets[i - 1][1].log()), float(brackets[i][0].log())
            grid = np.linspace(ua, ub, 9)[1:-1]
            vals = [sg[i] * float(err(arb(math.exp(u)))) for u in grid]
            u = arb(grid[int(np.argmax(vals))])
            for _ in range(10):  # Newton on de/du = t e'(t) = 0, u = log t
                t = exact_mid(u.exp())
                res = _bary_eval(z, al, be, t, derivs=True)
                if res is None:
                    break
                _, r1, r2 = res
                st = t.sqrt()
                e1 = 1 / (2 * st) - r1
                e2 = -1 / (4 * st * t) - r2
                du = exact_mid(-(e1) / (e1 + t * e2))
                if not ua < float(u + du) < ub:
                    break
                u = u + du
                if abs(float(du)) < tol:
                    break
            new.append(exact_mid(u.exp()))
        new.append(ts[-1])
        ts = new
        errs = [mpf_from_arb(abs(err(t))) for t in ts]  # exact comparisons: floats would tie at 1e-16
        spread = float((max(errs) - min(errs)) / max(errs))
        if spread < 2.0 ** (-ctx.prec / 2):
            z, al, be, h = _sqrt_levelled(ts, k, h)
            return SqrtState(k, ts, z, al, be, h, it, spread)
    raise ConvergenceError(
        f"Remez for √t of type ({k},{k}) did not converge in {maxiter} iterations (level spread {spread:.1e})"
    )


def _extrapolate_log(u: np.ndarray, newlen: int) -> np.ndarray:
    """Stretch a sorted sequence to ``newlen`` entries (linear inter-/extrapolation in relative index)."""
    n = u.size
    s_old = np.arange(1, n + 1) / (n + 1)
    s_new = np.arange(1, newlen + 1) / (newlen + 1)
    out = np.interp(s_new, s_old, u)
    lo, hi = s_new < s_old[0], s_new > s_old[-1]
    out[lo] = u[0] + (s_new[lo] - s_old[0]) * (u[1] - u[0]) / (s_old[1] - s_old[0])
    out[hi] = u[-1] + (s_new[hi] - s_old[-1]) * (u[-1] - u[-2]) / (s_old[-1] - s_old[-2])
    return out


def continuation_reference(prev_ts: list, k: int, *, jitter: float = 0.0, seed: int = 1000) -> list:
    """Starting reference for type (k, k) from the converged reference ``prev_ts`` of type (k − 1, k − 1).

    The interior points are stretched in log t to 2k points (linear inter-/extrapolation in relative index).
    ``jitter`` > 0 moves each of them (but the last) by up to ±jitter/2 of the gap to its right neighbour in log t,
    with ``numpy.random.default_rng(seed + k)`` — an independent start for checking a result. Exact arb points, at
    flint's current precision.
    """
    if len(prev_ts) != 2 * k:
        raise DegreeError(f"the reference of type ({k - 1}, {k - 1}) has {2 * k} points, got {len(prev_ts)}")
    u = np.array([float(t.log()) for t in prev_ts[1:-1]])
    v = _extrapolate_log(u, 2 * k)
    if jitter:
        rng = np.random.default_rng(seed + k)
        v[:-1] += jitter * np.diff(v) * (rng.random(v.size - 1) - 0.5)
    return [arb(0)] + [exact_mid(arb(math.exp(x))) for x in v] + [arb(1)]


def abs_precision_bits(k: int) -> int:
    """Working precision (bits) used for √t of type (k, k), i.e. |x| of type (2k, 2k): 8k + 200."""
    return 8 * k + 200


def abs_result(state: SqrtState, n: int, prec: int, digits: float, seconds: float) -> HighPrecResult:
    """Turn the √t solution into |x|'s type-(n, n) approximant R(x²), with monomial coefficients in x.

    ``n`` is 2k (or 2k + 1: the same approximant, E_{2k+1,2k+1} = E_{2k,2k}); ``prec`` the working precision
    the state was computed at; ``digits`` and ``seconds`` are stored in the result as given.
    """
    k = state.k
    work = max(
        4 * prec, 1024
    )  # the expansion ℓ·N in monomials cancels heavily; arb tracks it, we take midpoints
    with working_precision(work):
        z, al, be = state.z, state.alpha, state.beta
        P = arb_poly([0])
        Q = arb_poly([0])
        for j in range(k + 1):
            lj = arb_poly([1])
            for i, zi in enumerate(z):
                if i != j:
                    lj = lj * arb_poly([-zi, 1])
            P = P + lj * al[j]
            Q = Q + lj * be[j]
        pc, qc = P.coeffs(), Q.coeffs()
        scale = max(qc, key=lambda c: abs(float(c)))  # largest |q_j| becomes +1
        pc = [c / scale for c in pc]
        qc = [c / scale for c in qc]
        worst = max(float(c.rad() / abs(c)) for c in pc + qc if c != 0)
    if worst > 2.0 ** (-prec):
        raise ConvergenceError(
            f"monomial expansion of the type-({k},{k}) approximant kept only {-math.log2(worst):.0f} "
            f"bits; raise the working precision"
        )
    p = [mpmath.mpf(0)] * (2 * k + 1)
    q = [mpmath.mpf(0)] * (2 * k + 1)
    for j in range(k + 1):
        p[2 * j] = mpf_from_arb(pc[j])
        q[2 * j] = mpf_from_arb(qc[j])
    with working_precision(prec):
        xs = [mpf_from_arb(t.sqrt()) for t in state.ts]  # t_0 = 0 → x = 0
    with mpmath.workprec(prec):
        pts = sorted(set([-x for x in xs[1:]] + xs))
        res = HighPrecResult(
            target=get_target("abs"),
            type=(n, n),
            domain=Domain.interval(-1.0, 1.0),
            error=abs(mpf_from_arb(state.h)),
            p=p,
            q=q,
            extremal_points=pts,
            extremal_errors=[],
            prec=prec,
            digits=digits,
            iterations=state.iterations,
            seconds=seconds,
            converged=True,
            method="remez-sqrt-barycentric",
        )
        res.extremal_errors = [abs(x) - v for x, v in zip(pts, res.eval_mp(pts), strict=True)]
    if n % 2:
        res.notes.append(
            f"E_{{{n},{n}}} = E_{{{n - 1},{n - 1}}}: the best type-({n},{n}) approximant of |x| is the even "
            f"type-({n - 1},{n - 1}) one (defect 1)"
        )
    return res



def sqrt_sweep(
    k_max: int,
    *,
    check_bits: int = 0,
    bits: Callable[[int], int] = abs_precision_bits,
    jitter: float = 0.0,
    resume: tuple[list, list] | None = None,
    callback: Callable[[int, SqrtState, float, float], None] | None = None,
) -> Iterator[tuple[SqrtState, int, float, float]]:
    """Continuation in k for √t on [0, 1]: yields (state, prec, digits, seconds) for k = 1 … k_max (or from resume).

    Each k starts from :func:`continuation_reference` of the previous one (with ``jitter``) and from the level
    extrapolated geometrically from the last two, and works at ``bits(k)`` bits.

    Parameters
    ----------
    check_bits : int
        Re-solve the levelled system at this many more bits to estimate the correct digits (0: skip; then
        ``digits`` reflects only the level spread and the working precision).
    resume : (reference, levels) or None
        Continue after type (k0, k0) from its converged reference (2k0 + 2 points) and its last one or two
        levels h (arb), as a sweep would have left them.
    callback : called with (k, state, digits, seconds) after each k.
    """
    ts = [arb(0), arb(0.03), arb(0.4), arb(1)]  # crude reference for k = 1; the Remez iteration fixes it
    hist: list[arb] = []
    k0 = 1
    if resume is not None:
        ts, hist = list(resume[0]), list(resume[1])[-2:]
        k0 = len(ts) // 2
        if len(ts) % 2 or k0 < 2 or not hist:
            raise DegreeError(f"resume needs a reference of 2k + 2 ≥ 4 points and a level, got {len(ts)} points")
    for k in range(k0, k_max + 1):
        t0 = time.perf_counter()
        prec = bits(k)
        with working_precision(prec):
            start = continuation_reference(ts, k, jitter=jitter) if k > 1 else ts
            h = hist[-1] * hist[-1] / hist[-2] if len(hist) >= 2 else None
            state = sqrt_remez(start, k, h)
        ts, hist = state.ts, (hist + [state.h])[-2:]
        diff = 0.0
        if check_bits:
            with working_precision(prec + check_bits):
                _, _, _, h2 = _sqrt_levelled(state.ts, k, state.h)
                diff = abs(float((h2 - state.h) / h2))
        # E lies between the level h and the largest error at the reference (de la Vallée Poussin), so the
        # spread of the levels caps the accuracy as much as the working precision does.
        digits = -math.log10(max(diff, state.spread, 2.0**-prec))
        secs = time.perf_counter() - t0
        if callback is not None:
            callback(k, state, digits, secs)
        yield state, prec, digits, secs


def abs_minimax(n: int, *, check_bits: int = 64, progress: Callable[[str], None] | None = None) -> HighPrecResult:
    """Best type-(n, n) approximation of |x| on [−1, 1] in multiprecision, via (2) and continuation in n.

    Parameters
    ----------
    n : int ≥ 1
        Odd n gives the even type-(n−1, n−1) approximant (E_{n,n} = E_{n−1,n−1}).
    check_bits : int
        Extra bits for the re-solve that estimates the correct digits of the error (0 to skip).
    progress : called with a one-line status after each step k = 1 … n/2 of the continuation.

    Returns
    -------
    HighPrecResult with ``type = (n, n)`` and 2n + 3 (n even) alternation points, x = 0 included.
    """
    if not isinstance(n, int | np.integer) or n < 1:
        raise DegreeError(f"n must be a positive integer, got {n!r}")
    if n == 1:
        raise DegreeError(
            "type (1, 1) for |x| is degenerate (the best approximant is the constant 1/2); use n ≥ 2"
        )
    t0 = time.perf_counter()
    k_max = int(n) // 2

    def report(k: int, state: SqrtState, digits: float, secs: float) -> None:
        if progress is not None:
            progress(f"abs_minimax: type ({2 * k}, {2 * k}) of ({2 * k_max}, {2 * k_max}), "
                     f"E = {float(abs(state.h)):.10e} ({secs:.1f} s)")

    *_, (state, prec, digits, _) = sqrt_sweep(k_max, check_bits=check_bits, callback=report)
    return abs_result(state, int(n), prec, digits, time.perf_counter() - t0)


def abs_minimax_table(
    n_max: int = 80, *, check_bits: int = 64, callback: Callable[[HighPrecResult], None] | None = None
) -> list[HighPrecResult]:
    """E_{n,n}(|x|, [−1, 1]) for every even n = 2, 4, …, n_max in one continuation sweep.

    ``callback`` is called with each result as soon as it is computed (for progress output).
    """
    if n_max < 2:
        raise DegreeError(f"n_max must be at least 2, got {n_max}")
    out = []
    t_start = time.perf_counter()
    for state, prec, digits, secs in sqrt_sweep(int(n_max) // 2, check_bits=check_bits, callback=None):
        res = abs_result(state, 2 * state.k, prec, digits, secs)
        res.notes.append(f"cumulative time {time.perf_counter() - t_start:.1f} s")
        out.append(res)
        if callback is not None:
            callback(res)
    return out


def relu_minimax(k: int, *, check_bits: int = 64, progress: Callable[[str], None] | None = None) -> HighPrecResult:
    """Best type-(2k+1, 2k) approximant of ReLU on [−1, 1]: (x + R(x²))/2, R from :func:`abs_minimax` (2k).

    Error E_{2k,2k}(|x|)/2; the 4k + 3 alternation points of |x| are alternation points of ReLU − r too.
    """
    if not isinstance(k, int | np.integer) or k < 1:
        raise DegreeError(f"k must be a positive integer, got {k!r}")
    a = abs_minimax(2 * int(k), check_bits=check_bits, progress=progress)
    with mpmath.workprec(a.prec):
        half = mpmath.mpf(0.5)
        p = [half * c for c in a.p] + [mpmath.mpf(0)]
        for j, c in enumerate(a.q):  # + x q(x)/2
            p[j + 1] += half * c
        res = HighPrecResult(
            target=get_target("relu"),
            type=(2 * int(k) + 1, 2 * int(k)),
            domain=a.domain,
            error=a.error / 2,
            p=p,
            q=list(a.q),
            extremal_points=list(a.extremal_points),
            extremal_errors=[],
            prec=a.prec,
            digits=a.digits,
            iterations=a.iterations,
            seconds=a.seconds,
            converged=True,
            method="remez-sqrt-barycentric (relu = (x + |x|)/2)",
        )
        res.extremal_errors = [
            max(x, 0) - v for x, v in zip(res.extremal_points, res.eval_mp(res.extremal_points), strict=True)
        ]
    return res

