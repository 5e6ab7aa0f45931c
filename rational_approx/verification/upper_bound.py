"""Certified upper bound of ‖f − r‖_∞ by adaptive Taylor-form subdivision in ball arithmetic.

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
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import mpmath
from flint import arb, arb_poly

from rational_approx.representation.domain import Domain
from rational_approx.representation.multiprecision import abs_down, abs_up, arb_from_mpf, working_precision
from rational_approx.representation.targets import Target
from rational_approx.verification.exact import ExactRational, domain_pieces, exact_rational, exact_target

__all__ = ["SupBound", "certified_sup_error"]

_INF = math.inf


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
        bound = max(abs_up(v) for v in quad)
        tail = sum((abs(em[j]) * rho**j for j in range(3, self.K + 1)), arb(0)) + abs(
            rem[self.K + 1]
        ) * rho ** (self.K + 1)
        total = arb(bound) + tail
        return arb(0, abs_up(total)), em[0], mid


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
    tgt, dom, breaks, piece = exact_target(target, domain)
    with working_precision(prec):
        R = r if isinstance(r, ExactRational) else exact_rational(r, prec=prec)
        P, Q = R.polys()
        pieces = domain_pieces(dom, breaks)
        encs = [_Enclosure(P, Q, *piece(0.5 * (a + b))) for a, b in pieces]
        best_lo, argmax = 0.0, float("nan")
        for x in list(points or []) + [v for iv in pieces for v in iv]:
            xf = x if isinstance(x, mpmath.mpf) else mpmath.mpf(float(x))
            for (a, b), enc in zip(pieces, encs, strict=True):
                if a <= xf <= b:
                    xa = arb_from_mpf(xf)
                    if enc.Q(xa).contains(0):
                        break
                    v = abs_down(enc.point(xa))
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
                bound = abs_up(enc)
                v = abs_down(em)
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

