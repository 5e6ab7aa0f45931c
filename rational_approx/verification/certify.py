"""Certified two-sided bounds on best rational approximation errors, and pole-free certificates.

A certificate here is a statement proved by ball arithmetic (python-flint's ``arb``: every quantity is an
interval [mid ± rad] guaranteed to contain the exact value; Johansson, "Arb: efficient arbitrary-precision
midpoint-radius interval arithmetic", IEEE Trans. Computers 66 (2017)) about an *exactly specified* rational
function.

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

**Upper bound** (:func:`certified_sup_error`): the domain is split at the target's breakpoints (every named
target is affine on each piece, so f is exact in ball arithmetic) and subdivided adaptively, best-first. On
X = [m − ρ, m + ρ], with e = f − p/q and e_j = e^{(j)}/j! (power-series division of the Taylor coefficients of
p and q),

    e(m + δ) = e_0(m) + e_1(m) δ + e_2(m) δ² + Σ_{3≤j≤K} e_j(m) δ^j + e_{K+1}(ξ) δ^{K+1},   ξ ∈ X, |δ| ≤ ρ

(Taylor with Lagrange remainder, K = 4). The quadratic part is maximised exactly (end points and vertex), the
other terms are bounded termwise, e_{K+1}(X) is evaluated on the ball X (which also proves q ≠ 0 on X). The
largest bound among the leaves of the subdivision is a rigorous upper bound of ‖f − r‖_∞; the largest |e(m)|
found is a rigorous lower bound of it. Subdivision stops when the two agree to ``rtol``. A plain interval
evaluation of p/q would not do: its width is first order in ρ and is inflated by the cancellation in f − p/q
(by a factor ~10⁴ for |x| at type (40, 40)), whereas the Taylor model's overestimation is O(ρ³).

**Lower bound** (:func:`vallee_poussin_lower_bound`), de la Vallée Poussin's theorem for rational functions
(Achieser, *Theory of Approximation*, §§ 32–34; Meinardus, *Approximation of Functions*, Thm. 9.12; Trefethen,
ATAP, Exercise 24.3): let r = p/q ∈ R_{m,n} with q ≠ 0 on the domain D and defect d = min(m − deg p, n − deg
q). If f − r takes nonzero values of alternating sign at points x_0 < … < x_{K−1} of D, then every r* ∈
R_{m,n} with no pole on D satisfies ‖f − r*‖ ≥ min_i |f(x_i) − r(x_i)| provided

    K − 1 − g ≥ m + n + 1 − d,                                                                        (VP)

where g counts the consecutive pairs (x_i, x_{i+1}) that lie in different intervals of D (g = 0 on an
interval, giving the classical K ≥ m + n + 2 − d). Proof: otherwise r* − r = (f − r) − (f − r*) alternates at
the x_i, so between two points of one interval (where r* − r is continuous) the polynomial p*q − pq* of degree
≤ m + n − d changes sign; that is ≥ m + n + 1 − d zeros, so p*q = pq* and r* = r, contradicting ‖f − r*‖ <
min|f(x_i) − r(x_i)| ≤ ‖f − r‖. Across a gap a pole of r* could produce the sign change instead, hence the −g.
When only K ≥ m + n + 2 − d holds on a gapped domain, the bound is proved for the smaller class of r* with no
pole in the convex hull of D (then reported as such, ``lower_class = "hull"``). The defect uses the degrees of
the given representation, which only over-estimates deg p, deg q (a common factor would raise d), so it is
conservative.

**Pole-free** (:func:`certify_pole_free`): q(X) ∌ 0 on every leaf of an adaptive subdivision (mean-value form
q(m) + q'(X)·[−ρ, ρ] ∩ q(X)), or, for a safe-Padé denominator 1 + |Σ_{j≥1} b_j x^j| (or 1 + Σ|b_j||x|^j), the
form itself (≥ 1 everywhere) together with a check that its floating-point evaluation cannot overflow on the
domain and agrees with the exact form within the Horner rounding bound.

Example
-------
>>> from rational_approx.verification.certify import certify
>>> from rational_approx.fitting.highprec import abs_minimax
>>> cert = certify("abs", abs_minimax(4))
>>> cert.certified, cert.lower <= 0.00850148470407383 <= cert.upper
(True, True)
"""

from __future__ import annotations

import argparse
import heapq
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import mpmath
import numpy as np
from flint import arb, arb_poly, ctx

from rational_approx.errors import DegreeError, RationalApproxError, TargetError
from rational_approx.fitting.highprec import HighPrecResult, _prec, arb_from_mpf, piecewise_linear_form
from rational_approx.representation.barycentric import BarycentricRational, PolyQuotient
from rational_approx.representation.domain import Domain
from rational_approx.representation.targets import Target, get_target

__all__ = [
    "ExactRational",
    "SupBound",
    "LowerBound",
    "PoleFreeCertificate",
    "Certificate",
    "exact_rational",
    "certified_sup_error",
    "vallee_poussin_lower_bound",
    "certify_pole_free",
    "certify",
    "add_certify_arguments",
    "certify_command",
]

_INF = math.inf


