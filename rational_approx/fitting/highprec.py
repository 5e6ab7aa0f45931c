"""High-precision best rational approximation: Remez exchange in multiprecision arithmetic.

Double precision caps a minimax error at about 1e-16 relative to ‖f‖, and the equioscillation level of a
computed approximant is only as good as the arithmetic that produced it. This module recomputes best
approximations with hundreds of bits, so that the best error E_{m,n}(f) is known to 15+ significant digits and
can then be bracketed rigorously by :mod:`rational_approx.verification.certify`.

Two solvers share one levelled-system kernel (the classical Remez step, Powell 1981 §10; Filip, Nakatsukasa,
Trefethen & Beckermann, SISC 40 (2018)):

* given reference points x_0 < … < x_{m+n+1}, find r = p/q ∈ R_{m,n} and the level h with

      f(x_i) − r(x_i) = s_i h,   s_i = ±1 alternating,                                               (1)

  i.e. p(x_i) − (f(x_i) − s_i h) q(x_i) = 0: a (m+n+2)-square matrix pencil M(h) = A + hB. The admissible h is
  the eigenvalue whose q has no sign change on the domain (Rayleigh–Newton on det M(h) once a close h is
  known, h ← h − 1 / tr(M(h)⁻¹ B));
* move each reference point to the local extremum of f − r between the zeros that flank it (exchange); repeat
  until the levels |f(x_i) − r(x_i)| agree to the working precision.

**|x| on [−1, 1] (and ReLU).** By symmetry the best approximant of |x| is even, E_{2k+1,2k+1} = E_{2k,2k} and

    E_{2k,2k}(|x|, [−1, 1]) = E_{k,k}(√t, [0, 1]),   r(x) = R(x²)                                      (2)

(REFERENCE.md). For √t the solver uses the barycentric basis N/D with support points at the odd-indexed
reference points (then (1) at a support point z_j reads α_j − (f_j − s_j h) β_j = 0 and the remaining rows
form a Cauchy matrix), which stays well conditioned although the reference points cluster exponentially at t =
0 (t_1 ≈ 4e-22 at k = 40); 8k + 200 bits suffice for 20 correct digits of E_{2k,2k} (checked by re-solving at
64 more bits). Degrees are reached by continuation in k: the reference for k is extrapolated, in log t, from
the one for k − 1. ReLU is (x + |x|)/2, so the best type-(2k+1, 2k) approximant of ReLU is (x + R(x²))/2 with
error E_{2k,2k}/2.

**General targets.** :func:`refine_minimax` restarts the Remez iteration from a double-precision
:class:`~rational_approx.fitting.minimax.MinimaxResult` (its extremal points are the initial reference), with p and q
in the Chebyshev basis of the domain's hull, and extrema located by sampling plus golden-section search in the
working precision. It is meant for the moderate types (m, n ≤ 20) where double precision is the bottleneck,
not the basis.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import mpmath
import numpy as np
from flint import acb_mat, arb, arb_mat, arb_poly, ctx
from mpmath.libmp import from_man_exp

from rational_approx.errors import ConvergenceError, DegreeError, TargetError
from rational_approx.representation.barycentric import BarycentricRational
from rational_approx.representation.domain import Domain
from rational_approx.representation.targets import Target, get_target

__all__ = [
    "HighPrecResult",
    "abs_minimax",
    "abs_minimax_table",
    "relu_minimax",
    "refine_minimax",
    "abs_precision_bits",
    "piecewise_linear_form",
    "arb_from_mpf",
    "mpf_from_arb",
]


# ------------------------------------------------------------------------------------------------ conversions
def arb_from_mpf(x: mpmath.mpf | float | int) -> arb:
    """The exact arb value of a binary floating-point number (mpmath mpf, float or int): no rounding."""
    if not isinstance(x, mpmath.mpf):  # mpmath.mpf(an mpf) would round it to the current mp precision
        x = mpmath.mpf(float(x) if isinstance(x, float | np.floating) else int(x))
    sign, man, exp, _ = x._mpf_
    if man == 0:
        if exp != 0:  # mpmath encodes ±inf and nan as zero mantissa with a non-zero exponent
            raise TargetError(f"cannot convert non-finite {x} to a ball")
        return arb(0)
    return arb((-man if sign else man, exp))


def mpf_from_arb(x: arb) -> mpmath.mpf:
    """The midpoint of an arb ball as an exact mpmath mpf."""
    man, exp = x.mid().man_exp()
    return mpmath.mp.make_mpf(from_man_exp(int(man), int(exp)))  # exact; mpf((man, exp)) would round


def _exact(x: arb) -> arb:
    """Drop the radius (the working quantities of a Remez step are points, not enclosures)."""
    return x.mid()


# ----------------------------------------------------------------------------------------------- target forms
def piecewise_linear_form(
    target: Target,
) -> tuple[tuple[float, ...], Callable[[float], tuple[float, float]]] | None:
    """Exact piecewise-linear form of a named target: ``(breakpoints, piece)`` or None.

    Every named target (|x|, ReLU, sign, Heaviside, JumpReLU, TopK gate) is affine between its singular
    points: ``piece(x0)`` returns (α, β) with f(x) = αx + β on the piece containing x0 (x0 not a breakpoint).
    The numbers are binary floats, so f is evaluated *exactly* in ball arithmetic — the basis of the
    certificates. None for targets not known to be piecewise linear (user callables).
    """
    name, params = target.name, target.params
    theta = params.get("theta", params.get("tau"))
    if name == "abs":
        return (0.0,), lambda x0: (1.0, 0.0) if x0 > 0 else (-1.0, 0.0)
    if name == "relu" or (name in ("jumprelu", "topk_gate") and theta == 0.0):
        return (0.0,), lambda x0: (1.0, 0.0) if x0 > 0 else (0.0, 0.0)
    if name == "sign":
        return (0.0,), lambda x0: (0.0, 1.0) if x0 > 0 else (0.0, -1.0)
    if name == "heaviside":
        th = float(theta)
        return (th,), lambda x0: (0.0, 1.0) if x0 > th else (0.0, 0.0)
    if name in ("jumprelu", "topk_gate"):
        th = float(theta)
        return (th,), lambda x0: (1.0, 0.0) if x0 > th else (0.0, 0.0)
    return None


def _as_target(target: Target | str) -> Target:
    if isinstance(target, Target):
        return target
    if isinstance(target, str):
        return get_target(target)
    raise TargetError(f"expected a Target or a target name, got {type(target).__name__}")


# ------------------------------------------------------------------------------------------------ result type
@dataclass
class HighPrecResult:
    """A best rational approximation computed in multiprecision.

    Attributes
    ----------
    target : Target
    type : (m, n)
    domain : Domain
    error : mpf
        The equioscillation level |h| of the final levelled solve — the best error E_{m,n}(f) to the precision
        reported in ``digits``.
    p, q : list of mpf
        r = p/q, ascending monomial coefficients in x, normalised so that max |q_j| = 1. These binary numbers
        *are* the approximant (what :func:`rational_approx.verification.certify.certify` certifies).
    extremal_points : list of mpf
        The final reference: m + n + 2 points (more for |x|, see :func:`abs_minimax`) where f − r alternates.
    extremal_errors : list of mpf
        f − r at them (signed), evaluated from p and q.
    prec : int
        Working precision in bits.
    digits : float
        Correct significant digits of ``error``: −log10 of the largest of |E_prec − E_(prec+64)| / E (a second
        solve at 64 more bits on the final reference), the relative spread of the levels |f − r| at the final
        reference (E lies between the level and the largest of them), and 2^-prec.
    iterations : int
        Remez iterations at the last degree.
    seconds : float
    converged : bool
        True when the levels agreed to the working precision.
    method : str
    """

    target: Target
    type: tuple[int, int]
    domain: Domain
    error: mpmath.mpf
    p: list
    q: list
    extremal_points: list
    extremal_errors: list
    prec: int
    digits: float
    iterations: int
    seconds: float
    converged: bool
    method: str
    notes: list[str] = field(default_factory=list)

    def eval_mp(self, x, dps: int | None = None):
        """r(x) in mpmath arithmetic (scalar or sequence)."""
        with mpmath.workprec(self.prec if dps is None else int(dps * 3.33) + 8):

            def one(t):
                t = mpmath.mpf(t)
                return mpmath.polyval(self.p[::-1], t) / mpmath.polyval(self.q[::-1], t)

            if isinstance(x, list | tuple | np.ndarray):
                return [one(t) for t in x]
            return one(x)

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        """r(x) in float64 (evaluated in the working precision, then rounded)."""
        xs = np.atleast_1d(np.asarray(x, dtype=float))
        out = np.array([float(v) for v in self.eval_mp(xs.tolist())])
        return out.reshape(np.shape(x)) if np.ndim(x) else out[0]

    def to_barycentric(self) -> BarycentricRational:
        """The same r in barycentric form (support points: every other extremal point), float and mp data.

        For r = p/q and support points z_0..z_N (N = max(m, n)): f_j = r(z_j), w_j = q(z_j)/ℓ'(z_j) with
        ℓ(x) = Π(x − z_j) — exact for deg p, deg q ≤ N.
        """
        m, n = self.type
        N = max(m, n)
        pts = sorted(self.extremal_points)
        idx = np.unique(np.round(np.linspace(0, len(pts) - 1, N + 1)).astype(int))
        if idx.size < N + 1:
            raise DegreeError(f"need {N + 1} distinct support points, have {len(pts)} extremal points")
        with mpmath.workprec(self.prec):
            z = [mpmath.mpf(pts[i]) for i in idx]
            fz = self.eval_mp(z)
            w = []
            for j, zj in enumerate(z):
                lp = mpmath.fprod(zj - zi for i, zi in enumerate(z) if i != j)
                w.append(mpmath.polyval(self.q[::-1], zj) / lp)
            scale = max(abs(v) for v in w)
            w = [v / scale for v in w]
        return BarycentricRational(
            np.array([float(v) for v in z]),
            np.array([float(v) for v in fz]),
            np.array([float(v) for v in w]),
            type=self.type,
            mp=(z, fz, w),
        )

    def to_dict(self) -> dict:
        """JSON-ready summary (coefficients as decimal strings that round-trip at ``prec`` bits)."""
        d = max(20, int(self.prec * 0.302) + 3)
        return {
            "target": self.target.name,
            "type": list(self.type),
            "domain": [list(iv) for iv in self.domain.intervals],
            "error": mpmath.nstr(self.error, 25),
            "digits": self.digits,
            "prec_bits": self.prec,
            "p": [mpmath.nstr(c, d) for c in self.p],
            "q": [mpmath.nstr(c, d) for c in self.q],
            "extremal_points": [mpmath.nstr(x, 25) for x in self.extremal_points],
            "iterations": self.iterations,
            "seconds": self.seconds,
            "converged": self.converged,
            "method": self.method,
        }


# --------------------------------------------------------------------------------------------- levelled solve
def _solve_pencil(
    build: Callable[[arb], arb_mat],
    nrows: int,
    qcols: Sequence[int],
    sign: Sequence[int],
    h: arb | None,
    admissible: Callable[[list], bool],
) -> tuple[list, arb]:
    """Solve M(h) v = 0 for the admissible eigenvalue h of the affine pencil M(h) = build(h).

    With ``h`` None, or when Newton from ``h`` lands on an inadmissible eigenvalue, all eigenvalues are
    computed (M(0)⁻¹B has eigenvalues −1/h) and the admissible one of least |h| is taken. Returns (v, h) with
    v normalised by v[qcols[0]] = 1.
    """
    n = nrows

    def null_vector(hh: arb) -> list:
        M = build(hh)
        c0 = qcols[0]
        cols = [c for c in range(n) if c != c0]
        A = arb_mat(n - 1, n - 1)
        b = arb_mat(n - 1, 1)
        for i in range(n - 1):  # drop the last equation: it holds automatically at an eigenvalue
            b[i, 0] = -M[i, c0]
            for jj, c in enumerate(cols):
                A[i, jj] = M[i, c]
        x = A.solve(b, algorithm="approx")
        v = [_exact(x[jj, 0]) for jj in range(n - 1)]
        v.insert(c0, arb(1))
        return v

    def newton(hh: arb) -> arb:
        M1 = build(arb(1))
        M0 = build(arb(0))
        Bq = arb_mat(n, len(qcols))
        for i in range(n):
            for jj, c in enumerate(qcols):
                Bq[i, jj] = M1[i, c] - M0[i, c]
        for _ in range(40):
            try:
                X = build(hh).solve(Bq, algorithm="approx")
            except ZeroDivisionError:  # exactly singular: hh is the eigenvalue to working precision
                break
            tr = sum((X[c, jj] for jj, c in enumerate(qcols)), arb(0))
            dh = _exact(1 / tr)
            hh = _exact(hh - dh)
            if abs(float(dh)) <= abs(float(hh)) * 2.0 ** (-ctx.prec + 24):
                break
        return hh

    def by_eigenvalues() -> arb:
        M0 = build(arb(0))
        B = build(arb(1)) - M0
        C = M0.solve(B, algorithm="approx")
        E = acb_mat(C).eig(algorithm="approx")
        cands = []
        for mu in E:
            m = complex(mu.mid())
            if m == 0 or abs(m.imag) > 1e-10 * abs(m):
                continue
            cands.append(-1.0 / m.real)
        for hc in sorted(cands, key=abs):
            hh = newton(arb(hc))
            try:
                v = null_vector(hh)
            except ZeroDivisionError:
                continue
            if admissible(v):
                return hh
        raise ConvergenceError(
            "no levelled solution with a denominator free of sign changes; the reference points "
            "are too far from an alternation set (start from a better approximant)"
        )

    if h is not None:
        try:
            hh = newton(h)
            v = null_vector(hh)
            if admissible(v):
                return v, hh
        except ZeroDivisionError:
            pass
    hh = by_eigenvalues()
    return null_vector(hh), hh


# ----------------------------------------------------------------------------------------------- √t on [0, 1]
@dataclass
class _SqrtState:
    """Barycentric best approximant of √t on [0, 1] of type (k, k) and its reference (exact arb points)."""

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

    v, h = _solve_pencil(build, n, list(range(k + 1, 2 * k + 2)), s, h, admissible)
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


def _sqrt_remez(ts: list, k: int, h: arb | None, maxiter: int = 40) -> _SqrtState:
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
                mid = _exact((lo * hi).sqrt()) if lo > 0 else _exact(hi / 1024)
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
                t = _exact(u.exp())
                res = _bary_eval(z, al, be, t, derivs=True)
                if res is None:
                    break
                _, r1, r2 = res
                st = t.sqrt()
                e1 = 1 / (2 * st) - r1
                e2 = -1 / (4 * st * t) - r2
                du = _exact(-(e1) / (e1 + t * e2))
                if not ua < float(u + du) < ub:
                    break
                u = u + du
                if abs(float(du)) < tol:
                    break
            new.append(_exact(u.exp()))
        new.append(ts[-1])
        ts = new
        errs = [mpf_from_arb(abs(err(t))) for t in ts]  # exact comparisons: floats would tie at 1e-16
        spread = float((max(errs) - min(errs)) / max(errs))
        if spread < 2.0 ** (-ctx.prec / 2):
            z, al, be, h = _sqrt_levelled(ts, k, h)
            return _SqrtState(k, ts, z, al, be, h, it, spread)
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


def abs_precision_bits(k: int) -> int:
    """Working precision (bits) used for √t of type (k, k), i.e. |x| of type (2k, 2k): 8k + 200."""
    return 8 * k + 200


def _abs_result(state: _SqrtState, n: int, prec: int, digits: float, seconds: float) -> HighPrecResult:
    """Turn the √t solution into |x|'s approximant R(x²) with monomial coefficients in x."""
    k = state.k
    work = max(
        4 * prec, 1024
    )  # the expansion ℓ·N in monomials cancels heavily; arb tracks it, we take midpoints
    with _prec(work):
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
    with _prec(prec):
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


