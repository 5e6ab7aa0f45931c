"""AAA rational approximation on a real domain: adaptive sampling, pole clean-up, a report of real poles.

What it computes
----------------
Given samples f_j = f(x_j) on a finite set X ⊂ domain, AAA (Nakatsukasa, Sète & Trefethen 2018) builds a
rational in barycentric form

    r(x) = Σ_k w_k f(z_k)/(x − z_k)  /  Σ_k w_k/(x − z_k)

greedily: at step m it adds the sample point where |f − r| is largest to the support set {z_0, …, z_m}, then
chooses the weights w (‖w‖₂ = 1) that minimise the linearised residual ‖f·D − N‖ over the remaining samples,
i.e. the right singular vector of the smallest singular value of the Loewner matrix

    A_jk = (f_j − f(z_k)) / (x_j − z_k),   x_j ∈ X \\ {z_k}.

After m steps r has type at most (m, m) and interpolates f at the support points.

Why the sample set matters, and what is adaptive here
-----------------------------------------------------
AAA only sees X. For |x| the best type-(n, n) error is ≈ 8·exp(−π√n) and the approximant resolves the kink
on the scale of that error, so on a uniform grid of spacing h, AAA fits the samples to rounding yet leaves
O(h)-size errors (and sometimes real poles) between them — the familiar stall of uniform-grid AAA near 1e-4.
Three measures:

1. the initial samples come from :meth:`Domain.sample`: Chebyshev-like points on each interval plus points
   c ± L·10^(−s) clustered exponentially at every interval end point and every kink or jump of the target;
2. the least-squares rows carry quadrature weights √h_j (:func:`quadrature_weights`), so the linearised
   residual approximates a continuous L² norm and the clustered points do not dominate the fit (unweighted
   AAA on such samples of |x| has real poles at most low degrees);
3. after each fit the error is measured on a finer *check set* (:func:`interleave`: ``k`` equispaced points
   between every pair of consecutive samples). Wherever the check error has a local maximum above the
   threshold (the tolerance, or twice the sample error for a degree-capped fit), the point is added with a
   geometric cluster around it and towards its two bracketing samples (:func:`refinement_points`), and AAA
   is rerun. This repeats until the check set agrees with the samples (or ``max_refinements`` rounds).

The reported ``error`` is always the maximum over the final check set, never over the points AAA was fitted
on.

Clean-up and real poles
-----------------------
A pole p with residue ρ contributes ρ/(x − p) to r; if |ρ| / dist(p, X) is below the tolerance times max|f|
the pole is invisible on the samples — a Froissart doublet, an artefact of rounding. Clean-up removes the
support point nearest to each such pole and re-solves the least-squares problem with the remaining support
points (the removed points become ordinary samples again), as in §5 of the AAA paper; the clean-up is
kept only if it at most doubles the sample error (:func:`remove_doublets`). Independently of the clean-up,
every pole on the real axis inside the domain is reported in ``real_poles_in_domain``
(:func:`poles_on_domain`): such a pole makes r unbounded on the domain, whatever its residue, and r must not
be used there as a uniform approximation. When AAA runs to a tolerance, an iterate with such a pole does not
count as converged (as in continuum AAA) and, without convergence, the best pole-free iterate is returned.
With ``degree=n`` the type-(n, n) iterate is returned as it is, poles reported. Greedy AAA is not a
best-approximation method: at low degree its iterates for ReLU and sign often have real poles; use
:func:`rational_approx.fitting.lawson.lawson` or minimax for near-best fits of a given type.

References
----------
Y. Nakatsukasa, O. Sète, L. N. Trefethen, "The AAA algorithm for rational approximation", SIAM J. Sci.
Comput. 40 (2018) A1494–A1522. T. A. Driscoll, Y. Nakatsukasa, L. N. Trefethen, "AAA rational approximation
on a continuum", SIAM J. Sci. Comput. 46 (2024) (adaptive sampling between samples).

Example
-------
>>> import numpy as np
>>> from rational_approx.fitting.aaa import aaa
>>> res = aaa(np.exp)                       # smooth: converges to the tolerance at low degree
>>> res.converged, res.r.type[0] <= 10, res.error < 1e-13
(True, True, True)
>>> res = aaa("abs", degree=20)             # |x|: root-exponential, kink resolved by clustered samples
>>> res.r.type, res.error < 1e-4, res.real_poles_in_domain.size
((20, 20), True, 0)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rational_approx.errors import DegreeError, DomainError, RationalApproxError
from rational_approx.representation.barycentric import BarycentricRational
from rational_approx.representation.domain import Domain
from rational_approx.representation.fit_result import FitResult
from rational_approx.representation.targets import Target, resolve

__all__ = [
    "AAAResult",
    "aaa",
    "interleave",
    "initial_samples",
    "loewner_weights",
    "poles_on_domain",
    "quadrature_weights",
    "refinement_points",
    "remove_doublets",
]

#: Size of the Chebyshev-like part of the default sample set (clustered points come on top).
DEFAULT_N_SAMPLES = 2000
#: Decades of exponential clustering at kinks, jumps and interval ends.
CLUSTER_DEPTH = 40
#: Window (in AAA steps) over which the error must halve, else AAA is considered stagnant at rounding level.
STAGNATION_WINDOW = 20
#: Points added per flagged location by the adaptive refinement (geometric grading, decades of depth).
REFINE_DECADES = 15


@dataclass
class AAAResult(FitResult):
    """The outcome of :func:`aaa` (the common fields are those of
    :class:`~rational_approx.representation.fit_result.FitResult`).

    Attributes
    ----------
    r : BarycentricRational
        The approximant, of type (m, m) with m + 1 = number of support points (``type``).
    error : float
        max |f − r| over the final check set (the final samples plus ``k`` points between each consecutive
        pair).
    errors : ndarray
        ``errors[m]`` = max |f − r_m| over the final sample set for the type-(m, m) AAA iterate r_m of the
        last AAA run (before clean-up).
    real_poles_in_domain : ndarray
        Real poles of ``r`` lying in the domain (sorted). Non-empty means r is unbounded on the domain.
    n_cleanup_removed : int
        Support points removed by the clean-up of Froissart doublets.
    samples : ndarray
        The final sample set (sorted abscissae).
    converged : bool
        True when ``error`` ≤ tol · max|f| (the tolerance was met on the check set, not only on the samples) and r has
        no pole in the domain.
    iterations : int
        Adaptive refinement rounds that added points.
    seconds : float
        Wall-clock time.
    """

    r: BarycentricRational
    errors: np.ndarray
    real_poles_in_domain: np.ndarray
    n_cleanup_removed: int
    samples: np.ndarray

    def to_dict(self) -> dict:
        return {**super().to_dict(), "method": "aaa", "cleanup_removed": int(self.n_cleanup_removed),
                "samples": int(self.samples.size)}


# ------------------------------------------------------------ input handling
def _check_count(name: str, value: object, minimum: int, error: type[Exception]) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise error(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def _check_tol(tol: object) -> float:
    if isinstance(tol, bool) or not isinstance(tol, int | float | np.floating) or not (0 <= tol < 1):
        raise RationalApproxError(f"tol must be a relative tolerance in [0, 1), got {tol!r}")
    return float(tol)


def initial_samples(
    target: Target,
    domain: Domain,
    n_samples: int,
    points: np.ndarray | Sequence[float] | None = None,
    depth: int = CLUSTER_DEPTH,
) -> np.ndarray:
    """Starting samples: ``points`` if given (validated), else :meth:`Domain.sample` clustered at the target's
    kinks and jumps and at the interval end points, always including the end points themselves."""
    if points is not None:
        x = np.unique(np.asarray(points, dtype=float).ravel())
        if x.size < 2 or not np.all(np.isfinite(x)):
            raise DomainError("points must hold at least 2 distinct finite sample points")
        if not np.all(domain.contains(x)):
            raise DomainError(
                f"all sample points must lie in {domain}, e.g. {x[~domain.contains(x)][0]!r} does not"
            )
        return x
    n_samples = _check_count("n_samples", n_samples, 2, DomainError)
    x = domain.sample(n_samples, cluster=target.singular_points, depth=depth)
    return _thin(np.unique(np.concatenate([x, domain.endpoints])))


def _thin(x: np.ndarray, rtol: float = 1e-12) -> np.ndarray:
    """Drop points of the sorted ``x`` that agree with their left neighbour to ``rtol`` relative accuracy.

    Clustering c ± L·10^(−s) at an end point c ≠ 0 produces, for s ≳ 16, points a few ulps apart: they carry
    no new information and make Loewner rows nearly equal, which breeds Froissart doublets. Near 0 the
    relative spacing of the clustered points stays large, so nothing is lost at a kink at the origin.
    """
    keep = np.ones(x.size, dtype=bool)
    keep[1:] = np.diff(x) > rtol * np.maximum(np.abs(x[1:]), np.abs(x[:-1]))
    return x[keep]


# ------------------------------------------------------------ check sets
def interleave(x: np.ndarray, domain: Domain, k: int = 3) -> np.ndarray:
    """The sorted union of ``x`` and ``k`` equispaced points strictly between each pair of consecutive points
    of ``x``, keeping only points in ``domain`` (so nothing is placed in a gap of a gapped domain).

    Because the default samples cluster exponentially, so does this check set: it is k + 1 times finer than
    the sample set everywhere, in the relative sense.
    """
    x = np.unique(np.asarray(x, dtype=float))
    t = np.arange(1, k + 1) / (k + 1)
    between = (x[:-1, None] + np.diff(x)[:, None] * t[None, :]).ravel()
    pts = np.unique(np.concatenate([x, between]))
    return pts[domain.contains(pts)]


def refinement_points(
    x: np.ndarray, xc: np.ndarray, err: np.ndarray, threshold: float, domain: Domain, max_sites: int = 20
) -> np.ndarray:
    """New sample points where the check-set error exceeds ``threshold``.

    The sites are the local maxima of ``err`` (the error on the sorted check set ``xc``) above ``threshold``
    that are not already samples, at most ``max_sites`` of the largest. Around each site s, bracketed by
    samples a < s < b, the points s ± d·10^(−j/2) (d = distance to the nearer of a, b) and a + (b −
    a)·10^(−j), b − (b − a)·10^(−j), j = 1 … REFINE_DECADES, are added: the error of a rational that
    under-resolves a singularity lives on a scale far below the local sample spacing, and the geometric
    grading reaches it in one round.
    """
    left = np.concatenate([[-np.inf], err[:-1]])
    right = np.concatenate([err[1:], [-np.inf]])
    is_new = ~np.isin(xc, x)
    sites = np.nonzero((err > threshold) & (err >= left) & (err >= right) & is_new)[0]
    if sites.size == 0:
        return np.empty(0)
    sites = sites[np.argsort(err[sites])[::-1][:max_sites]]
    s = xc[sites]
    pos = np.searchsorted(x, s)
    a = x[np.clip(pos - 1, 0, x.size - 1)]
    b = x[np.clip(pos, 0, x.size - 1)]
    d = np.minimum(s - a, b - s)
    j = np.arange(1, REFINE_DECADES + 1)
    halves = 10.0 ** (-np.arange(1, 2 * REFINE_DECADES + 1) / 2)
    new = [
        s,
        (s[:, None] + d[:, None] * halves).ravel(),
        (s[:, None] - d[:, None] * halves).ravel(),
        (a[:, None] + (b - a)[:, None] * 10.0**-j).ravel(),
        (b[:, None] - (b - a)[:, None] * 10.0**-j).ravel(),
    ]
    pts = np.unique(np.concatenate(new))
    pts = pts[domain.contains(pts) & np.isfinite(pts)]
    return np.setdiff1d(pts, x)


# ------------------------------------------------------------ AAA core
def quadrature_weights(x: np.ndarray, domain: Domain) -> np.ndarray:
    """Row weights ω_j = √h_j, h_j the local spacing of the sorted samples within their interval.

    With them the least-squares residual Σ_j ω_j² |f_j D(x_j) − N(x_j)|² is a Riemann sum for the continuous
    L² norm over the domain, so the hundreds of samples that cluster at a kink (needed to *see* it) do not
    dominate the fit; without them discrete AAA on clustered samples of |x| and ReLU produces real poles at
    low degree.
    """
    h = np.empty_like(x)
    for a, b in domain.intervals:
        inside = (x >= a) & (x <= b)
        xi = x[inside]
        h[inside] = np.gradient(xi) if xi.size >= 2 else b - a
    return np.sqrt(h)


def loewner_weights(
    x: np.ndarray, fx: np.ndarray, z: np.ndarray, fz: np.ndarray, rows: np.ndarray | None = None
) -> np.ndarray:
    """Weights w, ‖w‖ = 1, minimising ‖diag(rows)·A w‖, A_jk = (f_j − f(z_k))/(x_j − z_k) the Loewner matrix.

    ``x`` must not contain support points; ``rows`` are row weights (default 1). This is the least-squares
    step of AAA and of its clean-up.
    """
    with np.errstate(divide="ignore"):
        C = 1.0 / (x[:, None] - z[None, :])
    A = fx[:, None] * C - C * fz[None, :]
    if rows is not None:
        A = A * rows[:, None]
    if A.shape[0] < A.shape[1]:
        raise RationalApproxError(
            f"{A.shape[0]} samples cannot determine {A.shape[1]} barycentric weights; use more samples"
        )
    _, _, vh = np.linalg.svd(A, full_matrices=False)
    return vh[-1]


def _on_domain(r: BarycentricRational, poles: np.ndarray, domain: Domain, rtol: float) -> np.ndarray:
    """Mask of the poles that lie on the domain, in the sense of :func:`poles_on_domain`."""
    at_support = np.min(np.abs(poles[:, None] - r.z[None, :]), axis=1) <= 4 * np.spacing(np.abs(poles))
    return (np.abs(poles.imag) <= rtol * np.abs(poles)) & domain.contains(poles.real) & ~at_support


def poles_on_domain(r: BarycentricRational, domain: Domain, rtol: float = 1e-8) -> np.ndarray:
    """Real parts of the poles of ``r`` that lie on the domain, sorted.

    A pole p counts when Re p is in the domain and p is real to working accuracy, |Im p| ≤ rtol·|p|. The
    default rtol ≈ √ε also catches a double real pole that rounding split into a conjugate pair (its
    imaginary parts are O(√ε)), while the genuine poles of an approximant of |x|, which approach 0 along the
    imaginary axis, are not reported (a test |Im p| ≤ tol with an absolute tol would report them once they
    come within tol of 0). An eigenvalue that coincides with a support point to a few ulps is not a pole: r
    takes its finite value f_k there exactly (it comes from a weight that is negligible against the others,
    a removable singularity).
    """
    p = r.poles()
    return np.sort(p.real[_on_domain(r, p, domain, rtol)])


def _has_doublet_on_domain(r: BarycentricRational, domain: Domain, tol: float) -> bool:
    """Whether r has a pole on the domain whose residue is below ``tol`` (or not finite)."""
    p = r.poles()
    p = p[_on_domain(r, p, domain, 1e-8)]
    if p.size == 0:
        return False
    with np.errstate(divide="ignore", invalid="ignore"):
        res = np.abs(r.residues(p))
    return bool(np.any(~np.isfinite(res) | (res <= max(tol, 1e-13 * float(np.max(np.abs(r.f)))))))


def _aaa_core(
    x: np.ndarray, fx: np.ndarray, rows: np.ndarray, abstol: float, max_degree: int, domain: Domain
) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray, bool]:
    """Greedy AAA on fixed samples with row weights ``rows``.

    Returns every iterate as (support indices, weights), the sample error of each, and whether the last one
    converged. Converged means sample error ≤ ``abstol`` *and* no pole on the domain with residue below
    ``abstol``: an iterate that fits the samples but hides a Froissart doublet between them is skipped, as in
    continuum AAA, while a pole the target itself has (a large residue) is accepted and reported. Otherwise
    AAA stops at type (max_degree, max_degree) or when the error has not halved over the last
    STAGNATION_WINDOW steps (rounding level).
    """
    M = x.size
    max_support = min(max_degree + 1, M // 2)
    mask = np.ones(M, dtype=bool)
    C = np.empty((M, max_support))
    R = np.full(M, np.mean(fx))
    support: list[int] = []
    errors: list[float] = []
    fits: list[tuple[np.ndarray, np.ndarray]] = []
    window = STAGNATION_WINDOW
    for m in range(max_support):
        j = int(np.argmax(np.where(mask, np.abs(fx - R), -np.inf)))
        support.append(j)
        mask[j] = False
        with np.errstate(divide="ignore"):
            C[:, m] = 1.0 / (x - x[j])
        Cm = C[mask, : m + 1]
        fz = fx[support]
        A = (fx[mask, None] * Cm - Cm * fz[None, :]) * rows[mask, None]
        _, _, vh = np.linalg.svd(A, full_matrices=False)
        w = vh[-1]
        R = fx.copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            R[mask] = (Cm @ (w * fz)) / (Cm @ w)
        err = float(np.max(np.abs(fx - R)))
        errors.append(err if np.isfinite(err) else np.inf)
        fits.append((np.array(support), w))
        r = BarycentricRational(x[support], fz, w)
        if err <= abstol and not _has_doublet_on_domain(r, domain, abstol):
            return fits, np.array(errors), True
        if m + 1 >= 2 * window and min(errors[-window:]) > 0.5 * min(errors[:-window]):
            break
    return fits, np.array(errors), False


def remove_doublets(
    x: np.ndarray,
    fx: np.ndarray,
    support: np.ndarray,
    w: np.ndarray,
    threshold: float,
    domain: Domain,
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Remove Froissart doublets from the AAA iterate (x[support], fx[support], w).

    A pole p with residue ρ is spurious when |ρ| / dist(p, samples) < ``threshold`` (invisible on the
    samples), or when it lies on the domain (:func:`poles_on_domain`) with |ρ| < ``threshold`` (a pole–zero
    pair of width ≈ |ρ|/|f| squeezed between two samples). For each spurious pole the nearest support point
    is dropped and the weights are re-solved by (row-weighted) least squares over the samples that are not
    support points; this repeats until none is left. Support points with weight exactly 0 contribute nothing
    and are dropped first. Returns (support, weights, number of support points removed for doublets).
    """
    removed = 0
    keep = w != 0
    support, w = np.asarray(support)[keep], w[keep]
    while support.size > 1:
        r = BarycentricRational(x[support], fx[support], w)
        poles = r.poles()
        if poles.size == 0:
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            res = np.abs(r.residues(poles))
        res[~np.isfinite(res)] = (
            0.0  # a pole exactly at a support point: its weight underflowed, a removable pair
        )
        dist = np.min(np.abs(poles[:, None] - x[None, :]), axis=1)
        on_domain = _on_domain(r, poles, domain, 1e-8)
        spurious = poles[(res < threshold * dist) | (on_domain & (res < threshold))]
        if spurious.size == 0:
            break
        drop = np.unique([int(np.argmin(np.abs(x[support] - p))) for p in spurious])
        if drop.size >= support.size:
            break
        support = np.delete(support, drop)
        removed += int(drop.size)
        rest = np.ones(x.size, dtype=bool)
        rest[support] = False
        w = loewner_weights(x[rest], fx[rest], x[support], fx[support], None if rows is None else rows[rest])
    return support, w, removed