# --------------------------------------------------------------------------------------------- float rounding
def _up(a: arb) -> float:
    """A float ≥ every point of the ball a (rounded outward)."""
    if not a.is_finite():
        return _INF
    v = float(a.mid()) + float(a.rad())
    return math.nextafter(math.nextafter(v, _INF), _INF)


def _down(a: arb) -> float:
    """A float ≤ every point of the ball a (rounded outward)."""
    if not a.is_finite():
        return -_INF
    v = float(a.mid()) - float(a.rad())
    return math.nextafter(math.nextafter(v, -_INF), -_INF)


def _abs_up(a: arb) -> float:
    return _up(a.abs_upper())


def _abs_down(a: arb) -> float:
    return max(0.0, _down(a.abs_lower()))


# ----------------------------------------------------------------------------------------------- the rational
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
        with _prec(max(prec, 64 * (r.z.size + 2))):
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
            from rational_approx.fitting.highprec import _cheb_to_monomial

            with _prec(prec):
                a, b = arb_from_mpf(r.interval[0]), arb_from_mpf(r.interval[1])
                p = _cheb_to_monomial([arb_from_mpf(float(c)) for c in np.real(r.p)], a, b)
                q = _cheb_to_monomial([arb_from_mpf(float(c)) for c in np.real(r.q)], a, b)
        typ, src = (len(r.p) - 1, len(r.q) - 1), f"PolyQuotient ({r.basis})"
    elif isinstance(r, tuple | list) and len(r) == 2:
        p = [_exact_number(c) for c in r[0]]
        q = [_exact_number(c) for c in r[1]]
        typ, src = (len(p) - 1, len(q) - 1), "coefficients (p, q)"
    else:
        raise RationalApproxError(
            f"cannot certify an object of type {type(r).__name__}; pass a HighPrecResult, "
            f"MinimaxResult, BarycentricRational, PolyQuotient or (p, q) coefficient lists"
        )
    m, n = tuple(type) if type is not None else tuple(typ)
    if m < 0 or n < 0:
        raise DegreeError(f"type must be non-negative, got {(m, n)}")
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
        big = max(_abs_up(c) for c in nonzero)
        scale = max(_abs_down(c) for c in p[: m + 1] + q[: n + 1])
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


def _exact_number(c: Any) -> arb:
    if isinstance(c, arb):
        return c
    if isinstance(c, str):
        with mpmath.workprec(ctx.prec):
            return arb_from_mpf(mpmath.mpf(c))
    if isinstance(c, mpmath.mpf | int | np.integer):
        return arb_from_mpf(c)
    return arb_from_mpf(float(c))


def _target_and_domain(target: Target | str, domain: Domain | None) -> tuple[Target, Domain, tuple, Any]:
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


def _pieces(dom: Domain, breaks: tuple) -> list[tuple[float, float]]:
    out = []
    for a, b in dom.intervals:
        cuts = [a] + sorted(c for c in breaks if a < c < b) + [b]
        out.extend(zip(cuts[:-1], cuts[1:], strict=True))
    return out


# ------------------------------------------------------------------------------------------------ upper bound
@dataclass
class SupBound:
    """Rigorous bounds on ‖f − r‖_∞ over a domain.

    Attributes
    ----------
    upper : float
        Guaranteed ≥ sup |f − r| (rounded outward); ``inf`` when the subdivision could not bound some piece.
    lower : float
        Guaranteed ≤ sup |f − r|: the largest certified |f(x) − r(x)| at an evaluated point.
    argmax : float
        That point.
    intervals : int
        Subintervals evaluated.
    complete : bool
        True when every piece of the domain was bounded (q ≠ 0 proved on each leaf).
    pole_free : bool
        q has no zero on the domain (a by-product: q(X) ∌ 0 on every leaf).
    seconds : float
    notes : list of str
    """

    upper: float
    lower: float
    argmax: float
    intervals: int
    complete: bool
    pole_free: bool
    seconds: float
    notes: list[str] = field(default_factory=list)