class _prec:
    """Context manager setting flint's working precision (bits)."""

    def __init__(self, bits: int):
        self.bits = int(bits)

    def __enter__(self):
        self.old = ctx.prec
        ctx.prec = self.bits

    def __exit__(self, *exc):
        ctx.prec = self.old


def _sqrt_sweep(
    k_max: int, *, check_bits: int, callback: Callable[[int, _SqrtState, float, float], None] | None
):
    """Continuation k = 1 … k_max; yields (state, prec, digits, seconds) per k."""
    ts = [arb(0), arb(0.03), arb(0.4), arb(1)]  # crude reference for k = 1; the Remez iteration fixes it
    hist: list[arb] = []
    state = None
    for k in range(1, k_max + 1):
        t0 = time.perf_counter()
        prec = abs_precision_bits(k)
        with _prec(prec):
            if k > 1:
                u = np.array([float(t.log()) for t in state.ts[1:-1]])
                ts = [arb(0)] + [_exact(arb(math.exp(v))) for v in _extrapolate_log(u, 2 * k)] + [arb(1)]
            h = hist[-1] * hist[-1] / hist[-2] if k >= 3 else None
            state = _sqrt_remez(ts, k, h)
            hist.append(state.h)
        diff = 0.0
        if check_bits:
            with _prec(prec + check_bits):
                _, _, _, h2 = _sqrt_levelled(state.ts, k, state.h)
                diff = abs(float((h2 - state.h) / h2))
        # E lies between the level h and the largest error at the reference (de la Vallée Poussin), so the
        # spread of the levels caps the accuracy as much as the working precision does.
        digits = -math.log10(max(diff, state.spread, 2.0**-prec))
        secs = time.perf_counter() - t0
        if callback is not None:
            callback(k, state, digits, secs)
        yield state, prec, digits, secs


