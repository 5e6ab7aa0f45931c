"""The barycentric rational type: the one representation every algorithm here produces.

A rational function in barycentric form is

    r(x) = N(x) / D(x),   N(x) = Σ_k w_k f_k / (x − z_k),   D(x) = Σ_k w_k / (x − z_k),

with support points z_k, values f_k and weights w_k (k = 0..N). With all w_k ≠ 0, r(z_k) = f_k, and r has type at most
(N, N). Away from the support points, evaluation in this form is numerically stable even when the support points cluster
exponentially (as they must near the kink of |x|), which is why it is the source of truth; monomial and Chebyshev
coefficients are derived on demand and carry a measured conversion error.

Poles and zeros are eigenvalues of (N+2)×(N+2) arrowhead pencils (Klein 2012; Nakatsukasa, Sète, Trefethen 2018):

    poles: eig([[0, wᵀ], [1, diag(z)]], diag(0, 1, …, 1)),   zeros: the same with w replaced by w·f.

References: Berrut & Trefethen, "Barycentric Lagrange interpolation", SIAM Review 46 (2004);
Nakatsukasa, Sète & Trefethen, "The AAA algorithm for rational approximation", SISC 40 (2018).

Example
-------
>>> import numpy as np
>>> r = BarycentricRational(z=[-1.0, 0.0, 1.0], f=[1.0, 0.0, 1.0], w=[1.0, -2.0, 1.0])  # interpolates x²
>>> float(r(0.5))
0.25
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import mpmath
import numpy as np
import scipy.linalg

from rational_approx.errors import DegreeError, IllConditionedWarning, RationalApproxError

__all__ = ["BarycentricRational", "PolyQuotient", "parse_type", "barycentric_mp"]


def parse_type(type: int | str | Sequence[int]) -> tuple[int, int]:
    """The type (m, n) of a rational p/q, deg p ≤ m, deg q ≤ n: the one parser and validator of the package.

    Accepts an integer n (meaning (n, n)), a pair (m, n) of integers, or the command-line text ``"m,n"`` / ``"n"``.
    Both degrees must be integers ≥ 0 (bool and float are refused, also 2.0: a degree is a count); (0, 0), the best
    constant, is a valid type.

    Raises
    ------
    DegreeError
        with one line saying what was given and what is expected.

    Example
    -------
    >>> parse_type(4), parse_type((3, 2)), parse_type("9,8")
    ((4, 4), (3, 2), (9, 8))
    """
    expected = "type must be (m, n) or n (for (n, n)) with integers m, n ≥ 0 (command line: --type m,n)"
    if isinstance(type, str):
        try:
            pair: tuple = tuple(int(v) for v in type.split(","))
        except ValueError as exc:
            raise DegreeError(f"{expected}, got {type!r}") from exc
    elif isinstance(type, int | np.integer) and not isinstance(type, bool):
        pair = (type, type)
    else:
        try:
            pair = tuple(type)  # type: ignore[arg-type]
        except TypeError as exc:
            raise DegreeError(f"{expected}, got {type!r}") from exc
    if len(pair) == 1:
        pair = pair * 2
    if len(pair) != 2 or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in pair):
        raise DegreeError(f"{expected}, got {type!r}")
    m, n = (int(v) for v in pair)
    if m < 0 or n < 0:
        raise DegreeError(f"{expected}, got ({m}, {n})")
    return m, n


class PolyQuotient(NamedTuple):
    """r = p / q as coefficient arrays.

    Attributes
    ----------
    p, q : ndarray
        Ascending coefficients (p[i] multiplies the i-th basis function).
    basis : str
        ``"monomial"`` (in x) or ``"chebyshev"`` (T_i of the variable mapped from ``interval`` to [−1, 1]).
    interval : tuple
        The interval [a, b] used for the Chebyshev map and for measuring ``conversion_error``.
    conversion_error : float
        max |p/q − r| over a dense sample of the interval, relative to max |r| there — measured, not estimated.
    """

    p: np.ndarray
    q: np.ndarray
    basis: str
    interval: tuple[float, float]
    conversion_error: float

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if self.basis == "monomial":
            return np.polynomial.polynomial.polyval(x, self.p) / np.polynomial.polynomial.polyval(x, self.q)
        a, b = self.interval
        s = (2.0 * x - (a + b)) / (b - a)
        return np.polynomial.chebyshev.chebval(s, self.p) / np.polynomial.chebyshev.chebval(s, self.q)


def barycentric_mp(z: Sequence, f: Sequence, w: Sequence, t: Any) -> mpmath.mpf:
    """r(t) = Σ w_k f_k/(t − z_k) / Σ w_k/(t − z_k) in mpmath at the current precision (r(z_k) = f_k exactly)."""
    t = mpmath.mpmathify(t)
    num = den = mpmath.mpf(0)
    for zk, fk, wk in zip(z, f, w, strict=True):
        if t == zk:
            return +fk
        c = wk / (t - zk)
        num += c * fk
        den += c
    return num / den


class BarycentricRational:
    """A rational function r = N/D in barycentric form.

    Parameters
    ----------
    z, f, w : array_like, shape (N+1,)
        Support points (distinct), values and weights. Real or complex.
    type : (m, n), optional
        Declared type, when the algorithm that produced r guarantees deg N ≤ m, deg D ≤ n. Defaults to (N, N).
    mp : (z, f, w) of mpmath numbers, optional
        The same data at higher precision (from a high-precision refinement). :meth:`eval_mp` uses it when present,
        else the float64 data taken as exact binary numbers.
    """

    def __init__(
        self,
        z: Sequence | np.ndarray,
        f: Sequence | np.ndarray,
        w: Sequence | np.ndarray,
        *,
        type: tuple[int, int] | None = None,
        mp: tuple[Sequence, Sequence, Sequence] | None = None,
    ):
        z, f, w = (np.atleast_1d(np.asarray(v)) for v in (z, f, w))
        if not (z.ndim == f.ndim == w.ndim == 1 and z.shape == f.shape == w.shape) or z.size == 0:
            raise RationalApproxError(
                f"z, f, w must be non-empty 1-D arrays of equal length, got shapes {z.shape}, {f.shape}, {w.shape}"
            )
        for name, v in (("z", z), ("f", f), ("w", w)):
            if not np.all(np.isfinite(v)):
                raise RationalApproxError(f"barycentric {name} contains non-finite entries")
        if np.unique(z).size != z.size:
            raise RationalApproxError("support points z must be distinct")
        self.z, self.f, self.w = z, f, w
        N = z.size - 1
        self.type = parse_type((N, N) if type is None else type)
        self.mp = mp

    # ------------------------------------------------------------------ evaluation
    def __call__(self, x: np.ndarray | float | complex) -> np.ndarray:
        """Evaluate r(x), vectorised over any array shape; exact at support points."""
        x = np.asarray(x)
        scalar = x.ndim == 0
        xv = np.atleast_1d(x).ravel()
        dtype = np.result_type(xv.dtype, self.z.dtype, self.f.dtype, self.w.dtype, np.float64)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # inf at a pole is the value; callers check
            C = 1.0 / (xv[:, None] - self.z[None, :])
            r = (C @ (self.w * self.f)) / (C @ self.w)
        r = r.astype(dtype, copy=False)
        hit_x, hit_k = np.nonzero(xv[:, None] == self.z[None, :])
        r[hit_x] = self.f[hit_k]
        r = r.reshape(np.shape(x)) if not scalar else r[0]
        return r

    def numerator(self, x: np.ndarray) -> np.ndarray:
        """N(x) = Σ w_k f_k/(x − z_k) (not at support points)."""
        x = np.asarray(x)
        return (1.0 / (x[..., None] - self.z)) @ (self.w * self.f)

    def denominator(self, x: np.ndarray) -> np.ndarray:
        """D(x) = Σ w_k/(x − z_k) (not at support points)."""
        x = np.asarray(x)
        return (1.0 / (x[..., None] - self.z)) @ self.w

    def eval_mp(self, x, dps: int | None = None):
        """Evaluate r at x (scalar or sequence) in mpmath arithmetic, at ``dps`` decimal digits (default: current)."""
        z, f, w = self.mp if self.mp is not None else (
            [mpmath.mpmathify(v) for v in arr.tolist()] for arr in (self.z, self.f, self.w)
        )
        z, f, w = list(z), list(f), list(w)
        with mpmath.workdps(dps if dps is not None else mpmath.mp.dps):
            if isinstance(x, list | tuple | np.ndarray):
                return [barycentric_mp(z, f, w, t) for t in x]
            return barycentric_mp(z, f, w, x)

    # ------------------------------------------------------------------ poles, zeros, residues
    def _arrowhead_eig(self, top: np.ndarray) -> np.ndarray:
        n = self.z.size
        E = np.zeros((n + 1, n + 1), dtype=np.result_type(top, self.z, float))
        E[0, 1:] = top
        E[1:, 0] = 1.0
        E[1:, 1:] = np.diag(self.z)
        B = np.eye(n + 1)
        B[0, 0] = 0.0
        ev = scipy.linalg.eigvals(E, B)
        ev = ev[np.isfinite(ev)]
        # Spurious huge eigenvalues come from degree deficiency (type below (N, N)).
        scale = max(1.0, float(np.max(np.abs(self.z))))
        return np.sort_complex(ev[np.abs(ev) < 1e13 * scale])

    def poles(self) -> np.ndarray:
        """The finite poles of r (complex array, sorted): at most n for declared type (m, n).

        The pencil has N = max(m, n) finite eigenvalues; when n < N the denominator ℓ·D has degree ≤ n and the other
        N − n eigenvalues belong to the infinite ones, perturbed by rounding — they are dropped (the n of smallest
        modulus are kept). A polynomial type (m, 0) has no poles.
        """
        return self._keep_finite(self._arrowhead_eig(self.w), self.type[1])

    def zeros(self) -> np.ndarray:
        """The finite zeros of r (complex array, sorted): at most m for declared type (m, n), as for :meth:`poles`."""
        return self._keep_finite(self._arrowhead_eig(self.w * self.f), self.type[0])

    @staticmethod
    def _keep_finite(ev: np.ndarray, degree: int) -> np.ndarray:
        if ev.size <= degree:
            return ev
        keep = np.sort(np.argsort(np.abs(ev), kind="stable")[:degree])
        return ev[keep]

    def residues(self, poles: np.ndarray | None = None) -> np.ndarray:
        """Residues N(p)/D'(p) at the given (default: all) poles."""
        p = self.poles() if poles is None else np.asarray(poles)
        C = 1.0 / (p[:, None] - self.z[None, :])
        return (C @ (self.w * self.f)) / (-(C**2) @ self.w)

    def real_poles_in(self, intervals: Sequence[tuple[float, float]], tol: float = 1e-10) -> np.ndarray:
        """Poles with |Im p| ≤ tol·|p| (relative: the genuine poles of a |x| approximant at ±i·1e-12 are not real)
        lying inside any of the closed intervals."""
        p = self.poles()
        real = p[np.abs(p.imag) <= tol * np.maximum(np.abs(p), 1e-300)].real
        inside = np.zeros(real.shape, dtype=bool)
        for a, b in intervals:
            inside |= (real >= a) & (real <= b)
        return np.sort(real[inside])

    # ------------------------------------------------------------------ coefficient conversions
    def _pq_on_chebyshev_points(self, a: float, b: float, K: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Values of p = ℓ·N and q = ℓ·D at K Chebyshev extreme points of [a, b], ℓ(s) = Π (s − s_j) in s-space."""
        s = np.cos(np.pi * np.arange(K) / (K - 1))[::-1]
        zs = (2.0 * self.z - (a + b)) / (b - a)
        diff = s[:, None] - zs[None, :]
        # Π_{j≠k} (s − s_j), computed with the k-th factor left out (no division, so exact hits are harmless).
        n = zs.size
        prod_excl = np.empty((K, n), dtype=diff.dtype)
        left = np.ones((K,), dtype=diff.dtype)
        for k in range(n):
            prod_excl[:, k] = left
            left = left * diff[:, k]
        right = np.ones((K,), dtype=diff.dtype)
        for k in range(n - 1, -1, -1):
            prod_excl[:, k] *= right
            right = right * diff[:, k]
        return s, prod_excl @ (self.w * self.f), prod_excl @ self.w

    def _coefficients(self, basis: str, interval: tuple[float, float] | None, tol: float) -> PolyQuotient:
        a, b = interval if interval is not None else (float(np.min(self.z.real)), float(np.max(self.z.real)))
        if not a < b:
            raise RationalApproxError(f"coefficient interval must satisfy a < b, got [{a}, {b}]")
        N = self.z.size - 1
        m, n = self.type
        K = 2 * N + 3
        s, pv, qv = self._pq_on_chebyshev_points(a, b, K)
        cheb = np.polynomial.chebyshev
        pc = cheb.chebfit(s, pv, N)[: m + 1]
        qc = cheb.chebfit(s, qv, N)[: n + 1]
        if basis == "chebyshev":
            p, q = pc, qc
        else:
            # s = αx + β; compose the Chebyshev series with the affine map, in the monomial basis.
            alpha, beta = 2.0 / (b - a), -(a + b) / (b - a)
            affine = np.polynomial.Polynomial([beta, alpha])
            p = cheb.Chebyshev(pc)(affine).coef if m > 0 else pc.copy()
            q = cheb.Chebyshev(qc)(affine).coef if n > 0 else qc.copy()
            p = np.pad(p, (0, m + 1 - p.size))[: m + 1]
            q = np.pad(q, (0, n + 1 - q.size))[: n + 1]
        # Normalise the denominator: q(0) = 1 in x when that is well defined, else max |q| = 1.
        if basis == "monomial":
            q0 = q[0]
        else:
            q0 = cheb.chebval(-(a + b) / (b - a), q)
        if abs(q0) > 1e-8 * np.max(np.abs(q)):
            p, q = p / q0, q / q0
        else:
            c = np.max(np.abs(q))
            p, q = p / c, q / c
        out = PolyQuotient(np.real_if_close(p), np.real_if_close(q), basis, (a, b), 0.0)
        x = np.linspace(a, b, 2001)
        x = np.concatenate([x, np.clip(self.z.real, a, b)])
        ref = self(x)
        err = float(np.max(np.abs(out(x) - ref)) / max(np.max(np.abs(ref)), 1e-300))
        out = out._replace(conversion_error=err)
        if err > tol:
            warnings.warn(
                f"{basis} coefficients of this type-{self.type} rational reproduce it only to relative error {err:.1e} "
                f"on [{a:g}, {b:g}]; keep the barycentric form for accurate work",
                IllConditionedWarning,
                stacklevel=3,
            )
        return out

    def to_monomial(self, interval: tuple[float, float] | None = None, *, tol: float = 1e-8) -> PolyQuotient:
        """p, q in the monomial basis of x (ascending), q(0) = 1 where possible; warns if ill-conditioned."""
        return self._coefficients("monomial", interval, tol)

    def to_chebyshev(self, interval: tuple[float, float] | None = None, *, tol: float = 1e-8) -> PolyQuotient:
        """p, q in the Chebyshev basis of [a, b] (default: the hull of the support points)."""
        return self._coefficients("chebyshev", interval, tol)

    # ------------------------------------------------------------------ misc
    def __repr__(self) -> str:
        return f"BarycentricRational(type={self.type}, support points={self.z.size})"

    def to_dict(self) -> dict:
        """JSON-ready description of the barycentric data (real parts only when the data are real)."""

        def enc(v: np.ndarray) -> list:
            return v.real.tolist() if not np.iscomplexobj(v) else [[c.real, c.imag] for c in v.tolist()]

        return {"type": list(self.type), "support": enc(self.z), "values": enc(self.f), "weights": enc(self.w)}