class _Enclosure:
    """Ball evaluation of e = f − p/q, f(x) = αx + β on one piece, by a Taylor model of order K.

    On X = [m ± ρ], with e_j(x) = e^{(j)}(x)/j! (Taylor coefficients, obtained from those of p and q by
    power-series division) and Lagrange's remainder,

        e(m + δ) = e_0(m) + e_1(m) δ + e_2(m) δ² + Σ_{3≤j≤K} e_j(m) δ^j + e_{K+1}(ξ) δ^{K+1},   ξ ∈ X.

    The quadratic part is maximised exactly (end points and vertex), the rest is bounded termwise with
    e_{K+1}(X) evaluated on the ball X. Unlike a plain interval evaluation of p/q (whose width is first order
    in ρ and suffers from the cancellation in f − p/q), the overestimation is O(ρ³) with coefficients that are
    true Taylor coefficients, so the bound is tight near the extrema of e.
    """

    K = 4

    def __init__(self, P: arb_poly, Q: arb_poly, alpha: float, beta: float):
        self.alpha, self.beta = arb(alpha), arb(beta)
        self.Pd, self.Qd = [P], [Q]
        for j in range(1, self.K + 2):  # p^{(j)}/j!, q^{(j)}/j!
            self.Pd.append(self.Pd[-1].derivative() * (arb(1) / j))
            self.Qd.append(self.Qd[-1].derivative() * (arb(1) / j))
        self.P, self.Q = P, Q

    def point(self, x: arb) -> arb:
        return self.alpha * x + self.beta - self.P(x) / self.Q(x)

    def _taylor(self, x: arb, order: int) -> list | None:
        """e_0 … e_order at x (a point or a ball); None when q(x) may vanish."""
        q = [d(x) for d in self.Qd[: order + 1]]
        if q[0].contains(0):
            return None
        p = [d(x) for d in self.Pd[: order + 1]]
        s: list = []
        for j in range(order + 1):  # power-series division s = p/q
            acc = p[j]
            for i in range(1, j + 1):
                acc -= q[i] * s[j - i]
            s.append(acc / q[0])
        e = [-v for v in s]
        e[0] += self.alpha * x + self.beta
        if order >= 1:
            e[1] += self.alpha
        return e

    def interval(self, lo: arb, hi: arb) -> tuple[arb, arb, arb] | None:
        """(enclosure of |e| on [lo, hi] as a ball [0, bound], e(mid), mid), or None when q(X) may vanish."""
        mid = (lo + hi) / 2
        rho = (hi - lo) / 2
        X = arb(mid, rho)
        rem = self._taylor(X, self.K + 1)
        if rem is None:
            return None
        em = self._taylor(mid, self.K)
        if em is None:
            return None
        e0, e1, e2 = em[0], em[1], em[2]
        quad = [abs(e0 - e1 * rho + e2 * rho * rho), abs(e0 + e1 * rho + e2 * rho * rho)]
        if not e2.contains(0):
            vertex = -e1 / (2 * e2)
            if vertex.overlaps(arb(0, rho)):
                quad.append(abs(e0 - e1 * e1 / (4 * e2)))
        else:
            quad.append(abs(e0) + abs(e1) * rho + abs(e2) * rho * rho)
        bound = max(_abs_up(v) for v in quad)
        tail = sum((abs(em[j]) * rho**j for j in range(3, self.K + 1)), arb(0)) + abs(
            rem[self.K + 1]
        ) * rho ** (self.K + 1)
        total = arb(bound) + tail
        return arb(0, _abs_up(total)), em[0], mid


def certified_sup_error(
    target: Target | str,
    r: Any,
    domain: Domain | None = None,
    *,
    rtol: float = 1e-8,
    prec: int = 256,
    max_intervals: int = 200_000,
    points: Sequence | None = None,
    min_width: float = 1e-300,
) -> SupBound:
    """Rigorous upper (and lower) bound of sup_{x ∈ D} |f(x) − r(x)| by adaptive Taylor-form subdivision.

    Parameters
    ----------
    target : a named piecewise-linear target (see :func:`~rational_approx.fitting.highprec.piecewise_linear_form`).
    r : anything :func:`exact_rational` accepts; certified as represented (no truncation).
    domain : default the target's default domain.
    rtol : stop when upper ≤ (1 + rtol)·lower.
    prec : ball precision in bits (raised automatically when the expansion of barycentric data needs more).
    max_intervals : work limit; the bound stays rigorous (just looser) when it is hit.
    points : optional points (e.g. the reference of a Remez run) where |f − r| is evaluated first, so that the
        lower bound, and with it the stopping level, is near the true maximum from the start.

    Returns
    -------
    SupBound
    """
    t0 = time.perf_counter()
    tgt, dom, breaks, piece = _target_and_domain(target, domain)
    with _prec(prec):
        R = r if isinstance(r, ExactRational) else exact_rational(r, prec=prec)
        P, Q = R.polys()
        pieces = _pieces(dom, breaks)
        encs = [_Enclosure(P, Q, *piece(0.5 * (a + b))) for a, b in pieces]
        best_lo, argmax = 0.0, float("nan")
        for x in list(points or []) + [v for iv in pieces for v in iv]:
            xf = x if isinstance(x, mpmath.mpf) else mpmath.mpf(float(x))
            for (a, b), enc in zip(pieces, encs, strict=True):
                if a <= xf <= b:
                    xa = arb_from_mpf(xf)
                    if enc.Q(xa).contains(0):
                        break
                    v = _abs_down(enc.point(xa))
                    if v > best_lo:
                        best_lo, argmax = v, float(xf)
                    break
        heap: list = []
        count = 0
        failed: list[tuple[float, float]] = []
        poles_possible = False

        def push(lo: arb, hi: arb, i: int) -> None:
            nonlocal count, best_lo, argmax, poles_possible
            count += 1
            res = encs[i].interval(lo, hi)
            if res is None:
                bound = _INF
            else:
                enc, em, mid = res
                bound = _abs_up(enc)
                v = _abs_down(em)
                if v > best_lo:
                    best_lo, argmax = v, float(mid.mid())
            heapq.heappush(heap, (-bound, count, lo, hi, i))

        for i, (a, b) in enumerate(pieces):
            push(arb_from_mpf(a), arb_from_mpf(b), i)
        while heap:
            negb, _, lo, hi, i = heap[0]
            bound = -negb
            if bound <= best_lo * (1 + rtol) or count >= max_intervals:
                break
            heapq.heappop(heap)
            width = float((hi - lo).mid())
            mid = (lo + hi) / 2
            if width <= min_width * max(1.0, abs(float(mid.mid()))) or not mid.is_exact():
                failed.append((float(lo.mid()), float(hi.mid())))
                if bound == _INF:
                    poles_possible = True
                continue
            push(lo, mid, i)
            push(mid, hi, i)
        upper = max([-heap[0][0]] if heap else [0.0])
        notes = []
        for lo_f, hi_f in failed[:5]:
            notes.append(f"could not bound [{lo_f:.17g}, {hi_f:.17g}] at width limit")
        if failed:
            upper = _INF
        if count >= max_intervals and upper > best_lo * (1 + rtol):
            notes.append(
                f"work limit of {max_intervals} intervals reached; the upper bound is rigorous but loose"
            )
        pole_free = upper < _INF and not poles_possible
        complete = upper < _INF
        notes.extend(R.notes)
        notes.append(f"r certified as represented: {R.source}")
    return SupBound(
        upper=upper,
        lower=best_lo,
        argmax=argmax,
        intervals=count,
        complete=complete,
        pole_free=pole_free,
        seconds=time.perf_counter() - t0,
        notes=notes,
    )


