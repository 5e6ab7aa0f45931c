"""AAA-Lawson: near-minimax rational approximation by iteratively reweighted least squares.

What it computes
----------------
A rational r of type (m, n) that nearly minimises max |f − r| over the domain — the starting point for a Remez
exchange (:func:`rational_approx.fitting.minimax.minimax`), which needs an approximant whose error already nearly
equioscillates.

The maths (Nakatsukasa & Trefethen 2020)
----------------------------------------
Fix N + 1 support points t_0 … t_N, N = max(m, n), taken from AAA, and write r = N/D with *independent*
numerator and denominator weights,

    N(x) = Σ_k α_k / (x − t_k),   D(x) = Σ_k β_k / (x − t_k),

so r need not interpolate f at the t_k. Numerator degree ≤ m and denominator degree ≤ n are the linear
constraints Σ_k α_k t_k^j = 0 (j < N − m) and Σ_k β_k t_k^j = 0 (j < N − n) (the coefficient of x^(−j−1) in
the expansion at ∞); we impose them by writing α = Q_α a, β = Q_β b with orthonormal bases of their null
spaces. On samples x_j (support points excluded) with weights ω_j > 0, one Lawson step solves the linearised
weighted least-squares problem

    minimise Σ_j ω_j |f_j D(x_j) − N(x_j)|²   over ‖(a, b)‖₂ = 1

(a smallest right singular vector), evaluates the true error e_j = f_j − N(x_j)/D(x_j), and updates

    ω_j ← ω_j |e_j|^γ / Σ_i ω_i |e_i|^γ.

With γ = 1 this is Lawson's (1961) algorithm, whose fixed points for polynomials are the best
approximations; for rationals the iteration converges in practice to the minimax approximant, linearly, with
the weights concentrating on the m + n + 2 alternation points. Step control: whenever the max error rises
above the best seen, the weights return to those of the best iterate and γ is halved; after improvements γ
grows back towards 1.

What is adaptive
----------------
Samples start as the clustered set of :func:`rational_approx.fitting.aaa.initial_samples`. When the iteration
settles, the error is checked on a finer set (:func:`rational_approx.fitting.aaa.interleave`); where it exceeds the
sample maximum by more than ``check_rtol``, points are added (:func:`rational_approx.fitting.aaa.refinement_points`)
with the largest current weight, and the iteration continues. The reported ``error`` is the maximum over the
final check set.

Reference
---------
Y. Nakatsukasa, L. N. Trefethen, "An algorithm for real and complex rational minimax approximation",
SIAM J. Sci. Comput. 42 (2020) A3157–A3179. C. L. Lawson, "Contributions to the theory of linear least maximum
approximation", PhD thesis, UCLA (1961).

Example
-------
>>> from rational_approx.fitting.lawson import lawson
>>> res = lawson("abs", 4)
>>> res.r.type, round(res.error, 4)
((4, 4), 0.0085)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from rational_approx.errors import ConvergenceError, DegreeError, RationalApproxError
from rational_approx.fitting.aaa import (
    aaa,
    initial_samples,
    interleave,
    poles_on_domain,
    refinement_points,
)
from rational_approx.representation.barycentric import BarycentricRational, parse_type
from rational_approx.representation.domain import Domain
from rational_approx.representation.targets import Target, resolve_domain, resolve_target

__all__ = ["LawsonResult", "lawson"]

#: Default size of the Chebyshev-like part of Lawson's samples: every step solves a least-squares problem on
#: all of them, and the adaptive refinement adds points where they are needed.
LAWSON_N_SAMPLES = 800
#: Decades of clustering at kinks and ends for Lawson: near-best errors above ~1e-15 resolve kinks on scales
#: above ~1e-20, so deeper points only cost time.
LAWSON_DEPTH = 20

#: A step whose max error exceeds BLOWUP × the best so far is undone and the Lawson exponent halved.
#: Smaller rises are normal: the max error of Lawson's iteration is not monotone.
BLOWUP = 2.0


@dataclass(frozen=True)
class LawsonResult:
    """The outcome of :func:`lawson`.

    Attributes
    ----------
    r : BarycentricRational
        The approximant, declared type (m, n).
    error : float
        max |f − r| over the final check set (samples, support points, and points between consecutive
        samples).
    history : ndarray
        Max error over the current samples after each Lawson step.
    converged : bool
        True when the max error stopped improving (relative change < ``tol`` over ``patience`` steps) and
        the check set agreed with the samples, before ``maxiter`` steps.
    seconds : float
        Wall-clock time.
    samples : ndarray
        The finest point set, sorted: least-squares samples ∪ support points ∪ check points.
    residual : ndarray
        f − r at ``samples`` (signed): pick an alternating reference for a Remez exchange from its local
        extrema.
    weights : ndarray
        Final Lawson weights aligned with ``samples`` (0 at points that were only checked, and at support
        points). They concentrate at the extremal points of the error.
    iterations : int
        Lawson steps taken.
    type : (int, int)
        (m, n).
    domain : Domain
    target : Target
    real_poles_in_domain : ndarray
        Real poles of ``r`` on the domain (empty for a usable approximant).
    """

    r: BarycentricRational
    error: float
    history: np.ndarray
    converged: bool
    seconds: float
    samples: np.ndarray
    residual: np.ndarray
    weights: np.ndarray
    iterations: int
    type: tuple[int, int]
    domain: Domain
    target: Target
    real_poles_in_domain: np.ndarray


def _constraint_basis(s: np.ndarray, free: int) -> np.ndarray:
    """Orthonormal basis of {c : Σ_k c_k s_k^j = 0 for j < len(s) − free}.

    These are the weights c for which the polynomial Σ_k c_k ℓ(x)/(x − s_k), ℓ = Π_k (x − s_k), has degree
    ≤ free − 1; ``s`` are the support points mapped to [−1, 1] (an affine map leaves the constraint space
    unchanged and keeps the Vandermonde rows well scaled).
    """
    K = s.size - free
    if K <= 0:
        return np.eye(s.size)
    V = np.vander(s, K, increasing=True).T
    return scipy.linalg.null_space(V)


def _support_points(
    tgt: Target,
    dom: Domain,
    N: int,
    init: BarycentricRational | np.ndarray | Sequence[float] | None,
    n_samples: int,
) -> np.ndarray:
    if init is None:
        return np.sort(
            aaa(tgt, dom, degree=N, tol=0.0, n_samples=n_samples, refine=False, cleanup=False).r.z.real
        )
    z = init.z if isinstance(init, BarycentricRational) else np.asarray(init, dtype=float)
    if np.iscomplexobj(z):
        if np.any(z.imag != 0):
            raise RationalApproxError("lawson needs real support points; init has complex ones")
        z = z.real
    z = np.unique(np.asarray(z, dtype=float).ravel())
    if z.size != N + 1:
        raise DegreeError(f"type needs N + 1 = {N + 1} support points (N = max(m, n)), init gives {z.size}")
    if not np.all(np.isfinite(z)):
        raise RationalApproxError("init support points must be finite")
    return z


def lawson(
    target: Target | str | Callable[[np.ndarray], np.ndarray],
    type: int | Sequence[int],
    domain: Domain | str | Sequence[float] | None = None,
    *,
    maxiter: int = 500,
    n_samples: int = LAWSON_N_SAMPLES,
    init: BarycentricRational | np.ndarray | Sequence[float] | None = None,
    tol: float = 1e-5,
    patience: int = 30,
    refine: bool = True,
    max_refinements: int = 8,
    check_k: int = 3,
    check_rtol: float = 1e-3,
) -> LawsonResult:
    """AAA-Lawson near-minimax approximation of type (m, n) (module docstring).

    Parameters
    ----------
    target : Target, str or callable
    type : int or (m, n)
        n means (n, n). Any m, n ≥ 0 with m + n ≥ 1 is supported (N = max(m, n) + 1 support points, degree
        constraints on the other side); (n, n) is the natural case.
    domain : Domain, "a,b;c,d", (a, b) or None
        Default ``target.default_domain()``.
    maxiter : int
        Upper bound on Lawson steps (all refinement rounds together).
    n_samples : int
        Size of the Chebyshev-like part of the initial samples.
    init : BarycentricRational or array of N + 1 real support points, optional
        Support points to use; default: those of a type-(N, N) AAA fit.
    tol, patience : float, int
        Settled when the best max error improved by less than a factor (1 − tol) over ``patience`` steps.
    refine, max_refinements, check_k, check_rtol
        Adaptive sampling (module docstring).

    Raises
    ------
    DegreeError
        Bad ``type`` or an ``init`` with the wrong number of support points.
    TargetError, DomainError
        As for :func:`rational_approx.fitting.aaa.aaa`.
    ConvergenceError
        The least-squares solution has a zero denominator weight (r would have a pole at a support point).
    """
    t0 = time.perf_counter()
    tgt = resolve_target(target)
    dom = resolve_domain(domain, tgt)
    m, n = parse_type(type)
    N = max(m, n)
    failure: ConvergenceError | None = None
    if isinstance(maxiter, bool) or not isinstance(maxiter, int | np.integer) or maxiter < 1:
        raise RationalApproxError(f"maxiter must be a positive integer, got {maxiter!r}")
    if not (0 < tol < 1) or not (0 < check_rtol < 1):
        raise RationalApproxError(f"tol and check_rtol must lie in (0, 1), got {tol!r}, {check_rtol!r}")

    if init is not None:
        starts = [_support_points(tgt, dom, N, init, n_samples)]
    else:
        starts = _candidate_supports(tgt, dom, N, n_samples)
    x0 = initial_samples(tgt, dom, n_samples, depth=LAWSON_DEPTH)
    settings = (maxiter, tol, patience, refine, max_refinements, check_k, check_rtol)
    runs = []
    for t in starts:
        try:
            runs.append(_run(tgt, dom, (m, n), t, x0, settings))
        except ConvergenceError as exc:
            failure = exc
    if not runs:
        raise failure
    # Prefer a pole-free result, then the smallest error.
    r, error, history, settled, xs, residual, weights = min(
        runs, key=lambda run: (poles_on_domain(run[0], dom).size > 0, run[1])
    )
    return LawsonResult(
        r=r,
        error=error,
        history=history,
        converged=settled,
        seconds=time.perf_counter() - t0,
        samples=xs,
        residual=residual,
        weights=weights,
        iterations=int(history.size),
        type=(m, n),
        domain=dom,
        target=tgt,
        real_poles_in_domain=poles_on_domain(r, dom),
    )


def _candidate_supports(tgt: Target, dom: Domain, N: int, n_samples: int) -> list[np.ndarray]:
    """Support points to start from: those of a type-(N, N) AAA fit of the target and, for a target with a
    kink or jump at c, those of AAA applied to |x − c| on the same domain.

    Lawson keeps its support points fixed, so their placement limits what it can reach. AAA places them well
    for |x| but, at low degree, poorly for ReLU and sign (its iterates there have real poles); the nodes AAA
    picks for |x − c| cluster at c the way near-best approximants of any function with a singularity at c
    need.
    """
    starts = [_support_points(tgt, dom, N, None, n_samples)]
    for c in tgt.singular_points[:1]:
        kink = Target.from_callable(lambda x, c=c: np.abs(x - c), name="abs_shift", kinks=(c,))
        starts.append(
            np.sort(
                aaa(kink, dom, degree=N, tol=0.0, n_samples=n_samples, refine=False, cleanup=False).r.z.real
            )
        )
    return [t for t in starts if t.size == N + 1] or starts[:1]


def _run(
    tgt: Target, dom: Domain, mn: tuple[int, int], t: np.ndarray, x0: np.ndarray, settings: tuple
) -> tuple[BarycentricRational, float, np.ndarray, bool, np.ndarray, np.ndarray, np.ndarray]:
    """Lawson iteration with support points ``t`` from samples ``x0``; see :func:`lawson`.

    Returns (r, error on the check set, history, settled, check points, residual there, weights there).
    """
    maxiter, tol, patience, refine, max_refinements, check_k, check_rtol = settings
    m, n = mn
    x = np.setdiff1d(x0, t)
    fx = tgt.f(x)
    center, half = 0.5 * (dom.a + dom.b), 0.5 * (dom.b - dom.a)
    s = (t - center) / half
    Qa, Qb = _constraint_basis(s, m + 1), _constraint_basis(s, n + 1)
    omega = np.full(x.size, 1.0 / x.size)

    history: list[float] = []
    best: tuple[float, np.ndarray, np.ndarray, np.ndarray] | None = None  # (error, alpha, beta, omega)
    gamma, since_best, rounds, settled = 1.0, 0, 0, False
    while len(history) < maxiter:
        C = 1.0 / (x[:, None] - t[None, :])
        beta, alpha = _lawson_step(C @ Qb, C @ Qa, fx, np.sqrt(omega))
        beta, alpha = Qb @ beta, Qa @ alpha
        with np.errstate(divide="ignore", invalid="ignore"):
            e = fx - (C @ alpha) / (C @ beta)
        E = float(np.max(np.abs(e))) if np.all(np.isfinite(e)) else np.inf
        history.append(E)
        if best is None or E < best[0] * (1 - tol):
            since_best = 0
            gamma = min(1.0, 1.5 * gamma)
        else:
            since_best += 1
        if best is None or E < best[0]:
            best = (E, alpha, beta, omega)
        elif E > BLOWUP * best[0]:
            omega, gamma = best[3], gamma / 2
            continue
        if since_best >= patience:
            # Settled on these samples: check between them, refine where the error is unresolved.
            settled = True
            if not refine or rounds >= max_refinements:
                break
            r = _rational(t, best[1], best[2], mn)
            xc = np.union1d(interleave(np.union1d(x, t), dom, check_k), t)
            ec = np.abs(tgt.f(xc) - r(xc))
            new = np.setdiff1d(refinement_points(x, xc, ec, best[0] * (1 + check_rtol), dom), t)
            if new.size == 0:
                break
            settled, rounds, since_best = False, rounds + 1, 0
            order = np.argsort(np.concatenate([x, new]))
            x = np.concatenate([x, new])[order]
            fx = np.concatenate([fx, tgt.f(new)])[order]
            omega = np.concatenate([best[3], np.full(new.size, best[3].max())])[order]
            omega /= omega.sum()
            # The best iterate stays the reference, measured on the enlarged sample set.
            best = (float(np.max(np.abs(fx - r(x)))), best[1], best[2], omega)
            continue
        w = omega * np.abs(e) ** gamma
        omega = w / w.sum() if w.sum() > 0 else omega

    assert best is not None
    r = _rational(t, best[1], best[2], mn)
    xs = np.union1d(interleave(np.union1d(x, t), dom, check_k), t)
    residual = tgt.f(xs) - r(xs)
    weights = np.zeros(xs.size)
    weights[np.searchsorted(xs, x)] = best[3]
    return r, float(np.max(np.abs(residual))), np.array(history), settled, xs, residual, weights


def _lawson_step(
    Cb: np.ndarray, Ca: np.ndarray, fx: np.ndarray, sq: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One weighted linearised least-squares solve: (b, a) minimising ‖sq·(f·Cb b − Ca a)‖.

    Normalised by the *values* of D and N on the samples, ‖sq·Cb b‖² + ‖sq·Ca a‖² = 1, not by the
    coefficients: with clustered support points the Cauchy columns are nearly dependent, and a coefficient
    normalisation would let D and N both be tiny on the samples (a spurious near-null solution). Thin QR
    factorisations U R of the two weighted blocks turn this into a plain SVD of [f·U_b, −U_a]; then b =
    R_b⁻¹ b', a = R_a⁻¹ a'.
    """
    Ub, Rb = np.linalg.qr(sq[:, None] * Cb)
    Ua, Ra = np.linalg.qr(sq[:, None] * Ca)
    _, _, vh = np.linalg.svd(np.hstack([fx[:, None] * Ub, -Ua]), full_matrices=False)
    v = vh[-1]
    k = Cb.shape[1]
    b = scipy.linalg.solve_triangular(Rb, v[:k])
    a = scipy.linalg.solve_triangular(Ra, v[k:])
    return b, a


def _rational(
    t: np.ndarray, alpha: np.ndarray, beta: np.ndarray, type: tuple[int, int]
) -> BarycentricRational:
    """N/D with numerator weights α and denominator weights β, as a barycentric rational (values α/β)."""
    if np.any(beta == 0):
        raise ConvergenceError(
            "AAA-Lawson produced a zero denominator weight (a pole at a support point); try other "
            "support points via init= or a different type",
        )
    return BarycentricRational(t, alpha / beta, beta, type=type)
