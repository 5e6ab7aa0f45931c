"""Best uniform rational approximation of type (m, n): barycentric rational Remez with adaptive support points.

Problem. Given f continuous on a domain D (an interval or a finite union), find r* ∈ R_{m,n} minimising ‖f − r‖_∞ on D.
By the characterisation theorem (Achieser; Trefethen, ATAP ch. 24) r* is unique and f − r* equioscillates at
m + n + 2 − d points, d the defect of r*.

Method (Filip, Nakatsukasa, Trefethen & Beckermann, "Rational minimax approximation via adaptive barycentric
representations", SISC 40 (2018)). Each iteration holds a reference x_0 < … < x_{M−1}, M = m + n + 2, and solves

    f(x_i) − r(x_i) = (−1)^i h,   i = 0..M−1,

for r and the levelled error h. The representation adapts to the reference: N + 1 = max(m, n) + 1 of the reference
points
are the support points t_k of r, on which r interpolates f − σ_k h by construction,

    r(x) = Σ_k w_k (f_k − σ_k h)/(x − t_k) / Σ_k w_k/(x − t_k),

so the remaining reference points give a generalised eigenvalue problem (A − hB) w = 0 in the weights,

    A_ik = (f_k − f_i)/(x_i − t_k),   B_ik = (σ_k − σ_i)/(x_i − t_k),

plus linear constraints that lower the degree when m ≠ n (Σ_k w_k φ_j(t_k) = 0 for the denominator,
Σ_k w_k (f_k − σ_k h) φ_j(t_k) = 0 for the numerator; φ_j Chebyshev polynomials). Of the real eigenvalues the one whose
denominator keeps one sign on the reference (no pole in D) is taken. The error's local extrema are then located by the
adaptive search of :mod:`rational_approx.representation.extrema` and an alternating subset of them becomes the next
reference
(multi-point exchange). Because the support points move with the reference — exponentially clustered near a kink — the
basis stays well conditioned where a monomial or fixed-node basis would not, which is what makes |x| at type (80, 80)
reachable in double precision.

Symmetry (the ``symmetry`` option, ``"auto"`` by default):
- ``"even"``: for an even f on a symmetric domain the best approximant is even (uniqueness), r(x) = s(x²) with
  s ∈ R_{⌊m/2⌋,⌊n/2⌋} best for g(t) = f(√t) on {x²: x ∈ D}; E_{2k,2k}(|x|, [−1, 1]) = E_{k,k}(√t, [0, 1]).
- ``"relu"``: ReLU(x) = (x + |x|)/2 on a symmetric domain, type (2k+1, 2k): r = (x + r*_{|x|})/2, error E_{2k,2k}/2.
- ``"none"``: the plain problem.

Initial reference: by continuation in the degree from a low type (the extremal points of the type-(k, k) solution,
resampled in a coordinate that resolves the singular points, start type (k+1, k+1)), or from a caller-supplied
reference.

Example
-------
>>> res = minimax("abs", (30, 30))
>>> f"{res.error:.10e}"
'2.1739878202e-07'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import mpmath
import numpy as np
from threadpoolctl import threadpool_limits

from rational_approx.errors import ConvergenceError, DomainError, RationalApproxError, TargetError
from rational_approx.representation.barycentric import BarycentricRational, barycentric_mp, parse_type
from rational_approx.representation.domain import Domain
from rational_approx.representation.extrema import alternating_indices, local_extrema
from rational_approx.representation.fit_result import FitResult
from rational_approx.representation.targets import TARGET_NAMES, Target, get_target, resolve

__all__ = ["minimax", "MinimaxResult"]

_FLOOR_ULPS = 50.0  # rounding floor of the double-precision iteration, in ulps of max|f| (see _remez)
_EXACT_ULPS = 1000.0  # an error below this many ulps of max|f| means f is itself a rational of the type
_MP_EXCHANGES = 1  # Remez exchanges of the mpmath polish
_MP_DPS = 40  # digits of the mpmath polish


@dataclass
class MinimaxResult(FitResult):
    """Outcome of :func:`minimax` (the common fields are those of
    :class:`~rational_approx.representation.fit_result.FitResult`).

    Attributes
    ----------
    r : BarycentricRational
        The approximant, in the original variable x.
    error : float
        max |f − r| over the domain, located by adaptive extremum search and evaluated in extended precision
        (mpmath, the float64 data of r taken as exact) at the located extrema.
    extremal_points, extremal_errors : ndarray
        The final alternation set and the signed errors f − r there.
    alternations : int
        Number of alternating extrema of f − r with |f − r| ≥ (1 − 10·tol)·error.
    expected_alternations : int
        m + n + 2 − defect required by the characterisation theorem for the computed r.
    converged : bool
        Equioscillation reached (or f itself lies in R_{m,n}) and r has no pole in the domain.
    iterations : int
        Remez exchanges.
    symmetry : str
        ``"none"``, ``"even"`` or ``"relu"``: which reduction was used.
    history : list of float
        Relative spread (max|e| − min|e_ref|)/max|e| per iteration.
    degenerate : bool
        The target itself lies in R_{m,n} (to rounding): ``r`` reproduces it, ``error`` is at rounding level and
        there is no equioscillation to find (``symmetry`` is then "exact").
    """

    r: BarycentricRational
    extremal_points: np.ndarray
    extremal_errors: np.ndarray
    alternations: int
    expected_alternations: int
    symmetry: str
    history: list[float] = field(default_factory=list)
    degenerate: bool = False

    def to_dict(self) -> dict:
        """JSON-ready summary (without the representation)."""
        out = {**super().to_dict(), "method": "minimax", "alternations": int(self.alternations),
               "expected_alternations": int(self.expected_alternations), "symmetry": self.symmetry,
               "degenerate": bool(self.degenerate)}
        if self.degenerate:
            out["note"] = (f"the target lies in R_{self.type}: the best approximant is the target itself (error at "
                           f"rounding level, no equioscillation); the type is degenerate")
        return out


# ---------------------------------------------------------------------------------------------------------------------
# The core iteration, in whatever variable the symmetry reduction produced.


@dataclass
class _Solve:
    t: np.ndarray  # support points
    fv: np.ndarray  # values f(t) − σ h
    w: np.ndarray
    h: float
    reference: np.ndarray


def _support_indices(M: int, count: int, avoid_first: bool) -> np.ndarray:
    """Which of M reference points become the ``count`` support points: as far as possible no two adjacent."""
    if 2 * count <= M:
        odd = np.arange(1, M, 2)
        pick = np.unique(np.round(np.linspace(0, odd.size - 1, count)).astype(int))
        return odd[pick]
    start = 1 if avoid_first else 0
    idx = np.unique(np.round(np.linspace(start, M - 1, count)).astype(int))
    if idx.size < count:
        raise RationalApproxError("internal: could not choose support points")
    return idx


def _cheb_rows(t: np.ndarray, k: int, a: float, b: float) -> np.ndarray:
    """Rows T_j(s(t)), j < k, s the map [a, b] → [−1, 1]; by the three-term recurrence, so that it also works on object
    arrays of mpmath numbers."""
    s = (2.0 * t - (a + b)) / (b - a)
    rows = [s * 0 + 1, s][:k]
    while len(rows) < k:
        rows.append(2 * s * rows[-1] - rows[-2])
    return np.array(rows, dtype=t.dtype).reshape(k, t.size)


def _null_basis(Vt: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the null space of the (k × K) matrix Vt."""
    _, s, vh = np.linalg.svd(Vt)
    return vh[Vt.shape[0]:].T


