"""Classical theory of rational and polynomial approximation of |x|, ReLU and sign, computed — not quoted.

Everything here is an explicit construction or an exact formula, so that what
:func:`~rational_approx.fitting.minimax.minimax` measures can be put side by side with what the theory predicts.

* **Newman (1964)**: with a = exp(−1/√n) and p(x) = Π_{k=0}^{n−1} (x + a^k),

      r_n(x) = x · (p(x) − p(−x)) / (p(x) + p(−x))

  satisfies ‖ |x| − r_n ‖_[−1,1] ≤ 3 e^{−√n}. For x ≥ 0 write ρ(x) = p(−x)/p(x) = Π (a^k − x)/(a^k + x); then
  |x| − r_n(x) = 2xρ/(1 + ρ), which is how the error is evaluated here (no cancellation). r_n has type (n, n)
  for even n and type (n+1, n−1) for odd n. D. J. Newman, "Rational approximation to |x|", Michigan
  Math. J. 11 (1964).
* **Stahl (1993)**: the best type-(n, n) error E_n of |x| on [−1, 1] satisfies E_n ~ 8 e^{−π√n}.
  H. Stahl, "Best uniform rational approximation of |x| on [−1, 1]", Russian Acad. Sci. Sb. Math. 76 (1993).
* **Bernstein (1914)**: the best polynomial error of |x| of degree n satisfies n·E_n^poly → β = 0.2801694990…
  (Varga & Carpenter, "On the Bernstein conjecture in approximation theory", Constr. Approx. 1 (1985)).
  Computed here by a polynomial Remez exchange for √t on [0, 1], using
  E_{2k}^poly(|x|) = E_{2k+1}^poly(|x|) = E_k^poly(√t).
* **Zolotarev (1877)**: the best type-(n, n) approximation of sign(x) on [−1, −ℓ] ∪ [ℓ, 1] is Z_n = M·Ẑ_n,

      Ẑ_n(x) = x · Π_{j=1}^{⌊(n−1)/2⌋} (x² + c_{2j}) / Π_{j=1}^{⌊n/2⌋} (x² + c_{2j−1}),
      c_i = ℓ² sn²(iK′/n; ℓ′) / cn²(iK′/n; ℓ′),   ℓ′ = √(1 − ℓ²),  K′ = K(ℓ′),

  whose error equioscillates on [ℓ, 1] at the n + 1 points x_i = ℓ / dn(iK′/n; ℓ′), i = 0..n. With
  m = min_i Ẑ_n(x_i), M̂ = max_i Ẑ_n(x_i): M = 2/(m + M̂) and the exact error is (M̂ − m)/(M̂ + m).
  Asymptotically the error behaves like 4 exp(−π n K(ℓ)/K(ℓ′)) ≈ 4 exp(−π² n / (2 ln(4/ℓ))) for small ℓ.
  Type: (n, n−1) for odd n, (n−1, n) for even n. Y. Nakatsukasa & R. W. Freund, "Computing fundamental matrix
  decompositions accurately via the matrix sign function in two iterations: the power of
  Zolotarev's functions", SIAM Review 58 (2016), §3; N. I. Akhiezer, "Elements of the theory of
  elliptic functions" (1990), ch. 9.

Example
-------
>>> r = newman_rational(16)
>>> r.error() <= newman_bound(16)
True
>>> z = zolotarev_sign(4, 0.1)
>>> abs(z.error - z.measured_error()) < 1e-12
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import mpmath
import numpy as np
import scipy.optimize

from rational_approx.errors import ConvergenceError, DegreeError, DomainError
from rational_approx.representation.barycentric import BarycentricRational
from rational_approx.representation.extrema import alternating_indices

__all__ = [
    "BERNSTEIN_BETA",
    "newman_bound",
    "stahl_asymptote",
    "zolotarev_asymptote",
    "NewmanRational",
    "newman_rational",
    "PolynomialRemezResult",
    "polynomial_remez",
    "best_polynomial_abs",
    "ZolotarevSign",
    "zolotarev_sign",
]

BERNSTEIN_BETA = 0.2801694990
"""Bernstein's constant β = lim n·E_n^poly(|x|, [−1, 1]), to the 10 digits of Varga & Carpenter (1985)."""