# -------------------------------------------------------------------------------------------------- pole-free
@dataclass
class PoleFreeCertificate:
    """Outcome of :func:`certify_pole_free`.

    Attributes
    ----------
    pole_free : bool
        True only when the denominator is *proved* non-zero on the domain.
    min_abs_q : float
        A rigorous lower bound of min |q| over the domain (0 when not proved).
    form : str
    zero_in : (a, b) or None
        An interval where q provably changes sign (a certified zero), when one was found.
    method : str
    seconds : float
    notes : list of str
    """

    pole_free: bool
    min_abs_q: float
    form: str
    zero_in: tuple[float, float] | None
    method: str
    seconds: float
    notes: list[str] = field(default_factory=list)


def _denominator_poly(p_or_r: Any, prec: int) -> arb_poly:
    if isinstance(p_or_r, arb_poly):
        return p_or_r
    if isinstance(p_or_r, ExactRational | HighPrecResult | BarycentricRational | PolyQuotient) or hasattr(
        p_or_r, "r"
    ):
        return exact_rational(p_or_r, prec=prec).polys()[1]
    if isinstance(p_or_r, Sequence | np.ndarray):
        return arb_poly([_exact_number(c) for c in p_or_r])
    raise RationalApproxError(
        f"cannot read a denominator from {type(p_or_r).__name__}; pass coefficients "
        f"(ascending, monomial in x) or a rational"
    )


def certify_pole_free(
    p_or_r: Any,
    domain: Domain | tuple[float, float],
    *,
    form: str = "plain",
    prec: int = 256,
    max_depth: int = 60,
    dtype: str = "float64",
) -> PoleFreeCertificate:
    """Prove that a denominator has no zero on ``domain``.

    Parameters
    ----------
    p_or_r : for ``form="plain"``: the denominator's ascending monomial coefficients, or a rational (its q).
        For the safe-Padé forms: the coefficients b_1, …, b_n of B(x) = Σ_{j≥1} b_j x^j (no constant term).
    domain : Domain or (a, b).
    form : "plain" (q(x)), "safe_pade" (1 + |B(x)|) or "safe_pade_abs" (1 + Σ_j |b_j| |x|^j).
    max_depth : bisection depth limit for "plain" (relative width 2^-max_depth); beyond it: "not proved".
    dtype : floating type whose evaluation of the safe-Padé formula is checked ("float64" or "float32").

    Returns
    -------
    PoleFreeCertificate. For "plain", a sign change of q between two points of one interval (both signs
    proved) is reported in ``zero_in``: q then certainly has a zero there.
    """
    t0 = time.perf_counter()
    dom = domain if isinstance(domain, Domain) else Domain.interval(*domain)
    if form in ("safe_pade", "safe_pade_abs"):
        return _safe_pade_pole_free(p_or_r, dom, form, prec, dtype, t0)
    if form != "plain":
        raise RationalApproxError(f"form must be 'plain', 'safe_pade' or 'safe_pade_abs', got {form!r}")
    with _prec(prec):
        Q = _denominator_poly(p_or_r, prec)
        Q1 = Q.derivative()
        min_abs = _INF
        for a, b in dom.intervals:
            lo0, hi0 = arb_from_mpf(a), arb_from_mpf(b)
            sign_seen: tuple[int, float] | None = None
            stack = [(lo0, hi0, 0)]
            while stack:
                lo, hi, depth = stack.pop()
                mid, rho = (lo + hi) / 2, (hi - lo) / 2
                X = arb(mid, rho)
                encl = Q(X)
                mv = Q(mid) + Q1(X) * arb(0, rho)
                if encl.overlaps(mv):
                    encl = encl.intersection(mv)
                for pt in (lo, mid, hi):
                    qv = Q(pt)
                    if not qv.contains(0):
                        s = 1 if qv > 0 else -1
                        if sign_seen is None:
                            sign_seen = (s, float(pt.mid()))
                        elif s != sign_seen[0]:
                            xa, xb = sorted((sign_seen[1], float(pt.mid())))
                            return PoleFreeCertificate(
                                False,
                                0.0,
                                form,
                                (xa, xb),
                                "interval subdivision",
                                time.perf_counter() - t0,
                                [
                                    f"q changes sign between {xa:.17g} and {xb:.17g}: "
                                    f"a certified zero (pole of r unless cancelled)"
                                ],
                            )
                if not encl.contains(0):
                    min_abs = min(min_abs, _abs_down(encl))
                    continue
                if depth >= max_depth or not mid.is_exact():
                    return PoleFreeCertificate(
                        False,
                        0.0,
                        form,
                        None,
                        "interval subdivision",
                        time.perf_counter() - t0,
                        [
                            f"could not exclude a zero of q in [{float(lo.mid()):.17g}, "
                            f"{float(hi.mid()):.17g}] (depth {depth})"
                        ],
                    )
                stack.append((lo, mid, depth + 1))
                stack.append((mid, hi, depth + 1))
    return PoleFreeCertificate(
        True,
        min_abs,
        form,
        None,
        "interval subdivision (mean-value form)",
        time.perf_counter() - t0,
        [f"|q| ≥ {min_abs:.6g} on {dom}"],
    )