def _solve_reference(g, x: np.ndarray, m: int, n: int, avoid_first: bool, hull: tuple[float, float],
                     refine: bool = True) -> _Solve | None:
    """Levelled-error rational on the reference x: the symmetric eigenvalue formulation.

    With D(x) = Σ β_k/(x − t_k), N(x) = Σ α_k/(x − t_k), the conditions N(x_i) = (f_i − σ_i h) D(x_i) read
    (F − hS) C β = C α with the Cauchy matrix C_ik = 1/(x_i − t_k). Scaling row i by √|Δ_i|,
    Δ_i = ℓ_t(x_i)²/ℓ_x'(x_i) (ℓ_t, ℓ_x the node polynomials of support and reference points; support rows taken as
    their finite limits), makes Cᵀ S C = 0 between the denominator space (degree ≤ n) and the numerator space
    (degree ≤ m): Σ_i σ_i |Δ_i| a(x_i) b(x_i) is a divided difference of order M − 1 of a polynomial of degree
    ≤ m + n = M − 2. With C B_D = Q_D R_D (B_D a basis of weight vectors giving deg ≤ n) the problem becomes the
    symmetric eigenproblem Q_Dᵀ S F Q_D y = h y, which LAPACK solves to full accuracy even when the reference points
    are exponentially clustered.
    """
    M = x.size
    N = max(m, n)
    sup = _support_indices(M, N + 1, avoid_first)
    is_sup = np.zeros(M, dtype=bool)
    is_sup[sup] = True
    sigma = (-1.0) ** np.arange(M)
    fx = g(x)
    t = x[sup]
    diffx = np.abs(x[:, None] - x[None, :])
    np.fill_diagonal(diffx, 1.0)
    half_log_lx = 0.5 * np.sum(np.log(diffx), axis=1)
    Cs = np.zeros((M, N + 1))
    other = np.nonzero(~is_sup)[0]
    dxt = x[other, None] - t[None, :]
    log_lt = np.sum(np.log(np.abs(dxt)), axis=1)
    Cs[other] = np.exp(log_lt - half_log_lx[other])[:, None] / dxt
    difft = np.abs(t[:, None] - t[None, :])
    np.fill_diagonal(difft, 1.0)
    Cs[sup, np.arange(N + 1)] = np.exp(np.sum(np.log(difft), axis=1) - half_log_lx[sup])
    if not np.all(np.isfinite(Cs)):
        return None
    B_D = _null_basis(_cheb_rows(t, N - n, *hull)) if N > n else np.eye(N + 1)
    order = np.argsort(-np.linalg.norm(Cs, axis=1))  # Householder QR is most accurate with large rows first
    Q, R = np.linalg.qr((Cs @ B_D)[order])
    Q = Q[np.argsort(order)]
    H = Q.T @ ((sigma * fx)[:, None] * Q)
    H = 0.5 * (H + H.T)
    try:
        hs, Y = np.linalg.eigh(H)
    except np.linalg.LinAlgError:
        return None
    beta = B_D @ np.linalg.solve(R, Y)  # columns: candidate denominator weights
    # sign of q = ℓ_t·D on the reference must be constant (no pole in between)
    node_sign_sup = np.array([np.prod(np.sign(tk - np.delete(t, k))) for k, tk in enumerate(t)])
    node_sign_oth = np.prod(np.sign(dxt), axis=1)
    Dv = (1.0 / dxt) @ beta
    best, best_key = None, None
    for j in range(hs.size):
        qs = np.concatenate([np.sign(beta[:, j]) * node_sign_sup, np.sign(Dv[:, j]) * node_sign_oth])
        changes = int(min(np.sum(qs > 0), np.sum(qs < 0)))
        key = (changes, abs(hs[j]))
        if best_key is None or key < best_key:
            best, best_key = j, key
    h = float(hs[best])
    w = beta[:, best] / np.max(np.abs(beta[:, best]))
    if refine:
        h, w = _refine_levelled(fx, sigma, is_sup, x, t, w, h, m, n, hull)
        h, w = float(h), w.astype(float)
    return _Solve(t=t, fv=fx[sup] - sigma[sup] * h, w=w / np.max(np.abs(w)), h=h, reference=x)