def abs_minimax(n: int, *, check_bits: int = 64) -> HighPrecResult:
    """Best type-(n, n) approximation of |x| on [−1, 1] in multiprecision, via (2) and continuation in n.

    Parameters
    ----------
    n : int ≥ 1
        Odd n gives the even type-(n−1, n−1) approximant (E_{n,n} = E_{n−1,n−1}).
    check_bits : int
        Extra bits for the re-solve that estimates the correct digits of the error (0 to skip).

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
    *_, (state, prec, digits, _) = _sqrt_sweep(int(n) // 2, check_bits=check_bits, callback=None)
    return _abs_result(state, int(n), prec, digits, time.perf_counter() - t0)


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
    for state, prec, digits, secs in _sqrt_sweep(int(n_max) // 2, check_bits=check_bits, callback=None):
        res = _abs_result(state, 2 * state.k, prec, digits, secs)
        res.notes.append(f"cumulative time {time.perf_counter() - t_start:.1f} s")
        out.append(res)
        if callback is not None:
            callback(res)
    return out


def relu_minimax(k: int, *, check_bits: int = 64) -> HighPrecResult:
    """Best type-(2k+1, 2k) approximant of ReLU on [−1, 1]: (x + R(x²))/2, R from :func:`abs_minimax` (2k).

    Error E_{2k,2k}(|x|)/2; the 4k + 3 alternation points of |x| are alternation points of ReLU − r too.
    """
    if not isinstance(k, int | np.integer) or k < 1:
        raise DegreeError(f"k must be a positive integer, got {k!r}")
    a = abs_minimax(2 * int(k), check_bits=check_bits)
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


# -------------------------------------------------------------------------------------------- general targets
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

    with _prec(prec), mpmath.workprec(mpprec):
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

            v, h = _solve_pencil(build, npts, list(range(m + 1, m + n + 2)), sg, h, admissible)
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
                xg = _golden_max(lambda x, sgn=sgn: sgn * err(x), arb_from_mpf(lo), arb_from_mpf(hi))
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
            pts = _alternating_subset(refined, npts)
            if pts is None:
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
        p_mono, q_mono = _cheb_to_monomial(coeffs[: m + 1], a, b), _cheb_to_monomial(coeffs[m + 1 :], a, b)
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


def _cheb_to_monomial(c: list, a: arb, b: arb) -> list:
    """Monomial coefficients in x of Σ c_j T_j((2x − a − b)/(b − a)), in ball arithmetic."""
    s = arb_poly([-(a + b) / (b - a), 2 / (b - a)])
    T0, T1 = arb_poly([1]), s
    out = arb_poly([0]) + T0 * c[0]
    if len(c) > 1:
        out = out + T1 * c[1]
    for j in range(2, len(c)):
        T0, T1 = T1, 2 * s * T1 - T0
        out = out + T1 * c[j]
    coeffs = out.coeffs()
    return coeffs + [arb(0)] * (len(c) - len(coeffs))


def _local_extrema(x: np.ndarray, e: np.ndarray, fixed: set) -> list[int]:
    """Indices of local extrema of |e| on a sorted grid (end points and fixed points always included)."""
    idx = [0, x.size - 1]
    ae = np.abs(e)
    for i in range(1, x.size - 1):
        if x[i] in fixed or (ae[i] >= ae[i - 1] and ae[i] >= ae[i + 1] and e[i] != 0):
            idx.append(i)
    return sorted(set(idx))


def _golden_max(g: Callable[[arb], arb], lo: arb, hi: arb, iters: int = 80) -> arb:
    """Golden-section search for the maximum of g on [lo, hi] (unimodal near a Remez extremum)."""
    invphi = arb((math.sqrt(5) - 1) / 2)
    c, d = hi - invphi * (hi - lo), lo + invphi * (hi - lo)
    gc, gd = g(_exact(c)), g(_exact(d))
    for _ in range(iters):
        if float(gc - gd) > 0:  # compare the difference: float(gc), float(gd) alone lose the last digits
            hi, d, gd = d, c, gc
            c = hi - invphi * (hi - lo)
            gc = g(_exact(c))
        else:
            lo, c, gc = c, d, gd
            d = lo + invphi * (hi - lo)
            gd = g(_exact(d))
    return _exact(c if float(gc - gd) > 0 else d)


def _alternating_subset(points: list, npts: int) -> list | None:
    """(x, e) extrema sorted by x: merge same-sign runs (keep the largest |e|), trim to npts alternating."""
    merged: list = []
    for x, e in points:
        if float(e) == 0:
            continue
        if merged and (float(merged[-1][1]) > 0) == (float(e) > 0):
            if float(abs(e) - abs(merged[-1][1])) > 0:  # compare in the working precision, not in float
                merged[-1] = (x, e)
        else:
            merged.append((x, e))
    if len(merged) < npts:
        return None
    while len(merged) > npts:  # drop the smaller end; the sequence still alternates
        if float(abs(merged[0][1]) - abs(merged[-1][1])) < 0:
            merged.pop(0)
        else:
            merged.pop()
    return merged