def _check_degree(n: int, minimum: int, what: str) -> int:
    if not isinstance(n, int | np.integer) or n < minimum:
        raise DegreeError(f"{what} must be an integer ≥ {minimum}, got {n!r}")
    return int(n)


def _barycentric_from_denominator(z: list, f: list, q: Callable, typ: tuple[int, int]) -> BarycentricRational:
    """The rational p/q interpolating f at the support points z, in barycentric form (mpmath data in ``.mp``).

    Weights w_k = q(z_k)/ℓ′(z_k), ℓ(x) = Π(x − z_j), make Σ w_k/(x − z_k) = q(x)/ℓ(x) exactly; they are scaled to
    max |w_k| = 1. Call inside the mpmath precision context the data were computed in.
    """
    w = [q(zk) / mpmath.fprod(zk - zj for j, zj in enumerate(z) if j != k) for k, zk in enumerate(z)]
    scale = max(abs(v) for v in w)
    w = [v / scale for v in w]
    as_float = [np.array([float(v) for v in arr]) for arr in (z, f, w)]
    return BarycentricRational(*as_float, type=typ, mp=(z, f, w))


def newman_bound(n: int) -> float:
    """Newman's upper bound 3·e^{−√n} on the error of his type-(n, n) rational for |x| on [−1, 1]."""
    return 3.0 * math.exp(-math.sqrt(_check_degree(n, 1, "n")))


def stahl_asymptote(n: int | float | np.ndarray) -> np.ndarray | float:
    """Stahl's asymptote 8·e^{−π√n} of the best type-(n, n) error of |x| on [−1, 1] (exact only as n → ∞)."""
    return 8.0 * np.exp(-np.pi * np.sqrt(n))


def zolotarev_asymptote(
    n: int | float | np.ndarray, ell: float, *, small_ell: bool = False
) -> np.ndarray | float:
    """Asymptotic error 4·exp(−π n K(ℓ)/K(ℓ′)) of the best type-(n, n) sign approximation on [−1,
    −ℓ] ∪ [ℓ, 1].


    With ``small_ell=True``, the small-ℓ form 4·exp(−π² n / (2 ln(4/ℓ))) (K(ℓ) ≈ π/2, K(ℓ′) ≈ ln(4/ℓ)).
    """
    if not 0 < ell < 1:
        raise DomainError(f"the gap parameter ℓ must lie in (0, 1), got {ell}")
    if small_ell:
        rate = math.pi**2 / (2.0 * math.log(4.0 / ell))
    else:
        rate = math.pi * float(mpmath.ellipk(ell**2)) / float(mpmath.ellipk(1 - ell**2))
    return 4.0 * np.exp(-rate * np.asarray(n, dtype=float))