def _select(
    x: np.ndarray,
    fx: np.ndarray,
    rows: np.ndarray,
    fits: list[tuple[np.ndarray, np.ndarray]],
    errors: np.ndarray,
    converged: bool,
    exact_degree: int | None,
    cleanup: bool,
    threshold: float,
    domain: Domain,
) -> tuple[BarycentricRational, int]:
    """Pick the AAA iterate to return and clean it up. Returns (r, support points removed by clean-up).

    The iterate that converged; else, with ``exact_degree``, the type-(degree, degree) one if AAA got there;
    else the one with the smallest sample error among those that (after clean-up) have no pole on the
    domain, or the smallest overall if every iterate has one. A clean-up is kept only if it at most doubles
    the sample error: re-solving the least-squares problem with fewer support points can make a poorly
    resolved fit much worse.
    """

    def finish(k: int) -> tuple[BarycentricRational, int]:
        idx, w = fits[k]
        r = BarycentricRational(x[idx], fx[idx], w)
        if not cleanup:
            return r, 0
        idx2, w2, removed = remove_doublets(x, fx, idx, w, threshold, domain, rows)
        if removed == 0:
            return BarycentricRational(x[idx2], fx[idx2], w2), 0
        r2 = BarycentricRational(x[idx2], fx[idx2], w2)
        before, after = (float(np.max(np.abs(fx - q(x)))) for q in (r, r2))
        return (r2, removed) if after <= max(2.0 * before, threshold) else (r, 0)

    if converged or (exact_degree is not None and errors.size == exact_degree + 1):
        return finish(errors.size - 1)
    order = np.argsort(errors, kind="stable")
    for k in order:
        r, removed = finish(int(k))
        if poles_on_domain(r, domain).size == 0:
            return r, removed
    return finish(int(order[0]))