def _safe_pade_pole_free(
    b_coeffs: Any, dom: Domain, form: str, prec: int, dtype: str, t0: float
) -> PoleFreeCertificate:
    """Safe-Padé denominators are ≥ 1 by construction; certify the floating-point evaluation of that form."""
    b = np.asarray(getattr(b_coeffs, "b", b_coeffs), dtype=float).ravel()
    if not np.all(np.isfinite(b)):
        return PoleFreeCertificate(
            False,
            0.0,
            form,
            None,
            "form",
            time.perf_counter() - t0,
            ["denominator coefficients are not all finite"],
        )
    if dtype not in ("float64", "float32"):
        raise RationalApproxError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    ftype = np.float64 if dtype == "float64" else np.float32
    bt = b.astype(ftype)
    notes = [
        "Q(x) = 1 + |Σ_{j≥1} b_j x^j| ≥ 1 for every real x"
        if form == "safe_pade"
        else "Q(x) = 1 + Σ_{j≥1} |b_j| |x|^j ≥ 1 for every real x"
    ]
    with _prec(prec):
        xmax = arb_from_mpf(max(abs(dom.a), abs(dom.b)))
        coeffs = [arb_from_mpf(float(c)) for c in bt]  # the coefficients as the float formula sees them
        bound = sum((abs(c) * xmax ** (j + 1) for j, c in enumerate(coeffs)), arb(0))
        big = _up(bound)
        fmax = float(np.finfo(ftype).max)
        if not big < fmax / 4:
            return PoleFreeCertificate(
                False,
                0.0,
                form,
                None,
                "form + overflow bound",
                time.perf_counter() - t0,
                notes + [f"Σ|b_j||x|^j reaches {big:.3g} on the domain: {dtype} may overflow"],
            )
        # The float formula: Horner for B, then 1 + |B| (or 1 + Σ|b_j||x|^j). Check it at sample points
        # against the exact form with the Horner bound |fl(B) − B| ≤ γ_{2n} Σ|b_j||x|^j, γ_k = ku/(1 − ku).
        u = float(np.finfo(ftype).eps) / 2
        nb = len(bt)
        gamma = (2 * nb + 2) * u / (1 - (2 * nb + 2) * u)
        xs = dom.sample(512, depth=8).astype(ftype)
        worst = 0.0
        for x in xs:
            xv = ftype(x)
            if form == "safe_pade":
                acc = ftype(0)
                for c in bt[::-1]:
                    acc = ftype(acc * xv + c)
                acc = ftype(acc * xv)
                qf = ftype(ftype(1) + abs(acc))
            else:
                qf = ftype(1) + ftype(
                    sum(ftype(abs(c)) * ftype(abs(xv)) ** (j + 1) for j, c in enumerate(bt))
                )
            xa = arb_from_mpf(float(xv))
            bx = sum((c * xa ** (j + 1) for j, c in enumerate(coeffs)), arb(0))
            absum = sum((abs(c) * abs(xa) ** (j + 1) for j, c in enumerate(coeffs)), arb(0))
            exact = 1 + (abs(bx) if form == "safe_pade" else absum)
            allowed = _up(absum * gamma + exact * u) * 2
            dev = _abs_up(arb_from_mpf(float(qf)) - exact)
            if not (float(qf) >= 1.0 and math.isfinite(float(qf))) or dev > allowed:
                return PoleFreeCertificate(
                    False,
                    0.0,
                    form,
                    None,
                    "form + float check",
                    time.perf_counter() - t0,
                    notes
                    + [
                        f"{dtype} evaluation at x = {float(xv):.9g} gives {float(qf)!r}, "
                        f"exact form {exact.str(10)}: the float formula is not the form"
                    ],
                )
            worst = max(worst, dev / max(allowed, 1e-300))
    notes.append(
        f"{dtype} formula finite (|B| ≤ {big:.3g}) and ≥ 1 on the domain; it matches the exact form within "
        f"the Horner rounding bound at {len(xs)} sample points (worst {worst:.2f} of the bound)"
    )
    return PoleFreeCertificate(
        True, 1.0, form, None, "form (Q ≥ 1) + overflow bound + float check", time.perf_counter() - t0, notes
    )


