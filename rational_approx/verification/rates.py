"""Measured rates: degree needed for accuracy ε, and the reverse gap of piecewise-linear units.

Three questions the RSAE paper (arXiv 2606.14990) answers with O(·) claims, answered here with numbers.

**ReLU gate, size O(log²(1/ε)).** The best type-(2k+1, 2k) error of ReLU on [−1, 1] is E_{2k}(|x|)/2, and
Stahl's E_n ~ 8e^{−π√n} gives n(ε) ≈ (ln(4/ε)/π)². :func:`degree_needed` reads n(ε) off a table of
measured best errors and :func:`fit_log_squared` fits √n = α·ln(1/ε) + β (Stahl: α = 1/π).

**JumpReLU / TopK gates with a gap δ, size O(log(1/ε)·log(1/δ)).** The gate g(x) = x·H(x − θ) on
D_δ = [−1, θ − δ] ∪ [θ + δ, 1] (TopK with a supplied threshold τ is the same function with θ = τ)
is approximated by the explicit rational

    r(x) = x·(1 + Z_n((x − θ)/s))/2,   s = max(1 + θ, 1 − θ),

with Z_n Zolotarev's best sign approximant on [−1, −δ/s] ∪ [δ/s, 1]
(:func:`~rational_approx.verification.theory.zolotarev_sign`); r has type (n + 1, n) and ‖g − r‖_{D_δ} ≤
max|x|·E_n^Z(δ/s)/2 ≤ E_n^Z(δ/s)/2 — an exact, certified-by-formula upper bound on the best error.
Since E_n^Z(ℓ) ≈ 4 exp(−π² n / (2 ln(4/ℓ))), the gate error E_n^Z/2 ≈ 2 exp(−π² n / (2 ln(4s/δ))) is ≤ ε
for n ≈ (2/π²)·ln(2/ε)·ln(4s/δ):
:func:`gate_degree_needed` returns the exact n, :func:`fit_log_product` the constant.

**Reverse gap.** R*_η(x) = η²/(x² + η²) is a type-(0, 2) rational (error 0 with 3 parameters), while any sum
c + Σ_{i≤N} a_i φ(w_i x + b_i) of N ReLU, JumpReLU or threshold-gated (TopK) units is piecewise
linear with at most N + 1 pieces (one breakpoint per unit; JumpReLU/TopK pieces may jump). So N + 1
is at least the least number of pieces of *any* (even discontinuous) piecewise-linear function
within ε of R*_η. That least number is computed exactly for a finite point set
(:func:`min_linear_pieces`: greedy left-to-right covering, optimal because the best linear error of
a set of consecutive points only grows when points are added); a finite set only relaxes the
constraints, so the count is a rigorous lower bound for the continuous problem. An upper bound
comes from an actual continuous ReLU network: the best continuous linear spline on those
breakpoints (a linear programme). Both scale as ε ≈ C/N², C → (∫√|R''|)²/16 = (∫_ℝ √|g''|)²/16 ≈
1.53 for g(u) = 1/(1 + u²) as η → 0 — i.e. N = Ω(ε^{−1/2}) with a constant that does not shrink with η.

Example
-------
>>> res = reverse_gap_units(0.1, [1e-2, 1e-3])
>>> [p.units_lower for p in res]
[11, 35]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import scipy.integrate
import scipy.optimize
import scipy.sparse

from rational_approx.errors import ConvergenceError, DomainError, RationalApproxError
from rational_approx.verification.theory import zolotarev_asymptote, zolotarev_sign

__all__ = [
    "degree_needed",
    "fit_log_squared",
    "fit_log_product",
    "gate_zolotarev_error",
    "gate_degree_needed",
    "gate_zolotarev_rational",
    "best_line_error",
    "min_linear_pieces",
    "continuous_spline_error",
    "ReverseGapPoint",
    "reverse_gap_target",
    "reverse_gap_grid",
    "reverse_gap_units",
    "reverse_gap_constant",
    "loglog_slope",
]


# ------------------------------------------------------------------------------ degree needed for accuracy ε
def degree_needed(errors: Mapping[int, float], eps: float) -> int | None:
    """Smallest degree n in ``errors`` (n → best error) with error ≤ eps; None if none suffices."""
    ok = [n for n, e in errors.items() if e <= eps]
    return min(ok) if ok else None


def fit_log_squared(eps: Sequence[float], n: Sequence[float]) -> tuple[float, float]:
    """Least-squares fit √n = α·ln(1/ε) + β; returns (α, β). Size O(log²(1/ε)) ⇔ a finite α > 0."""
    x = np.log(1.0 / np.asarray(eps, dtype=float))
    y = np.sqrt(np.asarray(n, dtype=float))
    alpha, beta = np.polyfit(x, y, 1)
    return float(alpha), float(beta)


def fit_log_product(eps: Sequence[float], delta: Sequence[float], n: Sequence[float]) -> tuple[float, float]:
    """Least-squares fit n = c·ln(1/ε)·ln(1/δ) + d; returns (c, d)."""
    p = np.log(1.0 / np.asarray(eps, dtype=float)) * np.log(1.0 / np.asarray(delta, dtype=float))
    c, d = np.polyfit(p, np.asarray(n, dtype=float), 1)
    return float(c), float(d)


def _gate_scale(theta: float, delta: float) -> float:
    if not (-1 < theta - delta and theta + delta < 1):
        raise DomainError(
            f"the gap (θ − δ, θ + δ) = ({theta - delta:g}, {theta + delta:g}) must lie inside (−1, 1); "
            "choose a smaller δ or a threshold θ nearer 0"
        )
    if not delta > 0:
        raise DomainError(f"the gap half-width δ must be positive, got {delta}")
    return max(1.0 + theta, 1.0 - theta)


def gate_zolotarev_error(n: int, delta: float, theta: float = 0.5) -> float:
    """Upper bound E_n^Z(δ/s)/2 on the best type-(n+1, n) error of x·H(x − θ) on [−1, θ−δ] ∪ [θ+δ, 1].

    Attained by the explicit r(x) = x(1 + Z_n((x − θ)/s))/2 (module docstring); exact up to mpmath rounding.
    """
    s = _gate_scale(theta, delta)
    return zolotarev_sign(n, delta / s).error / 2.0


def gate_zolotarev_rational(n: int, delta: float, theta: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Monomial coefficients (p, q), q(0) = 1, of r(x) = x(1 + Z_n((x − θ)/s))/2, type (n + 1, n).

    Used as a start for fits of the gate on a grid; the coefficients are float64 (conditioning is fine for the
    small degrees used there, n ≤ 12).
    """
    s = _gate_scale(theta, delta)
    z = zolotarev_sign(n, delta / s)
    P = np.polynomial.Polynomial
    u = P([-theta / s, 1.0 / s])
    num = P([1.0])
    for c in z.num_c:
        num = num * (u * u + float(c))
    den = P([1.0])
    for c in z.den_c:
        den = den * (u * u + float(c))
    top = P([0.0, 1.0]) * (den + float(z.M) * u * num)
    q0 = den(0.0)
    return np.pad(top.coef, (0, n + 2 - top.coef.size)) / (2 * q0), np.pad(den.coef, (0, n + 1 - den.coef.size)) / q0


