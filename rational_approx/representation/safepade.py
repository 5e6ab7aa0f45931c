"""Safe-Padé rationals r(t) = P(t) / (1 + |B(t)|) and the "relaxed Remez exchange" the RSAE paper fits them with.

The form. P(t) = Σ_{i=0}^{m} a_i t^i, B(t) = b_0 + Σ_{j=1}^{n} b_j t^j (monomials in the design variable t ∈ [−1, 1]).
The denominator is ≥ 1 everywhere, so r has no pole (Molina et al., "Padé activation units", ICLR 2020, whose form
has b_0 = 0). Where B keeps one sign on the domain, r is the ordinary type-(m, n) rational P/Q with Q = 1 ± B; where
B changes sign, r is only piecewise rational, with a kink of r at each sign change. Consequences worth knowing:

* The free constant b_0 makes every rational p/q with q > 0 on an interval I exactly representable there
  (:meth:`SafePade.from_rational`): with s = 1 / min_I q, s·q ≥ 1 on I, so a = s·p, b_0 = s·q_0 − 1, b_j = s·q_j give
  1 + |B| = 1 + (s·q − 1) = s·q and r = p/q on I. Without b_0 (the denominator's constant pinned to 1) a minimax
  denominator whose minimum is not at t = 0 cannot be followed: the (9, 8) JumpReLU gate fit then has sup error 0.0127
  against the minimax 6.1e-5 (docs/rational_activation.md).

* If B has no sign change on the domain, ‖f − r‖ ≥ E_{m,n}(f), the best rational error (a lower bound that cannot
  be beaten). Conversely, the best rational of |x| or ReLU has an even denominator with minimum 1 at 0, so it *is*
  a safe-Padé form: for ReLU at (3, 2) the safe-Padé optimum without sign change is exactly E_2(|x|)/2 = 0.02184.
* With a sign change the rational lower bound does not apply: b t² / (1 + |b t|) → |t| uniformly as b → ∞ (error
  ≤ 1/b), so |x| is approximated to any accuracy at type (2, 1). :meth:`SafePade.sign_changes` reports this.

The fit (after Chen et al., ICDM 2018, as described in the RSAE paper). Equioscillation of f − r at a reference
x_0 < … < x_{K−1}, K = m + n + 2, is relaxed into a differentiable loss in (a, b, E), E the learnable level:

    L = smax_τ |e|  +  w_eq · mean_i (e(x_i) − (−1)^i E)² / s  +  w_alt · mean_i relu(−(−1)^i sgn(E) e(x_i))² / s,

e = f − r on a dense grid, smax_τ a log-sum-exp maximum at temperature τ (the max-error term), s the current error
scale (so that all three terms are comparable). L is minimised by L-BFGS (analytic gradients); after each
minimisation the reference is exchanged for the alternating extrema of e, as in Remez, and τ is lowered.
It is a heuristic: nothing guarantees the true minimax is reached, so :func:`relaxed_remez` reports the measured
sup error, and the comparison with :func:`~rational_approx.fitting.minimax.minimax` is made in the docs and tests.

:func:`least_squares_fit` minimises the grid mean squared error instead (the paper's "fit MSE"), for both the
safe-Padé and the plain P/(1 + B) form (Levenberg–Marquardt / trust-region, analytic Jacobian, multi-start).

Example
-------
>>> fit = relaxed_remez("relu", (3, 2))
>>> 0.0218 < fit.error < 0.03
True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize

from rational_approx.errors import DegreeError, RationalApproxError
from rational_approx.representation.barycentric import parse_type
from rational_approx.representation.domain import Domain
from rational_approx.representation.extrema import alternating_indices
from rational_approx.representation.fit_result import FitResult
from rational_approx.representation.targets import Target, resolve

__all__ = [
    "SafePade",
    "SafePadeFit",
    "LeastSquaresFit",
    "relaxed_remez",
    "least_squares_fit",
    "linearized_init",
    "polynomial_min",
]


@dataclass
class SafePade:
    """r(t) = P(t) / (1 + |B(t)|) (form "safe") or P(t) / (1 + B(t)) (form "plain"), B(t) = b_0 + Σ_{j≥1} b_j t^j.

    Attributes
    ----------
    a : ndarray, shape (m+1,)
        Numerator coefficients, ascending powers of t.
    b : ndarray, shape (n,)
        b_1..b_n.
    form : {"safe", "plain"}
    b0 : float
        The free constant b_0 of B (default 0: the Padé-activation-unit form 1 + |Σ_{j≥1} b_j t^j|).
    """

    a: np.ndarray
    b: np.ndarray
    form: str = "safe"
    b0: float = 0.0

    def __post_init__(self) -> None:
        self.a = np.asarray(self.a, dtype=float)
        self.b = np.asarray(self.b, dtype=float)
        self.b0 = float(self.b0)
        if self.form not in ("safe", "plain"):
            raise RationalApproxError(f"form must be 'safe' or 'plain', got {self.form!r}")
        if not np.isfinite(self.b0):
            raise RationalApproxError(f"b0 must be finite, got {self.b0}")

    @classmethod
    def from_rational(cls, p: np.ndarray, q: np.ndarray, interval: tuple[float, float], *,
                      margin: float = 0.0) -> SafePade:
        """The safe form equal to p/q on ``interval`` (module docstring), for q > 0 there.

        Parameters
        ----------
        p, q : array_like
            Monomial coefficients (ascending) of numerator and denominator; q may have any scaling and sign
            convention as long as it keeps one sign on the interval (q < 0 is flipped together with p).
        interval : (lo, hi)
        margin : float
            Scale by s = (1 + margin) / min q, so that B = s·q − 1 ≥ margin > 0 on the interval and B keeps its
            sign through the rounding of a floating-point evaluation (default 0: min(1 + |B|) = 1 exactly).

        Raises
        ------
        RationalApproxError
            When q vanishes or changes sign on the interval (then p/q has a pole there and no pole-free form
            equals it).

        Examples
        --------
        >>> r = SafePade.from_rational([1.0], [2.0, 0.0, 1.0], (-1, 1))   # 1 / (2 + t²): min q = 2
        >>> r.a.tolist(), r.b0, r.b.tolist()
        ([0.5], 0.0, [0.0, 0.5])
        """
        p = np.asarray(p, dtype=float)
        q = np.asarray(q, dtype=float)
        lo, hi = (float(v) for v in interval)
        qmin, qmax = polynomial_min(q, lo, hi), -polynomial_min(-q, lo, hi)
        if qmax < 0:
            p, q, qmin = -p, -q, -qmax
        if not qmin > 0:
            raise RationalApproxError(f"the denominator changes sign or vanishes on [{lo}, {hi}] (min q = {qmin:.3g}"
                                      f" ≤ 0 < max q): p/q has a pole there and no pole-free form equals it")
        s = (1.0 + margin) / qmin
        return cls(s * p, s * q[1:], "safe", s * q[0] - 1.0)

    @property
    def type(self) -> tuple[int, int]:
        return (self.a.size - 1, self.b.size)

    @property
    def B_coefficients(self) -> np.ndarray:
        """(b_0, b_1, ..., b_n), ascending."""
        return np.concatenate([[self.b0], self.b])

    def B(self, t: np.ndarray) -> np.ndarray:
        """B(t) = b_0 + Σ_{j≥1} b_j t^j."""
        t = np.asarray(t, dtype=float)
        return np.polynomial.polynomial.polyval(t, self.B_coefficients) + np.zeros_like(t)

    def denominator(self, t: np.ndarray) -> np.ndarray:
        B = self.B(t)
        return 1.0 + (np.abs(B) if self.form == "safe" else B)

    def __call__(self, t: np.ndarray | float) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        return np.polynomial.polynomial.polyval(t, self.a) / self.denominator(t)

    def sign_changes(self, domain: Domain | tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
        """Real zeros of B inside the domain where B changes sign (kinks of the safe form)."""
        dom = domain if isinstance(domain, Domain) else Domain.interval(*domain)
        if not self.b.size:
            return np.array([])
        c = self.B_coefficients
        big = np.max(np.abs(c))
        if big == 0:
            return np.array([])
        c = np.trim_zeros(np.where(np.abs(c) > 1e-14 * big, c, 0.0), "b")  # negligible leading terms
        roots = np.polynomial.polynomial.polyroots(c)
        if roots.size == 0:  # B ≡ 0
            return np.array([])
        real = np.unique(roots[np.abs(roots.imag) <= 1e-12 * max(1.0, float(np.max(np.abs(roots))))].real)
        out = []
        for z in real:
            if not bool(dom.contains(z)):
                continue
            h = 1e-7 * max(1.0, abs(z))
            if np.sign(self.B(np.array([z - h]))[0]) * np.sign(self.B(np.array([z + h]))[0]) < 0:
                out.append(z)
        return np.array(out)

    def is_rational_on(self, domain: Domain | tuple[float, float] = (-1.0, 1.0)) -> bool:
        """True when B keeps one sign on the domain, so that r is an ordinary type-(m, n) rational there."""
        return self.form == "plain" or self.sign_changes(domain).size == 0

    def to_dict(self) -> dict:
        return {"form": self.form, "type": list(self.type), "a": self.a.tolist(), "b0": self.b0,
                "b": self.b.tolist()}


def polynomial_min(c: np.ndarray, lo: float, hi: float) -> float:
    """Minimum over [lo, hi] of the polynomial with ascending coefficients c.

    Candidates: the ends, the (nearly) real critical points (roots of c' with |Im| ≤ 1e-8, whose real parts
    are kept even when rounding pushed a double root off the axis) and a uniform grid of 2001 points as a guard.
    """
    c = np.asarray(c, dtype=float)
    big = float(np.max(np.abs(c))) if c.size else 0.0
    if big == 0.0:
        return 0.0
    # leading terms below 1e-17 of the largest cannot move the value on |t| ≲ 1 but wreck the roots of c'
    c = np.trim_zeros(np.where(np.abs(c) > 1e-17 * big, c, 0.0), "b")
    P = np.polynomial.Polynomial(c)
    crit = [lo, hi, *np.linspace(lo, hi, 2001)]
    if c.size > 2:
        crit += [z.real for z in P.deriv().roots() if abs(z.imag) <= 1e-8 and lo <= z.real <= hi]
    return float(np.min(P(np.array(crit))))


# ------------------------------------------------------------------------------ helpers
def _residual_and_jac(theta: np.ndarray, t: np.ndarray, y: np.ndarray, m: int, n: int, form: str,
                      b0: float = 0.0):
    """e = y − r(t) and ∂e/∂(a, b_1..b_n) for r = P/(1 + |B|) or P/(1 + B), the constant b_0 held fixed."""
    a, b = theta[: m + 1], theta[m + 1: m + 1 + n]
    V = np.vander(t, max(m + 1, n + 1), increasing=True)
    P = V[:, : m + 1] @ a
    B = b0 + (V[:, 1: n + 1] @ b if n else np.zeros_like(t))
    s = np.sign(B) if form == "safe" else np.ones_like(B)
    D = 1.0 + (np.abs(B) if form == "safe" else B)
    r = P / D
    J = np.empty((t.size, m + 1 + n))
    J[:, : m + 1] = -V[:, : m + 1] / D[:, None]
    J[:, m + 1:] = (r * s / D)[:, None] * V[:, 1: n + 1]
    return y - r, J


def linearized_init(t: np.ndarray, y: np.ndarray, type_: tuple[int, int]) -> SafePade:
    """Linearised least squares P(t) − y·B(t) ≈ y (the classical Levy/Padé start), as a plain form."""
    m, n = parse_type(type_)
    V = np.vander(t, max(m + 1, n + 1), increasing=True)
    A = np.hstack([V[:, : m + 1], -y[:, None] * V[:, 1: n + 1]])
    sol = np.linalg.lstsq(A, y, rcond=None)[0]
    return SafePade(sol[: m + 1], sol[m + 1:], "plain")


# ------------------------------------------------------------------------------ relaxed Remez
@dataclass
class SafePadeFit(FitResult):
    """Outcome of :func:`relaxed_remez` (the common fields are those of
    :class:`~rational_approx.representation.fit_result.FitResult`).

    Attributes
    ----------
    r : SafePade
    error : float
        max |f − r| over a check grid 8× denser than the fitting grid (measured, not the level).
    level : float
        |E| at the end (the learnt equioscillation level).
    reference : ndarray
        The final K = m + n + 2 reference points.
    rational : bool
        True when B keeps one sign on the domain (then ``error`` ≥ the best type-(m, n) rational error).
    converged : bool
        ``rational`` and the measured error within 1 % of the learnt level (near-equioscillation).
    iterations : int
        (minimise, exchange) rounds.
    history : list of float
        The measured sup error after each round.
    """

    r: SafePade
    level: float
    reference: np.ndarray
    rational: bool
    history: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "method": f"relaxed_remez ({self.r.form})", "level": float(self.level),
                "rational": bool(self.rational)}


def _fit_grid(dom: Domain, tgt: Target, points: int) -> np.ndarray:
    return dom.sample(points, cluster=tgt.singular_points, depth=8)


def relaxed_remez(
    target: Target | str | Callable,
    type: tuple[int, int],
    domain: Domain | tuple[float, float] | None = None,
    *,
    form: str = "safe",
    init: SafePade | None = None,
    grid_points: int = 2000,
    rounds: int = 8,
    w_eq: float = 0.1,
    w_alt: float = 1.0,
    gap: float | None = None,
    **target_kw,
) -> SafePadeFit:
    """Fit r = P/(1 + |B|) to ``target`` on ``domain`` by the relaxed Remez exchange (module docstring).

    Parameters
    ----------
    target : Target, name or callable
    type : (m, n)
    domain : Domain or (a, b); default the target's default domain (gapped around a jump)
    form : "safe" (P/(1 + |B|)) or "plain" (P/(1 + B))
    init : starting coefficients; default the linearised least-squares fit on the grid. Its b_0 is kept fixed.
    grid_points : size of the fitting grid (clustered at the target's singular points)
    rounds : number of (minimise, exchange) rounds; the temperature τ of the max term falls by ×0.5 per round
    w_eq, w_alt : weights of the equioscillation and sign-alternation terms
    """
    t0 = time.perf_counter()
    m, n = parse_type(type)
    tgt, dom = resolve(target, domain, gap, **target_kw)
    x = _fit_grid(dom, tgt, grid_points)
    y = tgt(x)
    check = _fit_grid(dom, tgt, 8 * grid_points)
    y_check = tgt(check)
    r = init if init is not None else linearized_init(x, y, (m, n))
    theta = np.concatenate([r.a, r.b])
    if theta.size != m + n + 1:
        raise DegreeError(f"init has type {r.type}, expected ({m}, {n})")
    K = m + n + 2
    sigma = (-1.0) ** np.arange(K)

    b0 = r.b0

    def sup(th):
        return float(np.max(np.abs(_residual_and_jac(th, check, y_check, m, n, form, b0)[0])))

    e0 = _residual_and_jac(theta, x, y, m, n, form, b0)[0]
    idx = alternating_indices(e0, K)
    ref = x[idx] if idx.size == K else np.quantile(x, np.linspace(0, 1, K))
    E = float(np.mean(sigma[: min(K, idx.size)] * e0[idx[:K]])) if idx.size else 0.0
    best_theta, best_err = theta.copy(), sup(theta)
    history = [best_err]
    tau_rel = 0.05
    for _ in range(rounds):
        scale = max(best_err, 1e-14)
        tau = tau_rel * scale

        def loss(p, ref=ref, scale=scale, tau=tau):
            th, Ev = p[:-1], p[-1]
            e, J = _residual_and_jac(th, x, y, m, n, form, b0)
            ae = np.abs(e)
            w = np.exp((ae - ae.max()) / tau)
            Z = w.sum()
            L_max = (ae.max() + tau * np.log(Z)) / scale
            g = (w / Z * np.sign(e)) @ J / scale
            er, Jr = _residual_and_jac(th, ref, tgt(ref), m, n, form, b0)
            d = er - sigma * Ev
            L_eq = w_eq * np.mean(d * d) / scale**2
            g = g + w_eq * 2.0 * (d @ Jr) / K / scale**2
            gE = -w_eq * 2.0 * np.mean(d * sigma) / scale**2
            viol = np.maximum(-sigma * np.sign(Ev or 1.0) * er, 0.0)
            L_alt = w_alt * np.mean(viol**2) / scale**2
            g = g + w_alt * 2.0 * ((viol * -sigma * np.sign(Ev or 1.0)) @ Jr) / K / scale**2
            return L_max + L_eq + L_alt, np.concatenate([g, [gE]])

        res = scipy.optimize.minimize(loss, np.concatenate([theta, [E]]), jac=True, method="L-BFGS-B",
                                      options={"maxiter": 300})
        theta, E = res.x[:-1], float(res.x[-1])
        err = sup(theta)
        history.append(err)
        if err < best_err:
            best_theta, best_err = theta.copy(), err
        e = _residual_and_jac(theta, x, y, m, n, form, b0)[0]
        idx = alternating_indices(e, K)
        if idx.size == K:
            ref = x[idx]
        tau_rel *= 0.5
    r = SafePade(best_theta[: m + 1], best_theta[m + 1:], form, b0)
    rational = r.is_rational_on(dom)
    return SafePadeFit(r=r, level=abs(E), reference=np.sort(ref), rational=rational, history=history, target=tgt,
                       type=(m, n), domain=dom, error=best_err,
                       converged=bool(rational and abs(best_err - abs(E)) <= 0.01 * best_err), iterations=rounds,
                       seconds=time.perf_counter() - t0)


# ------------------------------------------------------------------------------ least squares (grid MSE)
@dataclass
class LeastSquaresFit:
    """Outcome of :func:`least_squares_fit`.

    Attributes
    ----------
    r : SafePade
    mse : float
        mean (f − r)² over the fitting grid.
    sup_error : float
        max |f − r| over the same grid.
    starts : int
        Number of starts tried; ``mse`` is the best.
    rational : bool
        True when the denominator keeps one sign on the grid's hull (safe form) / has no zero there (plain form).
    """

    r: SafePade
    mse: float
    sup_error: float
    starts: int
    rational: bool


def least_squares_fit(
    t: np.ndarray,
    y: np.ndarray,
    type: tuple[int, int],
    *,
    form: str = "safe",
    inits: Sequence[SafePade] = (),
    random_starts: int = 8,
    seed: int = 0,
) -> LeastSquaresFit:
    """Minimise the grid MSE mean (y − r(t))² over (a, b), multi-start, trust-region with analytic Jacobian.

    Starts: the linearised fit, the given ``inits`` and ``random_starts`` random denominators (b ~ N(0, 1) scaled
    by 1/j, numerator then fitted linearly). A local method: the best of the starts is reported, not certified.
    For the plain form a start whose denominator vanishes on the grid is discarded. Each start's b_0 is kept fixed.
    """
    m, n = parse_type(type)
    t = np.asarray(t, dtype=float)
    y = np.asarray(y, dtype=float)
    rng = np.random.default_rng(seed)
    V = np.vander(t, m + 1, increasing=True)
    starts = [linearized_init(t, y, (m, n)), *inits]
    for _ in range(random_starts):
        b = rng.standard_normal(n) / np.arange(1, n + 1)
        D = 1.0 + np.abs(t * np.polynomial.polynomial.polyval(t, b)) if n else np.ones_like(t)
        a = np.linalg.lstsq(V / D[:, None], y, rcond=None)[0]
        starts.append(SafePade(a, b, form))
    best = None
    for s in starts:
        th0 = np.concatenate([s.a, s.b])
        if th0.size != m + n + 1:
            raise DegreeError(f"an init has type {s.type}, expected ({m}, {n})")
        if form == "plain" and np.any(1.0 + SafePade(s.a, s.b, "plain", s.b0).B(t) <= 0):
            th0 = np.concatenate([s.a, np.abs(s.b) * 0.0])

        def fun(th, b0=s.b0):
            return _residual_and_jac(th, t, y, m, n, form, b0)[0]

        def jac(th, b0=s.b0):
            return _residual_and_jac(th, t, y, m, n, form, b0)[1]

        with np.errstate(all="ignore"):
            res = scipy.optimize.least_squares(fun, th0, jac=jac, method="lm", x_scale="jac",
                                               xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=400)
        e = fun(res.x)
        if not np.all(np.isfinite(e)):
            continue
        r = SafePade(res.x[: m + 1], res.x[m + 1:], form, s.b0)
        if form == "plain" and np.any(r.denominator(t) <= 0):
            continue
        mse = float(np.mean(e * e))
        if best is None or mse < best.mse:
            best = LeastSquaresFit(r, mse, float(np.max(np.abs(e))), len(starts),
                                   r.is_rational_on((float(t.min()), float(t.max()))))
    if best is None:
        raise RationalApproxError("every start produced a non-finite or pole-crossing fit; pass an `inits` fit")
    return best