# ------------------------------------------------------------------------------------------------ lower bound
@dataclass
class LowerBound:
    """De la Vallée Poussin lower bound of E_{m,n}(f, D).

    Attributes
    ----------
    lower : float
        Guaranteed ≤ E_{m,n}(f) over the class ``lower_class`` when ``holds`` (0.0 otherwise).
    holds : bool
        All hypotheses were verified rigorously.
    lower_class : str
        "domain" (r* with no pole on D, the usual E_{m,n}) or "hull" (no pole on the convex hull of D).
    points, errors : lists of float
        The alternation points used and f − r there (midpoints of the certified balls).
    defect : int
    required : int
        Points needed by (VP) for the class reported.
    notes : list of str
    """

    lower: float
    holds: bool
    lower_class: str
    points: list[float]
    errors: list[float]
    defect: int
    required: int
    notes: list[str] = field(default_factory=list)


def _auto_points(tgt: Target, dom: Domain, R: ExactRational) -> list[float]:
    """Local extrema of f − r (float64 search on a cluster-aware grid, refined by golden-section search)."""
    x = dom.sample(6000, cluster=tgt.singular_points, depth=40)
    e = tgt.f(x) - R(x)
    pts = []
    for i in range(x.size):
        left = e[i - 1] if i > 0 else 0.0
        right = e[i + 1] if i + 1 < x.size else 0.0
        if abs(e[i]) >= abs(left) and abs(e[i]) >= abs(right):
            if 0 < i < x.size - 1 and x[i] not in tgt.singular_points:
                s = np.sign(e[i])
                lo, hi = x[i - 1], x[i + 1]
                g = (math.sqrt(5) - 1) / 2
                for _ in range(60):
                    c, d = hi - g * (hi - lo), lo + g * (hi - lo)
                    if s * (tgt.f(np.array(c)) - R(c)) > s * (tgt.f(np.array(d)) - R(d)):
                        hi = d
                    else:
                        lo = c
                pts.append(0.5 * (lo + hi))
            else:
                pts.append(float(x[i]))
    return sorted(set(pts))


def vallee_poussin_lower_bound(
    target: Target | str,
    r: Any,
    domain: Domain | None = None,
    *,
    type: tuple[int, int] | None = None,
    points: Sequence | None = None,
    prec: int = 256,
) -> LowerBound:
    """Certified lower bound of the best error E_{m,n}(f): de la Vallée Poussin's theorem ((VP) above).

    Parameters
    ----------
    target : a named piecewise-linear target.
    r : any r ∈ R_{m,n} (anything :func:`exact_rational` accepts; barycentric data are truncated to (m, n)).
    type : (m, n); default the type of r.
    points : candidate alternation points; default r's reference (HighPrecResult / MinimaxResult) or the local
        extrema of f − r found by sampling. Among them the alternating window with the largest min |f − r|
        that satisfies (VP) is used.

    Returns
    -------
    LowerBound — ``holds`` is False (with the reason in ``notes``) whenever a hypothesis could not be
    verified.
    """
    tgt, dom, breaks, piece = _target_and_domain(target, domain)
    notes: list[str] = []
    with _prec(prec):
        R = exact_rational(r, type=type, truncate=True, prec=prec)
        notes.extend(R.notes)
        m, n = R.type
        dp, dq = R.degrees()
        if dq < 0:
            return LowerBound(0.0, False, "domain", [], [], 0, m + n + 2, notes + ["q is identically zero"])
        d = min(m - max(dp, 0), n - dq)
        if points is None:
            if isinstance(r, HighPrecResult) or hasattr(r, "extremal_points"):
                points = list(r.extremal_points)
            else:
                points = _auto_points(tgt, dom, R)
        P, Q = R.polys()
        pieces = _pieces(dom, breaks)
        vals = []
        for x in sorted(set(v if isinstance(v, mpmath.mpf) else mpmath.mpf(float(v)) for v in points)):
            if not bool(dom.contains(float(x))) or not any(a <= x <= b for a, b in dom.intervals):
                continue
            xa = arb_from_mpf(x)
            qx = Q(xa)
            if qx.contains(0):
                continue
            a_, b_ = next((a_, b_) for a_, b_ in pieces if a_ <= x <= b_)  # f is continuous at breakpoints
            alpha, beta = piece(0.5 * (a_ + b_))
            e = arb(alpha) * xa + arb(beta) - P(xa) / qx
            if e.contains(0):
                continue
            vals.append((x, e, 1 if e > 0 else -1))
        # merge same-sign runs (keep the largest certified |e|): the result alternates
        alt: list = []
        for x, e, s in vals:
            if alt and alt[-1][2] == s:
                if _abs_down(e) > _abs_down(alt[-1][1]):
                    alt[-1] = (x, e, s)
            else:
                alt.append((x, e, s))

        def interval_of(x) -> int:
            return next(i for i, (a, b) in enumerate(dom.intervals) if a <= x <= b)

        need_domain = m + n + 1 - d  # sign changes within intervals needed
        best = None
        for cls in ("domain", "hull"):
            for i in range(len(alt)):
                changes = 0
                for j in range(i + 1, len(alt)):
                    same = interval_of(alt[j][0]) == interval_of(alt[j - 1][0])
                    changes += 1 if (same or cls == "hull") else 0
                    if changes >= need_domain:
                        window = alt[i : j + 1]
                        low = min(_abs_down(e) for _, e, _ in window)
                        if best is None or low > best[0]:
                            best = (low, window, cls)
                        break
            if best is not None:
                break
        if best is None:
            required = m + n + 2 - d
            return LowerBound(
                0.0,
                False,
                "domain",
                [float(x) for x, _, _ in alt],
                [float(e.mid()) for _, e, _ in alt],
                d,
                required,
                notes
                + [
                    f"only {len(alt)} certified alternating points; (VP) needs {required} "
                    f"(type {(m, n)}, defect {d})"
                ],
            )
        low, window, cls = best
        crossings = sum(
            1 for a_, b_ in zip(window, window[1:], strict=False) if interval_of(a_[0]) != interval_of(b_[0])
        )
        required = m + n + 2 - d + (crossings if cls == "domain" else 0)
        region = dom if cls == "domain" else Domain.interval(dom.a, dom.b)
        pf = certify_pole_free(R, region, prec=prec)
        if not pf.pole_free:
            return LowerBound(
                0.0,
                False,
                cls,
                [float(x) for x, _, _ in window],
                [float(e.mid()) for _, e, _ in window],
                d,
                required,
                notes + [f"q not proved zero-free on {region}: " + "; ".join(pf.notes)],
            )
        if cls == "hull":
            notes.append(
                "gapped domain with too few alternations for r* with poles in the gaps: the bound holds for "
                "approximants with no pole in the convex hull of the domain"
            )
        notes.append(
            f"type {(m, n)}, deg p ≤ {dp}, deg q ≤ {dq}, defect {d}; {len(window)} alternating points "
            f"({crossings} across gaps), {required} required"
        )
    return LowerBound(
        low,
        True,
        cls,
        [float(x) for x, _, _ in window],
        [float(e.mid()) for _, e, _ in window],
        d,
        required,
        notes,
    )