def gate_degree_needed(eps: float, delta: float, theta: float = 0.5, *, n_max: int = 400) -> int:
    """Smallest n with gate_zolotarev_error(n, δ, θ) ≤ ε (the size of the Zolotarev construction).

    Raises
    ------
    ConvergenceError
        if no n ≤ n_max suffices (raise n_max).
    """
    if not 0 < eps < 1:
        raise RationalApproxError(f"ε must lie in (0, 1), got {eps}")
    s = _gate_scale(theta, delta)
    ell = delta / s

    def ok(n: int) -> bool:
        return zolotarev_sign(n, ell, dps=30).error / 2.0 <= eps

    # start where the bound E_n^Z/2 ≤ 2·exp(−rate·n) (the asymptote 4·exp(−rate·n) halved; the exact Zolotarev
    # error never exceeds it) reaches ε, i.e. n = ln(2/ε)/rate, then walk to the exact n
    rate = -math.log(float(zolotarev_asymptote(1, ell)) / 4.0)
    n = max(1, math.ceil(math.log(2.0 / eps) / rate))
    while not ok(n):
        n += 1
        if n > n_max:
            raise ConvergenceError(f"no degree ≤ {n_max} reaches ε = {eps:g} at δ = {delta:g}; raise n_max")
    while n > 1 and ok(n - 1):
        n -= 1
    return n