def _refine_levelled(fx, sigma, is_sup, x, t, w, h, m, n, hull, steps: int = 3, fx_exact=None):
    """Newton refinement of the levelled system in the interpolatory parametrisation.

    With r(t_k) = f_k − σ_k h fixed at the support points, the other reference points require
    F_i(w, h) = Σ_k w_k (f_k − σ_k h − f_i + σ_i h)/(x_i − t_k) = 0 (plus degree constraints when m ≠ n). The residual
    F_i equals −D(x_i)(e(x_i) − σ_i h), which double precision evaluates to a few ulps, so Newton steps on (w, h)
    (columns scaled by |w| for relative accuracy of small weights) take the solution of the eigenvalue problem down to
    that level.

    With ``fx_exact`` (f at the reference points as mpmath numbers) the residuals are evaluated in mpmath and w, h are
    carried as mpmath numbers: mixed-precision iterative refinement (exact residual, double Jacobian), which converges
    to the levelled solution on the given reference far below double rounding.
    """
    def matrices(fxv, xv, tv):
        ft, fi = fxv[is_sup], fxv[~is_sup]
        C = 1.0 / (xv[~is_sup][:, None] - tv[None, :])
        return ft, (ft[None, :] - fi[:, None]) * C, (sigma[is_sup][None, :] - sigma[~is_sup][:, None]) * C

    def system(mats, tv, wv, hv):
        ft, A, B = mats
        st = sigma[is_sup]
        Ah = A - hv * B
        res = [Ah.dot(wv)]
        rows = [(Ah, -(B.dot(wv)))]
        N = tv.size - 1
        if N > n:
            P = _cheb_rows(tv, N - n, *hull)
            res.append(P.dot(wv))
            rows.append((P, np.zeros(P.shape[0])))
        if N > m:
            P = _cheb_rows(tv, N - m, *hull)
            v = ft - st * hv
            res.append(P.dot(wv * v))
            rows.append((P * v[None, :], -(P.dot(wv * st))))
        return res, rows

    exact = fx_exact is not None
    if exact:
        xv = np.array([mpmath.mpf(float(v)) for v in x], dtype=object)
        wv = np.array([mpmath.mpf(float(v)) for v in w], dtype=object)
        hv = mpmath.mpf(float(h))
    else:
        xv, wv, hv = x, w, h
    tv = xv[is_sup]
    mats = matrices(fx_exact if exact else fx, xv, tv)
    mats_f = matrices(fx, x, t) if exact else mats
    for _ in range(steps):
        res, _ = system(mats, tv, wv, hv)
        wf, hf = wv.astype(float), float(hv)
        _, rows = system(mats_f, t, wf, hf)
        J = np.vstack([np.hstack([a.astype(float), np.asarray(c, dtype=float)[:, None]]) for a, c in rows]
                      + [np.hstack([wf, [0.0]])[None, :]])  # keep the normalisation: δw ⊥ w
        rhs = -np.concatenate([np.asarray(r_, dtype=float) for r_ in res] + [np.zeros(1)])
        scale = np.concatenate([np.maximum(np.abs(wf), 1e-16 * np.max(np.abs(wf))), [max(abs(hf), 1e-300)]])
        rs = 1.0 / np.maximum(np.max(np.abs(J * scale), axis=1), 1e-300)
        try:
            d = np.linalg.lstsq((J * scale) * rs[:, None], rhs * rs, rcond=None)[0] * scale
        except np.linalg.LinAlgError:
            break
        wv = wv + d[:-1]
        hv = hv + d[-1]
    return hv, wv


def _polish_mp(g_mp, sol: _Solve, m: int, n: int, hull: tuple[float, float], dps: int = _MP_DPS):
    """The levelled solution on the final reference in mpmath: returns (t_mp, values_mp, w_mp, h_mp).

    A double-precision barycentric r cannot have a sup error known better than ≈ ulp(max|f|): its data are rounded.
    Solving the levelled system on the converged reference with exact residuals removes that floor; since the reference
    is optimal to first order, the level is then accurate to second order in the reference's error.
    """
    x = sol.reference
    sup = np.isin(x, sol.t)
    sigma = (-1.0) ** np.arange(x.size)
    with mpmath.workdps(dps):
        fx_exact = np.array([g_mp(mpmath.mpf(float(v))) for v in x], dtype=object)
        fx = fx_exact.astype(float)
        h, w = _refine_levelled(fx, sigma, sup, x, sol.t, sol.w, sol.h, m, n, hull, steps=3, fx_exact=fx_exact)
        t_mp = [mpmath.mpf(float(v)) for v in sol.t]
        vals = [fk - sk * h for fk, sk in zip(fx_exact[sup], sigma[sup])]
        return t_mp, vals, list(w), h


