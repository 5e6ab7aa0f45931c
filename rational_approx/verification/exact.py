"""Exact rationals for certificates: every approximant turned into ball polynomials p, q.

**Which r is certified.** Every input is first turned into polynomials p, q with ball coefficients that
contain the exact coefficients of the input:

* :class:`~rational_approx.fitting.highprec.HighPrecResult`, ``(p, q)`` coefficient pairs, monomial
  :class:`~rational_approx.representation.barycentric.PolyQuotient`: the binary numbers as given (floats and mpf are
  exact);
* :class:`~rational_approx.representation.barycentric.BarycentricRational` (or a MinimaxResult's ``r``): the float64
support
  points, values and weights taken as exact binary numbers, expanded exactly as p = ℓ·N, q = ℓ·D with
  ℓ(x) = Π_k (x − z_k) (so p/q *is* the barycentric function, support points included);
* Chebyshev PolyQuotient: converted to monomials in ball arithmetic.

For :func:`certify` (two-sided bracket of E_{m,n}) the rational must lie in R_{m,n}; a barycentric input with
max(m, n) + 1 support points is truncated to degrees (m, n) and its coefficient midpoints are taken as exact —
that truncated r̃ is then the certified rational, listed in ``Certificate.rational``.

Example
-------
>>> from rational_approx.verification.exact import exact_rational
>>> R = exact_rational(([0.5, 0.0, 1.0], [1.0, 0.25]))
>>> R.type, R.is_exact
((2, 1), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from flint import arb, arb_poly

from rational_approx.errors import DegreeError, RationalApproxError, TargetError
from rational_approx.fitting.mp_remez import HighPrecResult
from rational_approx.representation.barycentric import BarycentricRational, PolyQuotient, parse_type
from rational_approx.representation.domain import Domain
from rational_approx.representation.multiprecision import (
    abs_down,
    abs_up,
    arb_from_mpf,
    cheb_to_monomial,
    exact_number,
    working_precision,
)
from rational_approx.representation.targets import Target, get_target, piecewise_linear_form

__all__ = ["ExactRational", "exact_rational", "exact_target", "domain_pieces"]


@dataclass(frozen=True)
class ExactRational:
    """r = p/q with ball coefficients (ascending monomials in x) containing the exact input coefficients.

    Attributes
    ----------
    p, q : tuple of arb
        Exact (radius 0) for binary-number inputs; tiny balls for expanded barycentric data.
    type : (m, n)
    source : str
        What the coefficients came from.
    notes : tuple of str
    """

    p: tuple
    q: tuple
    type: tuple[int, int]
    source: str
    notes: tuple = ()

    @property
    def is_exact(self) -> bool:
        return all(c.is_exact() for c in self.p + self.q)

    def polys(self) -> tuple[arb_poly, arb_poly]:
        return arb_poly(list(self.p)), arb_poly(list(self.q))

    def degrees(self) -> tuple[int, int]:
        """Upper bounds of deg p and deg q: the last coefficient that is not exactly zero."""

        def deg(c: tuple) -> int:
            for j in range(len(c) - 1, -1, -1):
                if not (c[j].is_exact() and c[j].is_zero()):
                    return j
            return -1

        return deg(self.p), deg(self.q)

    def to_dict(self) -> dict:
        """Coefficients as strings: exact ``"m*2^e"`` forms for exact numbers, decimal balls otherwise."""

        def enc(c: arb) -> str:
            if c.is_exact():
                man, exp = c.man_exp()
                return f"{int(man)}*2^{int(exp)}"
            return c.str(30, radius=True)

        return {
            "p": [enc(c) for c in self.p],
            "q": [enc(c) for c in self.q],
            "type": list(self.type),
            "source": self.source,
            "exact": self.is_exact,
        }

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        """float64 evaluation of the midpoints (Horner), for sampling only."""
        pm = np.array([float(c.mid()) for c in self.p])
        qm = np.array([float(c.mid()) for c in self.q])
        x = np.asarray(x, dtype=float)
        return np.polynomial.polynomial.polyval(x, pm) / np.polynomial.polynomial.polyval(x, qm)


def _barycentric_pq(r: BarycentricRational) -> tuple[list, list]:
    """Exact expansion p = Σ w_k f_k Π_{j≠k}(x − z_j), q = Σ w_k Π_{j≠k}(x − z_j) in ball arithmetic."""
    if np.iscomplexobj(r.z) or np.iscomplexobj(r.f) or np.iscomplexobj(r.w):
        raise RationalApproxError("certificates need a real rational: complex barycentric data given")
    if r.mp is not None:
        z, f, w = ([arb_from_mpf(v) for v in arr] for arr in r.mp)
    else:
        z, f, w = ([arb_from_mpf(float(v)) for v in arr] for arr in (r.z, r.f, r.w))
    P = arb_poly([0])
    Q = arb_poly([0])
    for k in range(len(z)):
        lk = arb_poly([1])
        for j, zj in enumerate(z):
            if j != k:
                lk = lk * arb_poly([-zj, 1])
        P = P + lk * (w[k] * f[k])
        Q = Q + lk * w[k]
    N = len(z) - 1
    pc = P.coeffs() + [arb(0)] * (N + 1 - len(P.coeffs()))
    qc = Q.coeffs() + [arb(0)] * (N + 1 - len(Q.coeffs()))
    return pc, qc


def exact_rational(
    r: Any, type: tuple[int, int] | None = None, *, truncate: bool = False, prec: int = 512
) -> ExactRational:
    """Turn an approximant into an :class:`ExactRational` (see the module notes for what is taken as exact).

    Parameters
    ----------
    r : HighPrecResult, MinimaxResult, BarycentricRational, PolyQuotient, ExactRational or (p, q) sequences of
        numbers (float, int, mpf or decimal strings; ascending monomial coefficients in x).
    type : (m, n), optional
        Declared type; default the input's own.
    truncate : bool
        Keep only degrees ≤ (m, n), taking the kept coefficients' midpoints as exact (the certified r̃ of
        :func:`certify`); the dropped part is reported in ``notes``. Without it, a representation of higher
        degree than ``type`` raises :class:`DegreeError`.
    prec : int
        Bits for the expansion of barycentric data (raised to 64·(N + 2) when needed for exactness).
    """
    notes: list[str] = []
    if isinstance(r, ExactRational):
        p, q, typ, src = list(r.p), list(r.q), r.type, r.source
    elif isinstance(r, HighPrecResult):
        p = [arb_from_mpf(c) for c in r.p]
        q = [arb_from_mpf(c) for c in r.q]
        typ, src = r.type, f"HighPrecResult ({r.method}, {r.prec} bits)"
    elif hasattr(r, "r") and isinstance(r.r, BarycentricRational):  # MinimaxResult
        return exact_rational(r.r, type or tuple(r.type), truncate=truncate, prec=prec)
    elif isinstance(r, BarycentricRational):
        with working_precision(max(prec, 64 * (r.z.size + 2))):
            p, q = _barycentric_pq(r)
        typ = r.type
        src = (
            "BarycentricRational (float64 data taken as exact"
            + (", mp data" if r.mp is not None else "")
            + ")"
        )
    elif isinstance(r, PolyQuotient):
        if r.basis == "monomial":
            p = [arb_from_mpf(float(c)) for c in np.real(r.p)]
            q = [arb_from_mpf(float(c)) for c in np.real(r.q)]
        else:
            with working_precision(prec):
                a, b = arb_from_mpf(r.interval[0]), arb_from_mpf(r.interval[1])
                p = cheb_to_monomial([arb_from_mpf(float(c)) for c in np.real(r.p)], a, b)
                q = cheb_to_monomial([arb_from_mpf(float(c)) for c in np.real(r.q)], a, b)
        typ, src = (len(r.p) - 1, len(r.q) - 1), f"PolyQuotient ({r.basis})"
    elif isinstance(r, tuple | list) and len(r) == 2:
        p = [exact_number(c) for c in r[0]]
        q = [exact_number(c) for c in r[1]]
        typ, src = (len(p) - 1, len(q) - 1), "coefficients (p, q)"
    else:
        raise RationalApproxError(
            f"cannot certify an object of type {type(r).__name__}; pass a HighPrecResult, "
            f"MinimaxResult, BarycentricRational, PolyQuotient or (p, q) coefficient lists"
        )
    m, n = parse_type(type if type is not None else typ)
    p = p + [arb(0)] * (m + 1 - len(p))
    q = q + [arb(0)] * (n + 1 - len(q))
    extra_p, extra_q = p[m + 1 :], q[n + 1 :]
    nonzero = [c for c in extra_p + extra_q if not (c.is_exact() and c.is_zero())]
    if nonzero:
        if not truncate:
            raise DegreeError(
                f"the rational has coefficients beyond type {(m, n)} (degrees {len(p) - 1}, "
                f"{len(q) - 1}); pass truncate=True to certify its type-{(m, n)} truncation"
            )
        big = max(abs_up(c) for c in nonzero)
        scale = max(abs_down(c) for c in p[: m + 1] + q[: n + 1])
        notes.append(
            f"truncated to type {(m, n)}: dropped coefficients up to {big:.2e} (largest kept {scale:.2e})"
        )
        p = [c.mid() for c in p[: m + 1]]
        q = [c.mid() for c in q[: n + 1]]
    elif truncate and not all(c.is_exact() for c in p + q):
        notes.append("ball coefficients replaced by their midpoints (the certified r̃)")
        p = [c.mid() for c in p[: m + 1]]
        q = [c.mid() for c in q[: n + 1]]
    else:
        p, q = p[: m + 1], q[: n + 1]
    return ExactRational(tuple(p), tuple(q), (int(m), int(n)), src, tuple(notes))


def exact_target(target: Target | str, domain: Domain | None) -> tuple[Target, Domain, tuple, Any]:
    """(target, domain, breakpoints, piece) for a named piecewise-linear target (:func:`piecewise_linear_form`)."""
    tgt = target if isinstance(target, Target) else get_target(target)
    form = piecewise_linear_form(tgt)
    if form is None:
        raise TargetError(
            f"target {tgt.name!r} has no exact ball-arithmetic form; certificates cover the named "
            f"piecewise-linear targets (abs, relu, sign, heaviside, jumprelu, topk_gate)"
        )
    dom = domain if domain is not None else tgt.default_domain()
    tgt.check_domain(dom)
    breaks, piece = form
    return tgt, dom, breaks, piece


def domain_pieces(dom: Domain, breaks: tuple) -> list[tuple[float, float]]:
    """The intervals of ``dom`` cut at the breakpoints: f is affine on each."""
    out = []
    for a, b in dom.intervals:
        cuts = [a] + sorted(c for c in breaks if a < c < b) + [b]
        out.extend(zip(cuts[:-1], cuts[1:], strict=True))
    return out