# ------------------------------------------------------------------------------ reverse gap
def reverse_gap_target(eta: float) -> Callable[[np.ndarray], np.ndarray]:
    """R*_η(x) = η²/(x² + η²), the type-(0, 2) rational of the paper's reverse-gap claim."""
    if not eta > 0:
        raise DomainError(f"η must be positive, got {eta}")
    return lambda x: eta**2 / (np.asarray(x, dtype=float) ** 2 + eta**2)


def reverse_gap_grid(eta: float, n: int = 8001) -> np.ndarray:
    """Points of [−1, 1]: n uniform plus n clustered at scale η around 0 (where R*_η bends)."""
    c = max(eta / 4.0, 1e-12)
    u = np.linspace(-math.asinh(1.0 / c), math.asinh(1.0 / c), n)
    return np.unique(np.clip(np.concatenate([np.linspace(-1.0, 1.0, n), c * np.sinh(u)]), -1.0, 1.0))


def best_line_error(x: np.ndarray, y: np.ndarray) -> float:
    """min over lines ℓ of max_i |y_i − ℓ(x_i)| for points sorted by x (Chebyshev line fit).

    For a slope s the best intercept leaves the error (max(y − sx) − min(y − sx))/2, a convex piecewise-linear
    function of s whose minimiser lies between the smallest and largest secant slope; golden-section search on
    it converges to the exact minimum.
    """
    if x.size <= 2:
        return 0.0
    sl = np.diff(y) / np.diff(x)
    lo, hi = float(sl.min()), float(sl.max())

    def width(s: float) -> float:
        v = y - s * x
        return 0.5 * float(v.max() - v.min())

    res = scipy.optimize.minimize_scalar(width, bounds=(lo, hi), method="bounded",
                                         options={"xatol": 1e-13 * max(1.0, abs(lo), abs(hi))})
    return min(float(res.fun), width(lo), width(hi))


def min_linear_pieces(x: np.ndarray, y: np.ndarray, eps: float) -> list[int]:
    """Least number of linear pieces (any, possibly discontinuous) within eps of the points (x_i, y_i).

    Greedy covering from the left, each piece extended as far as it can go (exponential then binary search):
    optimal for this problem. Returns the start index of every piece (so ``len(result)`` is the piece count).
    """
    if not eps > 0:
        raise RationalApproxError(f"ε must be positive, got {eps}")
    starts, i, m = [], 0, x.size
    while i < m:
        starts.append(i)
        step, good = 1, i + 1  # [i, good) is known feasible
        while good < m:
            j = min(m, i + 2 * step)
            if best_line_error(x[i:j], y[i:j]) <= eps:
                good, step = j, 2 * step
            else:
                lo, hi = good, j  # feasible end lo, infeasible end hi
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if best_line_error(x[i:mid], y[i:mid]) <= eps:
                        lo = mid
                    else:
                        hi = mid
                good = lo
                break
        i = good
    return starts