def _remez(g, domain: Domain, m: int, n: int, x0: np.ndarray, *, singular: tuple[float, ...], avoid_first: bool,
           tol: float, maxiter: int, g_mp=None) -> tuple[_Solve, np.ndarray, np.ndarray, float, int, bool, list]:
    """Remez exchange from reference x0.

    Returns (solve, extremal x, extremal e, error, iterations, converged, history).
    """
    M = m + n + 2
    hull = (domain.a, domain.b)
    x = np.asarray(x0, dtype=float)
    history: list[float] = []
    best = None
    for it in range(1, maxiter + 1):
        # Newton refinement of the levelled system only pays once the reference is nearly optimal
        near = bool(history) and history[-1] < 1e-2
        sol = _solve_reference(g, x, m, n, avoid_first, hull, refine=near)
        if sol is None:
            break
        r = BarycentricRational(sol.t, sol.fv, sol.w)

        def err(y, r=r):
            return g(y) - r(y)

        bps = np.concatenate([x, np.asarray(singular, dtype=float)])
        cx, cv = local_extrema(err, domain, bps)
        gx = g(cx)
        if not np.all(np.isfinite(gx)):
            bad = cx[~np.isfinite(gx)][0]
            raise TargetError(f"the target is not finite at x = {bad:g} inside the domain; restrict the domain")
        emax = float(np.max(np.abs(cv)))
        fscale = float(np.max(np.abs(g(x))))
        if emax <= _EXACT_ULPS * np.finfo(float).eps * fscale:
            # f is a rational of lower type (defect): the best error is 0 and there is nothing to equioscillate
            return sol, cx, cv, emax, it, True, history + [0.0]
        idx = alternating_indices(cv, M)
        if idx.size < M:
            history.append(np.inf)
            break
        nx, nv = cx[idx], cv[idx]
        spread = (emax - float(np.min(np.abs(nv)))) / emax
        history.append(spread)
        if best is None or emax < best[3]:
            best = (sol, nx, nv, emax, it)
        # Rounding floor: f − r is evaluated with absolute error ≈ a few hundred ulps of max|f|, so the relative spread
        # cannot drop below that divided by the error level; equioscillation to within it is all double can show.
        floor = _FLOOR_ULPS * np.finfo(float).eps * fscale / emax
        if spread <= max(tol, floor):
            return sol, nx, nv, emax, it, True, history
        x = nx
    if best is None:
        raise ConvergenceError("minimax: the first reference already gave no usable solution", best=None)
    sol, nx, nv, emax, it_best = best
    return sol, nx, nv, emax, len(history), False, history




def _warp(c: float, scale: float):
    """A coordinate u = asinh((x − c)/scale) in which exponentially clustered points become evenly spread."""
    return (lambda x: np.arcsinh((x - c) / scale)), (lambda u: c + scale * np.sinh(u))


def _resample(ref: np.ndarray, count: int, domain: Domain, singular: tuple[float, ...]) -> np.ndarray:
    """Resample a reference set to ``count`` points, interpolating positions against the normalised index in a warped
    coordinate (so the exponential clustering at a singular point is carried over), then snap to the domain."""
    c = singular[0] if singular else 0.5 * (domain.a + domain.b)
    width = domain.b - domain.a
    fwd, inv = _warp(c, 1e-3 * width if singular else width)
    u = fwd(ref)
    s_old = np.linspace(0.0, 1.0, ref.size)
    s_new = np.linspace(0.0, 1.0, count)
    new = inv(np.interp(s_new, s_old, u))
    new[0], new[-1] = ref[0], ref[-1]
    new = np.clip(new, domain.a, domain.b)
    # push points that fell into a gap to the nearest domain point
    for i, v in enumerate(new):
        if not domain.contains(v):
            ends = domain.endpoints
            new[i] = ends[np.argmin(np.abs(ends - v))]
    new = np.unique(new)
    if new.size < count:  # rare: fill the largest gaps
        while new.size < count:
            j = int(np.argmax(np.diff(new)))
            new = np.sort(np.append(new, 0.5 * (new[j] + new[j + 1])))
    return new


def _initial_reference(domain: Domain, M: int, singular: tuple[float, ...]) -> np.ndarray:
    """A crude first reference of M points.

    With an interior singular point (a kink) the points are taken evenly from a sample clustered exponentially at it;
    otherwise Chebyshev extreme points on each interval, in numbers proportional to the interval lengths (at least
    two, the end points, per interval: the error of a gate approximant peaks at both edges of a gap).
    """
    interior = [c for c in singular if any(a < c < b for a, b in domain.intervals)]
    if interior:
        pts = domain.sample(8 * M, cluster=singular, depth=6)
        idx = np.round(np.linspace(0, pts.size - 1, M)).astype(int)
        return np.unique(pts[idx])
    ivs = domain.intervals
    if M < 2 * len(ivs):
        pts = domain.sample(8 * M, depth=2)
        return np.unique(pts[np.round(np.linspace(0, pts.size - 1, M)).astype(int)])
    lengths = np.array([b - a for a, b in ivs])
    counts = np.full(len(ivs), 2)
    for _ in range(M - counts.sum()):
        counts[np.argmax(lengths / counts)] += 1
    pts = [0.5 * (a + b) - 0.5 * (b - a) * np.cos(np.pi * np.arange(k) / (k - 1)) for (a, b), k in zip(ivs, counts)]
    return np.concatenate(pts)