# ------------------------------------------------------------ public entry
def aaa(
    target: Target | str | Callable[[np.ndarray], np.ndarray],
    domain: Domain | str | Sequence[float] | None = None,
    *,
    tol: float = 1e-13,
    mmax: int = 100,
    degree: int | None = None,
    n_samples: int = DEFAULT_N_SAMPLES,
    points: np.ndarray | Sequence[float] | None = None,
    cleanup: bool = True,
    refine: bool = True,
    max_refinements: int = 10,
    check_k: int = 3,
    gap: float | None = None,
    **target_kw,
) -> AAAResult:
    """AAA rational approximation of a real target on a real domain, with adaptive sampling (see the module).

    Parameters
    ----------
    target : Target, str or callable
        What to approximate (a name from :data:`~rational_approx.representation.targets.TARGET_NAMES`, or a vectorised
        function).
    domain : Domain, "a,b;c,d", (a, b) or None
        Where; default ``target.default_domain()``.
    tol : float
        Relative tolerance: stop when max|f − r| ≤ tol · max|f| on the samples.
    mmax : int
        Largest type (mmax, mmax) AAA may reach.
    degree : int, optional
        Stop at type (degree, degree) (earlier if the tolerance is met). Must be ≤ ``mmax``.
    n_samples : int
        Size of the Chebyshev-like part of the initial samples (clustered points come on top).
    points : array, optional
        Explicit initial sample points (in the domain) instead of the clustered default, e.g. a uniform grid.
    cleanup : bool
        Remove Froissart doublets (module docstring).
    refine : bool
        Adaptive sampling: refit until the check set agrees with the samples.
    max_refinements : int
        Upper bound on refinement rounds.
    check_k : int
        Points between consecutive samples in the check set.

    Returns
    -------
    AAAResult

    Raises
    ------
    TargetError
        Unknown target, non-finite values on the samples, or a jump inside the domain.
    DegreeError
        ``mmax`` or ``degree`` not a non-negative integer, or ``degree > mmax``.
    DomainError
        Malformed domain, ``n_samples < 2`` or sample points outside the domain.
    """
    t0 = time.perf_counter()
    tgt, dom = resolve(target, domain, gap, **target_kw)
    tol = _check_tol(tol)
    mmax = _check_count("mmax", mmax, 0, DegreeError)
    if degree is not None:
        degree = _check_count("degree", degree, 0, DegreeError)
        if degree > mmax:
            raise DegreeError(f"degree={degree} exceeds mmax={mmax}; raise mmax or lower degree")
    cap = mmax if degree is None else degree
    max_refinements = _check_count("max_refinements", max_refinements, 0, RationalApproxError)
    check_k = _check_count("check_k", check_k, 1, RationalApproxError)

    x = initial_samples(tgt, dom, n_samples, points)
    fx = tgt.evaluate(x)
    rounds = 0
    while True:
        scale = float(np.max(np.abs(fx)))
        abstol = tol * scale
        rows = quadrature_weights(x, dom)
        fits, history, done = _aaa_core(x, fx, rows, abstol, cap, dom)
        r, removed = _select(x, fx, rows, fits, history, done, degree, cleanup, max(tol, 1e-13) * scale, dom)
        sample_err = float(np.max(np.abs(fx - r(x))))
        xc = interleave(x, dom, check_k)
        ec = np.abs(tgt.evaluate(xc) - r(xc))
        error = float(np.max(ec))
        if not refine or rounds >= max_refinements:
            break
        new = refinement_points(x, xc, ec, max(abstol, 2.0 * sample_err), dom)
        if new.size == 0:
            break
        x = np.concatenate([x, new])
        order = np.argsort(x)
        x, fx = x[order], np.concatenate([fx, tgt.evaluate(new)])[order]
        rounds += 1

    real_poles = poles_on_domain(r, dom)
    return AAAResult(
        r=r,
        errors=history,
        real_poles_in_domain=real_poles,
        n_cleanup_removed=removed,
        samples=x,
        target=tgt,
        type=r.type,
        domain=dom,
        error=error,
        converged=bool(error <= abstol) and math.isfinite(error) and real_poles.size == 0,
        iterations=rounds,
        seconds=time.perf_counter() - t0,
    )