def continuous_spline_error(f: Callable[[np.ndarray], np.ndarray], knots: np.ndarray, x: np.ndarray,
                            check: np.ndarray | None = None) -> float:
    """Best uniform error on ``x`` of a continuous linear spline with given interior knots (a ReLU network).

    A continuous piecewise-linear function with interior knots k_1 < … < k_N on [x_0, x_end] is exactly
    c + βx + Σ a_i ReLU(x − k_i), a sum of N ReLU units; its values at the knots and ends are the
    unknowns of a linear programme min t s.t. |f(x_i) − s(x_i)| ≤ t. The returned error is measured
    on ``check`` (default: x with 4 midpoints between neighbours), which the LP did not see.
    """
    nodes = np.unique(np.concatenate([[x[0]], np.asarray(knots, dtype=float), [x[-1]]]))
    K = nodes.size
    j = np.clip(np.searchsorted(nodes, x, side="right") - 1, 0, K - 2)
    lam = (x - nodes[j]) / (nodes[j + 1] - nodes[j])
    rows = np.repeat(np.arange(x.size), 2)
    cols = np.stack([j, j + 1], axis=1).ravel()
    vals = np.stack([1 - lam, lam], axis=1).ravel()
    H = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(x.size, K))
    fx = f(x)
    ones = scipy.sparse.csr_matrix(np.ones((x.size, 1)))
    A = scipy.sparse.vstack([scipy.sparse.hstack([H, -ones]), scipy.sparse.hstack([-H, -ones])]).tocsr()
    b = np.concatenate([fx, -fx])
    cost = np.zeros(K + 1)
    cost[-1] = 1.0
    bounds = [(None, None)] * K + [(0, None)]
    res = scipy.optimize.linprog(cost, A_ub=A, b_ub=b, bounds=bounds, method="highs")
    if res.status != 0:
        raise ConvergenceError(f"linear programme for the spline failed: {res.message}")
    v = res.x[:K]
    if check is None:
        t = np.linspace(0.0, 1.0, 6)[1:-1]
        check = np.concatenate([x, (x[:-1, None] + np.diff(x)[:, None] * t[None, :]).ravel()])
    return float(np.max(np.abs(f(check) - np.interp(check, nodes, v))))


@dataclass(frozen=True)
class ReverseGapPoint:
    """One ε of the reverse-gap experiment for R*_η.

    Attributes
    ----------
    eta, eps : float
    pieces : int
        Least number of linear pieces within ε of R*_η on the point set (rigorous lower bound for [−1, 1]).
    units_lower : int
        pieces − 1: no sum of fewer ReLU / JumpReLU / threshold-gated units reaches sup error ε.
    relu_error : float
        Sup error (measured on a denser check grid) achieved by a continuous ReLU network with ``units_lower``
        units, its knots between the greedy pieces and its values from the LP — an achievable upper bound.
    """

    eta: float
    eps: float
    pieces: int
    units_lower: int
    relu_error: float


def reverse_gap_units(eta: float, eps_values: Sequence[float], *, grid_points: int = 8001,
                      with_upper: bool = True) -> list[ReverseGapPoint]:
    """The reverse-gap experiment for one η: fewest units needed for each ε (see module docstring)."""
    f = reverse_gap_target(eta)
    x = reverse_gap_grid(eta, grid_points)
    y = f(x)
    out = []
    for eps in eps_values:
        starts = min_linear_pieces(x, y, eps)
        knots = 0.5 * (x[np.array(starts[1:], dtype=int)] + x[np.array(starts[1:], dtype=int) - 1])
        up = continuous_spline_error(f, knots, x) if with_upper else math.nan
        out.append(ReverseGapPoint(float(eta), float(eps), len(starts), len(starts) - 1, up))
    return out


def reverse_gap_constant(eta: float) -> float:
    """Predicted lim ε·N² = (∫_{−1}^{1} √|R''_η| dx)²/16 (equidistributed pieces, error h²|f''|/16 per piece).

    Independent of η as η → 0, where it tends to (∫_ℝ √|g''(u)| du)²/16 ≈ 1.53, g(u) = 1/(1 + u²).
    """

    def root_g2(u):
        return math.sqrt(abs((6 * u * u - 2) / (1 + u * u) ** 3))

    u1 = 1.0 / math.sqrt(3.0)
    L = 1.0 / eta
    # √|g''| ~ √6/u² decays over decades: cut at the kinks ±u1 and at every power of 10 up to L so quad resolves it
    decades = {s * 10.0**j for j in range(int(math.log10(L)) + 1) for s in (-1, 1) if 10.0**j < L}
    cuts = sorted({-L, L} | ({-u1, u1} if u1 < L else set()) | decades)
    total = sum(scipy.integrate.quad(root_g2, a, b, limit=200)[0] for a, b in pairwise(cuts))
    return total**2 / 16.0


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float)), 1)[0])