def _mp_error(g_mp, r: BarycentricRational, x: np.ndarray, dps: int = _MP_DPS) -> np.ndarray:
    """f − r at the points x, in mpmath with the float64 data of r taken as exact."""
    with mpmath.workdps(dps):
        vals = r.eval_mp([mpmath.mpf(float(v)) for v in x])
        return np.array([float(g_mp(mpmath.mpf(float(v))) - rv) for v, rv in zip(x, vals)])


def _defect(r: BarycentricRational, m: int, n: int, hull: tuple[float, float]) -> int:
    """Defect of r in R_{m,n}: min(m − deg p, n − deg q), degrees read from Chebyshev coefficients (relative 1e-10)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pq = r.to_chebyshev(hull, tol=np.inf)

    def deg(c):
        c = np.abs(c)
        nz = np.nonzero(c > 1e-10 * max(c.max(), 1e-300))[0]
        return int(nz[-1]) if nz.size else 0

    return max(0, min(m - deg(pq.p), n - deg(pq.q)))


def _solve_continuation(g, domain, m, n, singular, avoid_first, tol, maxiter, init):
    """Solve type (m, n): from ``init`` if given, else by continuation in the degree along (m − j, n − j), else
    directly from a crude reference; the first converged result wins, else the one with the smallest error."""
    M = m + n + 2
    kw = dict(singular=singular, avoid_first=avoid_first, tol=tol, maxiter=maxiter)
    attempts = []
    if init is not None:
        attempts.append(lambda: _remez(g, domain, m, n, _resample(np.sort(np.asarray(init, float)), M, domain,
                                                                   singular), **kw))
    # unit 2 keeps the parity of the degrees: for targets symmetric up to a constant (sign, a Heaviside step at the
    # centre of a symmetric domain) every other type on the unit-1 path is degenerate and stalls the iteration
    attempts.append(lambda: _continuation(g, domain, m, n, kw, unit=1))
    attempts.append(lambda: _continuation(g, domain, m, n, kw, unit=2))
    attempts.append(lambda: _remez(g, domain, m, n, _initial_reference(domain, M, singular), **kw))
    # low-denominator types (polynomials above all) equioscillate on Chebyshev-like, not exponentially clustered, sets;
    # one point of M + 1 is dropped to break the mirror symmetry that makes h = 0 for a target with an even part
    def chebyshev_start():
        ref = _initial_reference(domain, M + 1, ())
        return _remez(g, domain, m, n, np.delete(ref, M // 2 - (M + 1) % 2), **kw)

    attempts.append(chebyshev_start)
    results = []
    for attempt in attempts:
        try:
            out = attempt()
        except ConvergenceError:
            continue
        if out[5]:
            return out
        results.append(out)
    if not results:
        raise ConvergenceError(f"minimax: no start produced a usable type-({m}, {n}) reference", best=None)
    return min(results, key=lambda o: o[3])


def _continuation(g, domain, m, n, kw, unit: int = 1):
    singular = kw["singular"]
    j0 = min(m, n)
    # start at the lowest type on the path (m − j0 + j, n − j0 + j), j ≡ j0 mod unit, with at least 4 reference points
    # (type (0, 0)-like starts have too few points to carry the clustering over)
    done = j0 % unit
    while done < j0 and (m - j0 + done) + (n - j0 + done) + 2 < 4:
        done += unit
    lo_m, lo_n = m - j0, n - j0
    ref = _initial_reference(domain, lo_m + lo_n + 2 * done + 2, singular)
    out = _remez(g, domain, lo_m + done, lo_n + done, ref, **kw)
    iters, step = out[4], unit
    # the step doubles after a success and halves after a failure (the warped resampling carries the clustering of
    # the reference over to the next type)
    while done < j0:
        j = min(j0, done + step)
        mm, nn = lo_m + j, lo_n + j
        trial_ref = _resample(out[1], mm + nn + 2, domain, singular)
        try:
            trial = _remez(g, domain, mm, nn, trial_ref, **kw)
        except ConvergenceError:
            trial = None
        if trial is not None:
            iters += trial[4]
        if trial is not None and (trial[5] or step == unit):
            out, done, step = trial, j, step * 2
        elif step == unit:  # even the smallest step gives no usable reference
            raise ConvergenceError("continuation failed", best=None)
        else:
            step = max(unit, (step // 2) // unit * unit)
    sol, nx, nv, emax, _, conv, hist = out
    return sol, nx, nv, emax, iters, conv, hist


def minimax(
    target: Target | str | Callable,
    type: tuple[int, int],
    domain: Domain | tuple[float, float] | None = None,
    *,
    symmetry: str = "auto",
    tol: float = 1e-9,
    maxiter: int = 40,
    init: np.ndarray | None = None,
    gap: float | None = None,
    polish: bool = True,
    raise_on_failure: bool = True,
    **target_kw,
) -> MinimaxResult:
    """Best uniform rational approximation of type (m, n) to ``target`` on ``domain``.

    Parameters
    ----------
    target : Target, name ("abs", "relu", "jumprelu", "heaviside", "sign", "topk_gate") or callable.
    type : (m, n), numerator and denominator degrees.
    domain : Domain or (a, b); default: the target's default domain (gapped around a jump, half-width ``gap``).
    symmetry : "auto" | "even" | "relu" | "none". "auto" uses "even" for an even target on a symmetric domain,
        "relu" for ReLU at type (2k+1, 2k) on a symmetric interval, else "none".
    tol : convergence when (max|e| − min over the reference of |e|)/max|e| ≤ tol (levelled equioscillation).
    maxiter : Remez iterations per degree step.
    init : optional initial reference points (e.g. from AAA-Lawson or a neighbouring type).
    polish : after convergence, solve the levelled system on the final reference once more with residuals in
        mpmath (40 digits) and attach the result to ``r.mp``; ``error`` is then the sup error of that extended-precision
        rational, free of the ≈ ulp(max|f|) floor of double data (needs ``target.f_mp``).
    raise_on_failure : raise :class:`ConvergenceError` (carrying the best result) when not converged.
    target_kw : ``theta`` / ``tau`` for the named gates.

    Returns
    -------
    MinimaxResult
    """
    # The dense problems here are tiny (≤ 82 × 41): multithreaded BLAS only adds synchronisation cost (measured 25×
    # slower eigh on 2 busy cores), so the whole computation runs single-threaded.
    with threadpool_limits(limits=1, user_api="blas"):
        return _minimax(target, type, domain, symmetry=symmetry, tol=tol, maxiter=maxiter, init=init, gap=gap,
                        raise_on_failure=raise_on_failure, polish=polish, **target_kw)


def _minimax(target, type, domain, *, symmetry, tol, maxiter, init, gap, raise_on_failure, polish=True,
             **target_kw):
    t0 = time.perf_counter()
    m, n = parse_type(type)
    tgt, dom = resolve(target, domain, gap, **target_kw)
    if isinstance(maxiter, bool) or not isinstance(maxiter, int | np.integer) or maxiter < 1:
        raise RationalApproxError(f"maxiter must be a positive integer (Remez iterations per degree step), got "
                                  f"{maxiter!r}")
    if not (isinstance(tol, int | float | np.floating) and 0 < tol < 1):
        raise RationalApproxError(f"tol must be a number in (0, 1) (relative spread of the levels), got {tol!r}")
    if init is not None:
        init = _check_init(init, dom)
    if tgt.name not in TARGET_NAMES:  # the named gates are not rational; a user function may be
        exact = _rational_in_type(tgt, dom, m, n)
        if exact is not None:
            return _exact_result(tgt, dom, (m, n), exact, t0)
    if symmetry not in ("auto", "even", "relu", "none"):
        raise RationalApproxError(f"symmetry must be 'auto', 'even', 'relu' or 'none', got {symmetry!r}")
    sym_domain = dom.is_symmetric(tol=1e-15 * (dom.b - dom.a))
    if symmetry == "auto":
        if tgt.parity == "even" and sym_domain:
            symmetry = "even"
        elif tgt.name == "relu" and sym_domain and dom.is_interval and m == n + 1 and n % 2 == 0 and n >= 2:
            symmetry = "relu"
        else:
            symmetry = "none"
    if symmetry == "even" and not (tgt.parity == "even" and sym_domain):
        raise RationalApproxError("symmetry='even' needs an even target on a symmetric domain")
    if symmetry == "relu" and not (tgt.name == "relu" and sym_domain and m == n + 1 and n % 2 == 0):
        raise RationalApproxError("symmetry='relu' needs target 'relu', a symmetric domain and type (2k+1, 2k)")

    if symmetry == "relu":
        inner = _minimax(get_target("abs"), (n, n), dom, symmetry="even", init=None, gap=None, tol=tol, maxiter=maxiter,
                         polish=polish, raise_on_failure=False)
        rb = inner.r
        mp = None
        if rb.mp is not None:
            zm, fm, wm = rb.mp
            with mpmath.workdps(_MP_DPS):
                mp = (zm, [(zk + fk) / 2 for zk, fk in zip(zm, fm)], wm)
        r = BarycentricRational(rb.z, 0.5 * (rb.z + rb.f), rb.w, type=(m, n), mp=mp)
        return _finish(tgt, dom, (m, n), r, inner.extremal_points, inner.converged, inner.iterations, t0, "relu",
                       inner.history, tol, raise_on_failure)

    if symmetry == "even":
        mt, nt = m // 2, n // 2
        if not np.isfinite(max(dom.a * dom.a, dom.b * dom.b)):
            raise DomainError(f"domain {dom} is too wide for the even reduction t = x² (x² overflows float64); rescale "
                              f"x to a moderate interval such as [-1, 1], or pass symmetry='none'")
        tdom = Domain(tuple(sorted({(min(a * a, b * b) if a * b > 0 else 0.0, max(a * a, b * b))
                                    for a, b in dom.intervals if b > 0})))
        f, f_mp = tgt.f, tgt.f_mp

        def g(t):
            return f(np.sqrt(t))

        g_mp = None if f_mp is None else (lambda t: f_mp(mpmath.sqrt(t)))
        sing = (0.0,) if tdom.a == 0.0 else ()
        init_t = None if init is None else np.unique(np.asarray(init, dtype=float) ** 2)
        sol, nx, nv, emax, iters, conv, hist = _solve_continuation(g, tdom, mt, nt, sing, True, tol, maxiter, init_t)
        t_mp, v_mp, w_mp, sol = _maybe_polish(g, g_mp, sol, nx, mt, nt, True, tdom, conv and polish)
        if np.any(sol.t <= 0):
            raise RationalApproxError("internal: even reduction produced a support point at t = 0")
        rt = np.sqrt(sol.t)
        z = np.concatenate([-rt[::-1], rt])
        fv = np.concatenate([sol.fv[::-1], sol.fv])
        wv = sol.w / (2.0 * rt)
        w = np.concatenate([-wv[::-1], wv])
        mp = None
        if t_mp is not None:
            with mpmath.workdps(_MP_DPS):  # mpmath rounds every result, unary minus included, to the context
                rt_mp = [mpmath.sqrt(v) for v in t_mp]
                wv_mp = [wk / (2 * rk) for wk, rk in zip(w_mp, rt_mp)]
                mp = ([-v for v in rt_mp[::-1]] + rt_mp, v_mp[::-1] + v_mp, [-v for v in wv_mp[::-1]] + wv_mp)
        r = BarycentricRational(z, fv, w, type=(m, n), mp=mp)
        ext = np.sqrt(nx)
        ext = np.unique(np.concatenate([-ext, ext]))
        return _finish(tgt, dom, (m, n), r, ext, conv, iters, t0, "even", hist, tol, raise_on_failure)

    sing = tuple(tgt.singular_points)
    sol, nx, nv, emax, iters, conv, hist = _solve_continuation(tgt.f, dom, m, n, sing, False, tol, maxiter, init)
    t_mp, v_mp, w_mp, sol = _maybe_polish(tgt.f, tgt.f_mp, sol, nx, m, n, False, dom, conv and polish)
    mp = None if t_mp is None else (t_mp, v_mp, w_mp)
    r = BarycentricRational(sol.t, sol.fv, sol.w, type=(m, n), mp=mp)
    return _finish(tgt, dom, (m, n), r, nx, conv, iters, t0, "none", hist, tol, raise_on_failure)


def _rational_in_type(tgt: Target, dom: Domain, m: int, n: int) -> BarycentricRational | None:
    """r = p/q ∈ R_{m,n} equal to f to rounding level on the domain, or None.

    For j = min(m, n), …, 0 (smallest type first, so that p and q share no factor and the null space below is one
    dimensional): linearised least squares min ‖p − f·q‖ over Chebyshev coefficients of type (m − j, n − j), ‖(p, q)‖ =
    1 (the right singular vector of the smallest singular value) on 4(m + n + 2) + 40 points; accepted when q has no
    sign change on a dense check set and max |f − p/q| there is ≤ _EXACT_ULPS ulps of max |f|. r is returned in
    barycentric form on max(m, n) + 1 Chebyshev points (w_k = q(z_k)/ℓ'(z_k), f_k = p(z_k)/q(z_k), exact for
    deg p, deg q ≤ N), declared type (m, n).
    """
    a, b = dom.a, dom.b
    cheb = np.polynomial.chebyshev
    x = dom.sample(4 * (m + n + 2) + 40)
    s = (2.0 * x - a - b) / (b - a)
    fx = tgt.evaluate(x)
    xc = dom.sample(4000, cluster=tgt.singular_points, depth=12)
    sc = (2.0 * xc - a - b) / (b - a)
    fc = tgt.evaluate(xc)
    level = _EXACT_ULPS * np.finfo(float).eps * max(float(np.max(np.abs(fc))), 1e-300)
    for j in range(min(m, n), -1, -1):
        mj, nj = m - j, n - j
        A = np.hstack([cheb.chebvander(s, mj), -fx[:, None] * cheb.chebvander(s, nj)])
        norms = np.maximum(np.linalg.norm(A, axis=0), 1e-300)  # column scaling: the SVD sees an O(1) matrix
        v = np.linalg.svd(A / norms, full_matrices=False)[2][-1] / norms
        cp, cq = v[: mj + 1], v[mj + 1:]
        with np.errstate(all="ignore"):
            qc = cheb.chebval(sc, cq)
            if not (np.all(qc > 0) or np.all(qc < 0)):
                continue
            if np.max(np.abs(fc - cheb.chebval(sc, cp) / qc)) > level:
                continue
        N = max(m, n)
        zs = np.cos(np.pi * (np.arange(N + 1) + 0.5) / (N + 1))[::-1]  # Chebyshev points of [−1, 1], in s
        lp = np.array([np.prod([zs[k] - zs[i] for i in range(N + 1) if i != k]) for k in range(N + 1)])
        qz, pz = cheb.chebval(zs, cq), cheb.chebval(zs, cp)
        w = qz / lp
        return BarycentricRational(0.5 * (a + b) + 0.5 * (b - a) * zs, pz / qz, w / np.max(np.abs(w)), type=(m, n))
    return None


def _exact_result(tgt: Target, dom: Domain, type_: tuple[int, int], r: BarycentricRational, t0: float) -> MinimaxResult:
    def err(x):
        return tgt.f(x) - r(x)

    cx, cv = local_extrema(err, dom, np.asarray(tgt.singular_points, dtype=float))
    i = int(np.argmax(np.abs(cv)))
    return MinimaxResult(r=r, extremal_points=cx[i:i + 1], extremal_errors=cv[i:i + 1], alternations=0,
                         expected_alternations=0, symmetry="exact", history=[], degenerate=True, target=tgt,
                         type=type_, domain=dom, error=float(abs(cv[i])), converged=True, iterations=0,
                         seconds=time.perf_counter() - t0)


def _check_init(init, dom: Domain) -> np.ndarray:
    """An initial reference: ≥ 2 distinct finite points of the domain (any number: it is resampled to m + n + 2)."""
    try:
        x = np.asarray(init, dtype=float)
    except (TypeError, ValueError) as exc:
        raise RationalApproxError(f"init must be a 1-D array of reference points, got {init!r}") from exc
    if x.ndim != 1 or np.unique(x).size < 2:
        raise RationalApproxError(f"init must be a 1-D array of at least 2 distinct reference points, got shape "
                                  f"{x.shape}")
    if not np.all(np.isfinite(x)):
        raise RationalApproxError("init holds NaN or infinite points")
    outside = x[~dom.contains(x)]
    if outside.size:
        raise DomainError(f"init point {float(outside[0])!r} lies outside the domain {dom}")
    return np.sort(x)


def _extrema_mp(g_mp, t_mp, v_mp, w_mp, x: np.ndarray, domain: Domain, dps: int = _MP_DPS) -> np.ndarray:
    """Move each interior reference point to the vertex of a parabola through the mp error at x ± s·L (s = 1e-3, then
    1e-5; L the distance to the nearer neighbour). In double the error near |f| ≈ 1 is known only to ≈ 1e-16, which
    leaves flat extrema ill-located; in mpmath the vertex is exact to the rounding of the float abscissa."""
    ends = set(domain.endpoints.tolist())
    out = x.copy()
    with mpmath.workdps(dps):
        def e(u):
            u = mpmath.mpf(u)
            return g_mp(u) - barycentric_mp(t_mp, v_mp, w_mp, u)

        for i in range(1, x.size - 1):
            if float(x[i]) in ends:
                continue
            L = min(x[i] - x[i - 1], x[i + 1] - x[i])
            xi = mpmath.mpf(float(x[i]))
            sgn = 1 if e(xi) > 0 else -1
            for s in (1e-3, 1e-6):
                h = mpmath.mpf(s * L)
                em, e0, ep = sgn * e(xi - h), sgn * e(xi), sgn * e(xi + h)
                curv = em - 2 * e0 + ep
                if curv >= 0:
                    break
                cand = xi + h * (em - ep) / (2 * curv)
                if abs(cand - xi) < 2 * h and sgn * e(cand) >= e0:
                    xi = cand
            out[i] = float(xi)
    return out


def _maybe_polish(g, g_mp, sol: _Solve, nx: np.ndarray, m: int, n: int, avoid_first: bool, domain: Domain,
                  polish: bool):
    """Re-solve on the newest extremal set and polish in mpmath (when the target has an mpmath evaluation).

    Returns (t_mp, values_mp, w_mp, solve) with the float data of ``solve`` rounded from the mp solution, or
    (None, None, None, sol) when not polishing.
    """
    if not polish or g_mp is None:
        return None, None, None, sol
    hull = (domain.a, domain.b)
    new = _solve_reference(g, nx, m, n, avoid_first, hull, refine=True)
    if new is None:
        return None, None, None, sol
    t_mp, v_mp, w_mp, h_mp = _polish_mp(g_mp, new, m, n, hull)
    # exchanges in mpmath: the extrema of the mp error, then the levelled solution on them
    for _ in range(_MP_EXCHANGES):
        ref = _extrema_mp(g_mp, t_mp, v_mp, w_mp, new.reference, domain)
        new = _Solve(t=ref[np.isin(new.reference, new.t)], fv=new.fv, w=new.w, h=new.h, reference=ref)
        t_mp, v_mp, w_mp, h_mp = _polish_mp(g_mp, new, m, n, hull)
    with mpmath.workdps(_MP_DPS):
        scale = max(abs(v) for v in w_mp)
        w_mp = [v / scale for v in w_mp]
    rounded = _Solve(t=new.t, fv=np.array([float(v) for v in v_mp]), w=np.array([float(v) for v in w_mp]),
                     h=float(h_mp), reference=nx)
    return t_mp, v_mp, w_mp, rounded


def _finish(tgt, dom, type_, r, ref, conv, iters, t0, symmetry, hist, tol, raise_on_failure) -> MinimaxResult:
    m, n = type_

    def err(x):
        return tgt.f(x) - r(x)

    cx, cv = local_extrema(err, dom, np.concatenate([ref, np.asarray(tgt.singular_points, dtype=float)]))
    if tgt.f_mp is not None:
        cv = _mp_error(tgt.f_mp, r, cx)
    emax = float(np.max(np.abs(cv)))
    spread = hist[-1] if hist and np.isfinite(hist[-1]) else 1.0
    level = (1.0 - max(10 * tol, 4 * spread)) * emax
    # the alternation set: the extrema near the maximal level, merged by sign
    near = np.abs(cv) >= level
    idx = alternating_indices(cv[near])
    alt = int(idx.size)
    ex, ev = cx[near][idx], cv[near][idx]
    defect = _defect(r, m, n, (dom.a, dom.b))
    expected = m + n + 2 - defect
    exact = emax <= _EXACT_ULPS * np.finfo(float).eps * max(float(np.max(np.abs(tgt.f(cx)))), 1e-300)
    with np.errstate(all="ignore"):
        poles_inside = r.real_poles_in(dom.intervals)
    converged = bool(conv and (alt >= expected or exact) and np.isfinite(emax) and poles_inside.size == 0)
    res = MinimaxResult(r=r, error=emax, extremal_points=ex, extremal_errors=ev, alternations=alt,
                        expected_alternations=expected, converged=converged, iterations=iters,
                        seconds=time.perf_counter() - t0, type=(m, n), domain=dom, target=tgt, symmetry=symmetry,
                        history=hist)
    if not converged and raise_on_failure:
        raise ConvergenceError(
            f"minimax did not converge for {tgt.name} type {type_} on {dom}: {alt} alternations of {expected} "
            f"needed, last relative spread {hist[-1] if hist else float('nan'):.2e}; best error {emax:.3e}"
            + (f"; {poles_inside.size} real pole(s) inside the domain" if poles_inside.size else "") + ". "
            "Try more iterations (maxiter), a looser tol, or an initial reference (init=) from lawson().",
            best=res,
        )
    return res
