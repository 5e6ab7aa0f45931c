"""Multiprecision Remez: the result type and the levelled-system kernel shared by the solvers.

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

The two solvers built on this kernel: :mod:`rational_approx.fitting.highprec` (|x| and ReLU on [−1, 1] via √t,
barycentric basis) and :mod:`rational_approx.fitting.refine` (any target with an mpmath evaluation, restarted from a
double-precision minimax result).

Arithmetic: python-flint's ``arb`` is used for speed (its linear algebra and eigenvalue routines run in C);
all quantities here are *midpoints* — this module computes, it does not certify. Rigorous bounds are the job
of :mod:`rational_approx.verification.certify`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import mpmath
import numpy as np
from flint import acb_mat, arb, arb_mat, ctx

from rational_approx.errors import ConvergenceError, DegreeError
from rational_approx.representation.barycentric import BarycentricRational
from rational_approx.representation.domain import Domain
from rational_approx.representation.multiprecision import exact_mid
from rational_approx.representation.targets import Target

__all__ = ["HighPrecResult", "solve_pencil"]


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
def solve_pencil(
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
        v = [exact_mid(x[jj, 0]) for jj in range(n - 1)]
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
            dh = exact_mid(1 / tr)
            hh = exact_mid(hh - dh)
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