# ---------------------------------------------------------------------------------------------------- certify
@dataclass
class Certificate:
    """A two-sided bracket lower ≤ E_{m,n}(f, D) ≤ upper.

    Attributes
    ----------
    lower, upper : float
        ``lower`` from de la Vallée Poussin (:func:`vallee_poussin_lower_bound`), ``upper`` = a certified
        bound of ‖f − r̃‖_∞ for the exact r̃ ∈ R_{m,n} in ``rational`` (:func:`certified_sup_error`).
    certified : bool
        True only when both bounds are rigorous: the sup bound completed, r̃ is proved pole-free on the domain
        (and on its hull when ``lower_class`` is "hull"), and every hypothesis of (VP) was verified.
    method : str
    seconds : float
    pole_free : bool
    notes : list of str
    lower_class : str
        The class of competitors the lower bound covers ("domain" or "hull").
    rational : ExactRational
    relative_width : float
        (upper − lower)/lower.
    """

    target: str
    type: tuple[int, int]
    domain: Domain
    lower: float
    upper: float
    certified: bool
    method: str
    seconds: float
    pole_free: bool
    notes: list[str]
    lower_class: str
    rational: ExactRational
    sup: SupBound
    vallee_poussin: LowerBound
    prec: int

    @property
    def relative_width(self) -> float:
        return (self.upper - self.lower) / self.lower if self.lower > 0 else _INF

    def to_dict(self, *, coefficients: bool = False) -> dict:
        d = {
            "target": self.target,
            "type": list(self.type),
            "domain": [list(iv) for iv in self.domain.intervals],
            "lower": self.lower,
            "upper": self.upper,
            "relative_width": self.relative_width,
            "certified": self.certified,
            "method": self.method,
            "seconds": self.seconds,
            "pole_free": self.pole_free,
            "lower_class": self.lower_class,
            "alternation_points": len(self.vallee_poussin.points),
            "required_points": self.vallee_poussin.required,
            "defect": self.vallee_poussin.defect,
            "intervals": self.sup.intervals,
            "prec_bits": self.prec,
            "rational_source": self.rational.source,
            "notes": list(self.notes),
        }
        if coefficients:
            d["rational"] = self.rational.to_dict()
        return d


