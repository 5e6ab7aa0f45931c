"""Certified two-sided bounds on best rational approximation errors, and pole-free certificates.

A certificate here is a statement proved by ball arithmetic (python-flint's ``arb``: every quantity is an
interval [mid ± rad] guaranteed to contain the exact value; Johansson, "Arb: efficient arbitrary-precision
midpoint-radius interval arithmetic", IEEE Trans. Computers 66 (2017)) about an *exactly specified* rational
function.

The parts, one file each:

* :mod:`~rational_approx.verification.exact` — which r is certified: every input turned into ball polynomials p, q;
* :mod:`~rational_approx.verification.upper_bound` — a rigorous upper bound of ‖f − r‖_∞ (Taylor-form
  subdivision), :func:`~rational_approx.verification.upper_bound.certified_sup_error`;
* :mod:`~rational_approx.verification.lower_bound` — de la Vallée Poussin's lower bound of E_{m,n}(f),
  :func:`~rational_approx.verification.lower_bound.vallee_poussin_lower_bound`;
* :mod:`~rational_approx.verification.pole_free` — q ≠ 0 on the domain,
  :func:`~rational_approx.verification.pole_free.certify_pole_free`;

and here :func:`certify`, which runs them on one approximant and returns the two-sided bracket
lower ≤ E_{m,n}(f, D) ≤ upper as a :class:`Certificate`.

Example
-------
>>> from rational_approx.verification.certify import certify
>>> from rational_approx.fitting.highprec import abs_minimax
>>> cert = certify("abs", abs_minimax(4))
>>> cert.certified, cert.lower <= 0.00850148470407383 <= cert.upper
(True, True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rational_approx.representation.domain import Domain
from rational_approx.representation.multiprecision import working_precision
from rational_approx.representation.targets import Target, get_target
from rational_approx.verification.exact import ExactRational, exact_rational, exact_target
from rational_approx.verification.lower_bound import LowerBound, vallee_poussin_lower_bound
from rational_approx.verification.pole_free import certify_pole_free
from rational_approx.verification.upper_bound import SupBound, certified_sup_error

__all__ = ["Certificate", "certify"]

_INF = math.inf


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
    tgt, dom, _, _ = exact_target(tgt, domain)
    with working_precision(prec):
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