# ------------------------------------------------------------------------------------------ Newman
@dataclass(frozen=True)
class NewmanRational:
    """Newman's explicit rational r_n(x) = x (p(x) − p(−x)) / (p(x) + p(−x)) for |x| on [−1, 1].

    Attributes
    ----------
    n : int
        Number of factors of p (p has degree n).
    a : float
        exp(−1/√n); the roots of p are −a^k, k = 0..n−1.
    type : (int, int)
        (n, n) for even n, (n + 1, n − 1) for odd n.
    """

    n: int
    a: float
    type: tuple[int, int]

    def _rho(self, x: np.ndarray) -> np.ndarray:
        """ρ(x) = p(−x)/p(x) for x ≥ 0, as a product of factors in [−1, 1] (stable)."""
        nodes = self.a ** np.arange(self.n)
        return np.prod((nodes[None, :] - x[:, None]) / (nodes[None, :] + x[:, None]), axis=1)

    def abs_error(self, x: np.ndarray | float) -> np.ndarray:
        """|x| − r_n(x) = 2|x|ρ(|x|)/(1 + ρ(|x|)), evaluated without cancellation."""
        x = np.abs(np.atleast_1d(np.asarray(x, dtype=float)))
        rho = self._rho(x)
        return 2.0 * x * rho / (1.0 + rho)

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        return np.abs(x) - self.abs_error(x).reshape(x.shape)

    def eval_mp(self, x, dps: int = 50):
        """r_n(x) in mpmath arithmetic at ``dps`` digits (scalar x)."""
        with mpmath.workdps(dps):
            x = mpmath.mpf(x)
            a = mpmath.exp(-1 / mpmath.sqrt(self.n))
            pp = mpmath.fprod(x + a**k for k in range(self.n))
            pm = mpmath.fprod(-x + a**k for k in range(self.n))
            return x * (pp - pm) / (pp + pm)

    def monomial_coefficients(self, dps: int = 60) -> tuple[list, list]:
        """(p, q): ascending monomial coefficients (mpmath, ``dps`` digits) of r_n = p/q, with
        p(x) = x(P(x) − P(−x)) and q(x) = P(x) + P(−x), P(x) = Π_{k<n} (x + a^k)."""
        with mpmath.workdps(dps):
            a = mpmath.exp(-1 / mpmath.sqrt(self.n))
            c = [mpmath.mpf(1)]
            for k in range(self.n):
                c = [mpmath.mpf(0)] + c  # multiply by x ...
                for i in range(len(c) - 1):
                    c[i] += a**k * c[i + 1]  # ... plus a^k
            even = [v if i % 2 == 0 else mpmath.mpf(0) for i, v in enumerate(c)]
            odd = [v if i % 2 == 1 else mpmath.mpf(0) for i, v in enumerate(c)]
            return [mpmath.mpf(0)] + [2 * v for v in odd], [2 * v for v in even]

    def error(self) -> float:
        """Measured sup_{[−1,1]} | |x| − r_n(x) |: dense log-spaced grid on (0, 1], then local refinement.

        The error is even, vanishes at 0 and at every node a^k, and its extrema sit between consecutive nodes,
        so a grid fine in log x followed by bounded scalar maximisation near the largest grid
        values finds the sup to about machine precision.
        """
        x = np.concatenate([np.logspace(-(3 * math.sqrt(self.n) + 20) / math.log(10), 0, 40 * self.n + 400),
                            np.linspace(0, 1, 2001)[1:]])
        x = np.unique(x)
        e = np.abs(self.abs_error(x))
        best = float(np.max(e))
        for i in np.argsort(e)[-5:]:
            lo, hi = x[max(i - 1, 0)], x[min(i + 1, x.size - 1)]
            if hi <= lo:
                continue
            res = scipy.optimize.minimize_scalar(
                lambda t: -abs(float(self.abs_error(t)[0])), bounds=(lo, hi), method="bounded",
                options={"xatol": 1e-15 * max(hi, 1e-300)},
            )
            best = max(best, -float(res.fun))
        return best

    def to_barycentric(self, dps: int = 60) -> BarycentricRational:
        """The same rational in barycentric form, with support data in mpmath at ``dps`` digits (``.mp``).

        r_n interpolates |x| at 0 and ±a^k (a factor of ρ vanishes there), so the N + 1 support points
        (N = max of the type) are 0 and ±a^k for k = 0, 2, 4, … — exponentially clustered at the
        kink, as a stable barycentric form of an approximant of |x| must be — with values |z_k| and
        weights w_k = q(z_k)/ℓ′(z_k), q = p(x) + p(−x), ℓ(x) = Π(x − z_j), which makes Σ w_k/(x −
        z_k) = q(x)/ℓ(x) exactly.
        """
        N = max(self.type)
        with mpmath.workdps(dps):
            a = mpmath.exp(-1 / mpmath.sqrt(self.n))
            nodes = [a**k for k in range(0, self.n, 2)][: N // 2]
            z = sorted([mpmath.mpf(0)] + nodes + [-v for v in nodes])

            def q(x):
                return mpmath.fprod(x + a**k for k in range(self.n)) + mpmath.fprod(
                    -x + a**k for k in range(self.n)
                )

            return _barycentric_from_denominator(z, [abs(zk) for zk in z], q, self.type)


def newman_rational(n: int) -> NewmanRational:
    """Newman's rational for |x| on [−1, 1]: type (n, n) (even n) or (n+1, n−1) (odd n), error ≤ 3e^{−√n}."""
    n = _check_degree(n, 1, "n")
    typ = (n, n) if n % 2 == 0 else (n + 1, n - 1)
    return NewmanRational(n, math.exp(-1.0 / math.sqrt(n)), typ)


# ------------------------------------------------------------------------------------------ polynomial Remez
@dataclass
class PolynomialRemezResult:
    """Best uniform polynomial approximation found by the Remez exchange.

    Attributes
    ----------
    degree : int
    error : float
        max |f − p| over the search grid (after local refinement of every extremum).
    level : float
        |h| of the last reference system f(x_i) − p(x_i) = (−1)^i h; ``level ≤ error`` always, and
        the relative gap (error − level)/error is the convergence measure (de la Vallée Poussin:
        level ≤ E_n ≤ error).
    coefficients : ndarray
        Chebyshev coefficients of p on ``interval``.
    interval : (float, float)
    reference : ndarray
        The final degree + 2 alternation points.
    iterations : int
    """

    degree: int
    error: float
    level: float
    coefficients: np.ndarray
    interval: tuple[float, float]
    reference: np.ndarray
    iterations: int

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        a, b = self.interval
        s = (2.0 * np.asarray(x, dtype=float) - a - b) / (b - a)
        return np.polynomial.chebyshev.chebval(s, self.coefficients)


def polynomial_remez(
    f: Callable[[np.ndarray], np.ndarray],
    degree: int,
    interval: tuple[float, float] = (-1.0, 1.0),
    *,
    grid: np.ndarray | None = None,
    init: np.ndarray | None = None,
    tol: float = 1e-10,
    maxiter: int = 60,
) -> PolynomialRemezResult:
    """Best uniform polynomial approximation of degree ``degree`` to a continuous f on an interval (Remez).

    Each step solves the linear reference system Σ_j c_j T_j(s_i) + (−1)^i h = f(x_i) on degree + 2 points,
    then replaces the reference by the alternating extrema of the error on ``grid`` (refined
    locally by bounded scalar maximisation). Stops when (max|e| − |h|)/max|e| < tol — by de la
    Vallée Poussin |h| ≤ E_n ≤ max|e|, so this is a measured relative bracket of the best error.

    Parameters
    ----------
    f : vectorised callable
    degree : int
    interval : (a, b)
    grid : ndarray, optional
        Dense search points in the interval (cluster them near singularities of f). Default: 40·(degree+2)
        Chebyshev-distributed points.
    init : ndarray, optional
        Initial reference of degree + 2 points; default Chebyshev extreme points.
    tol, maxiter : convergence control.

    Raises
    ------
    ConvergenceError
        with ``best`` the last :class:`PolynomialRemezResult`, if the bracket is still wider than ``tol``.

    References
    ----------
    E. Ya. Remez (1934); L. N. Trefethen, *Approximation Theory and Approximation Practice*, ch. 10.
    """
    n = _check_degree(degree, 0, "degree")
    a, b = map(float, interval)
    if not a < b:
        raise DomainError(f"interval must satisfy a < b, got [{a}, {b}]")
    cheb = np.polynomial.chebyshev

    def to_s(x):
        return (2.0 * x - a - b) / (b - a)

    if grid is None:
        grid = 0.5 * (a + b) - 0.5 * (b - a) * np.cos(np.linspace(0, np.pi, 40 * (n + 2)))
    grid = np.unique(np.clip(np.asarray(grid, dtype=float), a, b))
    if init is None:
        ref = 0.5 * (a + b) - 0.5 * (b - a) * np.cos(np.pi * np.arange(n + 2) / (n + 1))
    else:
        ref = np.sort(np.asarray(init, dtype=float))
        if ref.size != n + 2:
            raise DegreeError(f"init must hold degree + 2 = {n + 2} points, got {ref.size}")
    signs = (-1.0) ** np.arange(n + 2)
    result = None
    for it in range(1, maxiter + 1):
        A = np.column_stack([cheb.chebvander(to_s(ref), n), signs])
        sol = np.linalg.solve(A, f(ref))
        c, h = sol[:-1], sol[-1]

        def err(x, c=c):
            return f(x) - cheb.chebval(to_s(x), c)

        e = err(grid)
        idx = alternating_indices(e, n + 2)
        new_ref = grid[idx].copy()
        # local refinement of every extremum between its grid neighbours
        for k, i in enumerate(idx):
            lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
            if hi > lo:
                sgn = np.sign(e[i]) or 1.0
                res = scipy.optimize.minimize_scalar(
                    lambda t, sgn=sgn: -sgn * float(err(np.array([t]))[0]), bounds=(lo, hi), method="bounded",
                    options={"xatol": 1e-14 * max(abs(hi), abs(lo), 1e-300)},
                )
                if -res.fun > abs(e[i]):
                    new_ref[k] = res.x
        emax = float(np.max(np.abs(err(np.concatenate([grid, new_ref])))))
        result = PolynomialRemezResult(n, emax, abs(float(h)), c, (a, b), np.sort(new_ref), it)
        if len(idx) == n + 2 and emax - abs(h) <= tol * emax:
            return result
        if len(idx) == n + 2:
            ref = np.sort(new_ref)
    raise ConvergenceError(
        f"polynomial Remez of degree {n} did not close the bracket "
        f"[{result.level:.3e}, {result.error:.3e}] to relative {tol:g} in {maxiter} steps; "
        "pass a denser `grid` near the singularities of f or a larger maxiter",
        best=result,
    )


def best_polynomial_abs(n: int, *, tol: float = 1e-10) -> PolynomialRemezResult:
    """Best polynomial approximation of |x| on [−1, 1] of degree n, via √t on [0, 1] (degree ⌊n/2⌋ in t = x²).

    The returned result is the one for √t (its ``error`` is E_n^poly(|x|)); evaluate at x² to get the even
    polynomial in x. The extremal points of √t − p(t) cluster quadratically at t = 0, so the search grid is
    the square of a Chebyshev-distributed grid in x ∈ [0, 1].
    """
    n = _check_degree(n, 0, "n")
    k = n // 2
    xs = np.sin(0.5 * np.pi * np.linspace(0.0, 1.0, 60 * (k + 2))) ** 2  # dense near both ends of [0, 1]
    grid = np.unique(np.concatenate([xs**2, np.linspace(0, 1, 20 * (k + 2))]))
    init = np.sin(0.5 * np.pi * np.arange(k + 2) / (k + 1)) ** 2  # x_i² for near-Chebyshev extrema x_i of |x|
    return polynomial_remez(np.sqrt, k, (0.0, 1.0), grid=grid, init=init, tol=tol)


# ------------------------------------------------------------------------------------------ Zolotarev
@dataclass
class ZolotarevSign:
    """Zolotarev's best type-(n, n) approximation M·Ẑ_n of sign(x) on [−1, −ℓ] ∪ [ℓ, 1] (module docstring).

    Attributes
    ----------
    n, ell : int, float
    type : (int, int)
        (n, n − 1) for odd n, (n − 1, n) for even n.
    error : float
        The exact error (M̂ − m)/(M̂ + m) from the values of Ẑ_n at its n + 1 elliptic extremal points.
    error_mp : mpmath.mpf
        The same at ``dps`` digits.
    M : mpmath.mpf
        Scale 2/(m + M̂).
    num_c, den_c : list of mpmath.mpf
        Ẑ_n(x) = x Π (x² + num_c) / Π (x² + den_c).
    extremal_points : ndarray
        x_i = ℓ / dn(iK′/n; ℓ′), i = 0..n (in [ℓ, 1]; mirror for the negative interval).
    dps : int
    """

    n: int
    ell: float
    type: tuple[int, int]
    error: float
    error_mp: mpmath.mpf
    M: mpmath.mpf
    num_c: list = field(repr=False)
    den_c: list = field(repr=False)
    extremal_points: np.ndarray = field(repr=False)
    dps: int = 40

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        x2 = x * x
        out = float(self.M) * x
        for c in self.num_c:
            out = out * (x2 + float(c))
        for c in self.den_c:
            out = out / (x2 + float(c))
        return out

    def eval_mp(self, x, dps: int | None = None):
        with mpmath.workdps(dps or self.dps):
            x = mpmath.mpf(x)
            num = mpmath.fprod(x * x + c for c in self.num_c)
            return self.M * x * num / mpmath.fprod(x * x + c for c in self.den_c)

    def measured_error(self, points: int = 20000) -> float:
        """max |sign(x) − Z(x)| on a dense grid of [ℓ, 1] (the error is odd) and at the extremal points."""
        x = np.concatenate([np.geomspace(self.ell, 1.0, points), self.extremal_points])
        return float(np.max(np.abs(1.0 - self(x))))

    def to_barycentric(self) -> BarycentricRational:
        """Barycentric form with mp data; support points 0 (even n) and ±x_i for every other extremal point.

        These N + 1 points (N = max of the type) follow the geometric spacing of the extremal points, which
        keeps the float64 barycentric evaluation accurate; values are Z(z_k) and weights w_k = q(z_k)/ℓ′(z_k)
        with q(x) = Π(x² + den_c), ℓ(x) = Π(x − z_j).
        """
        N = max(self.type)
        with mpmath.workdps(self.dps):
            L = mpmath.mpf(self.ell)
            mc = 1 - L**2
            Kc = mpmath.ellipk(mc)
            pos = [L / mpmath.ellipfun("dn", i * Kc / self.n, m=mc) for i in range(0, self.n + 1, 2)]
            pos = pos[: (N + 1) // 2]
            z = sorted(([mpmath.mpf(0)] if N % 2 == 0 else []) + pos + [-v for v in pos])
            f = [self.eval_mp(zk) for zk in z]

            def q(x):
                return mpmath.fprod(x * x + c for c in self.den_c)

            return _barycentric_from_denominator(z, f, q, self.type)


def zolotarev_sign(n: int, ell: float, *, dps: int = 40) -> ZolotarevSign:
    """Zolotarev's best type-(n, n) rational approximation of sign on [−1, −ℓ] ∪ [ℓ, 1], with its exact error.

    Parameters
    ----------
    n : int ≥ 1
    ell : float in (0, 1)
        Half-width of the gap around 0 (the domain is [−1, −ℓ] ∪ [ℓ, 1]).
    dps : int
        mpmath working precision for the elliptic functions and the error.

    Notes
    -----
    mpmath's elliptic functions take the parameter m = k², so ``ellipk(1 − ℓ²)`` is K(ℓ′) and
    ``ellipfun('sn', u, m=1 − ℓ²)`` is sn(u; ℓ′).
    """
    n = _check_degree(n, 1, "n")
    if not 0 < ell < 1:
        raise DomainError(f"the gap parameter ℓ must lie in (0, 1), got {ell}")
    with mpmath.workdps(dps):
        L = mpmath.mpf(ell)
        mc = 1 - L**2
        Kc = mpmath.ellipk(mc)
        c = [None] + [
            L**2 * mpmath.ellipfun("sn", i * Kc / n, m=mc) ** 2 / mpmath.ellipfun("cn", i * Kc / n, m=mc) ** 2
            for i in range(1, n)
        ]
        num_c = [c[2 * j] for j in range(1, (n - 1) // 2 + 1)]
        den_c = [c[2 * j - 1] for j in range(1, n // 2 + 1)]
        xs = [L / mpmath.ellipfun("dn", i * Kc / n, m=mc) for i in range(n + 1)]
        xs[-1] = mpmath.mpf(1)  # dn(K′; ℓ′) = ℓ exactly; avoid the rounding of the last point

        def zhat(x):
            return x * mpmath.fprod(x * x + v for v in num_c) / mpmath.fprod(x * x + v for v in den_c)

        vals = [zhat(x) for x in xs]
        lo, hi = min(vals), max(vals)
        M = 2 / (lo + hi)
        err = (hi - lo) / (hi + lo)
    typ = (n, n - 1) if n % 2 == 1 else (n - 1, n)
    return ZolotarevSign(n, float(ell), typ, float(err), err, M, num_c, den_c,
                         np.array([float(x) for x in xs]), dps)