def certify(
    target: Target | str,
    r: Any,
    domain: Domain | None = None,
    *,
    type: tuple[int, int] | None = None,
    reference: Sequence | None = None,
    rtol: float = 1e-8,
    prec: int = 256,
    max_intervals: int = 200_000,
) -> Certificate:
    """Certified bracket of the best error E_{m,n}(f, D) from an approximant r and its alternation set.

    Parameters
    ----------
    target : named piecewise-linear target or its name.
    r : HighPrecResult, MinimaxResult, BarycentricRational, PolyQuotient or (p, q) (:func:`exact_rational`).
    domain : default: r's domain when it has one, else the target's default domain.
    type : (m, n); default r's type.
    reference : alternation points for the lower bound; default r's extremal points or a sampled search.
    rtol : relative tightness requested of the upper bound with respect to max |f − r̃|.
    prec : ball precision in bits.

    Returns
    -------
    Certificate
    """
    t0 = time.perf_counter()
    tgt = target if isinstance(target, Target) else get_target(target)
    if domain is None:
        domain = getattr(r, "domain", None)
    tgt, dom, _, _ = _target_and_domain(tgt, domain)
    with _prec(prec):
        R = exact_rational(r, type=type, truncate=True, prec=prec)
        pts = reference if reference is not None else getattr(r, "extremal_points", None)
        sup = certified_sup_error(
            tgt,
            R,
            dom,
            rtol=rtol,
            prec=prec,
            max_intervals=max_intervals,
            points=list(pts) if pts is not None else None,
        )
        vp = vallee_poussin_lower_bound(tgt, R, dom, points=pts, prec=prec)
        notes = list(vp.notes) + [n_ for n_ in sup.notes if n_ not in vp.notes]
        pole_free = sup.pole_free
        if vp.lower_class == "hull" and vp.holds:
            pf_hull = certify_pole_free(R, Domain.interval(dom.a, dom.b), prec=prec)
            pole_free = pole_free and pf_hull.pole_free
            if not pf_hull.pole_free:
                notes.append(
                    "r̃ has a possible pole in a gap: it is not in the hull class the lower bound covers"
                )
        certified = bool(sup.complete and pole_free and vp.holds and vp.lower <= sup.upper)
        if vp.holds and vp.lower > sup.upper:
            notes.append("INCONSISTENT: lower > upper — a bug; please report")
    return Certificate(
        target=tgt.name,
        type=R.type,
        domain=dom,
        lower=vp.lower if vp.holds else 0.0,
        upper=sup.upper,
        certified=certified,
        method="arb ball arithmetic: adaptive Taylor-form subdivision (upper) + de la Vallée Poussin (lower)",
        seconds=time.perf_counter() - t0,
        pole_free=pole_free,
        notes=notes,
        lower_class=vp.lower_class,
        rational=R,
        sup=sup,
        vallee_poussin=vp,
        prec=prec,
    )


# ---------------------------------------------------------------------------------------------------- CLI
def add_certify_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``rational-approx certify``."""
    parser.add_argument("--target", default="abs", help="abs, relu, sign, heaviside, jumprelu, topk_gate")
    parser.add_argument("--type", required=True, help="m,n (numerator and denominator degrees)")
    parser.add_argument("--domain", default=None, help="'a,b' or 'a,b;c,d' (default: the target's)")
    parser.add_argument(
        "--gap", type=float, default=None, help="half-width of the gap around a jump (default 0.05)"
    )
    parser.add_argument("--theta", type=float, default=None, help="threshold of jumprelu / heaviside")
    parser.add_argument("--tau", type=float, default=None, help="threshold of topk_gate")
    parser.add_argument(
        "--source",
        choices=("auto", "highprec", "minimax"),
        default="auto",
        help="approximant: multiprecision Remez (abs (n,n), relu (2k+1,2k); else minimax refined at "
        "--prec bits) or double-precision minimax",
    )
    parser.add_argument("--rtol", type=float, default=1e-8, help="tightness of the upper bound")
    parser.add_argument("--prec", type=int, default=256, help="ball precision in bits")
    parser.add_argument("--coefficients", action="store_true", help="include the certified coefficients")
    parser.add_argument("--json", action="store_true", help="print JSON")


def certify_command(args: argparse.Namespace) -> dict:
    """``rational-approx certify``: compute an approximant, certify it, return the certificate as a dict."""
    try:
        m, n = (int(v) for v in str(args.type).split(","))
    except ValueError as exc:
        raise DegreeError(f"--type must be 'm,n' with integers, got {args.type!r}") from exc
    tgt = get_target(args.target, theta=args.theta, tau=args.tau)
    dom = Domain.parse(args.domain) if args.domain else tgt.default_domain(args.gap)
    t0 = time.perf_counter()
    standard = dom.intervals == ((-1.0, 1.0),)
    from rational_approx.fitting.highprec import abs_minimax, refine_minimax, relu_minimax

    if args.source != "minimax" and standard and tgt.name == "abs" and m == n and n >= 2:
        approx, how = abs_minimax(n), f"highprec.abs_minimax({n})"
    elif (
        args.source != "minimax" and standard and tgt.name == "relu" and m == n + 1 and n % 2 == 0 and n >= 2
    ):
        approx, how = relu_minimax(n // 2), f"highprec.relu_minimax({n // 2})"
    else:
        from rational_approx.fitting.minimax import minimax

        approx, how = minimax(tgt, (m, n), dom), "minimax (double precision)"
        if args.source == "highprec":
            approx, how = refine_minimax(approx, prec=args.prec), f"minimax refined at {args.prec} bits"
    t_approx = time.perf_counter() - t0
    cert = certify(tgt, approx, dom, type=(m, n), rtol=args.rtol, prec=args.prec)
    out = cert.to_dict(coefficients=args.coefficients)
    out["approximant"] = how
    out["approximation_seconds"] = t_approx
    return out
