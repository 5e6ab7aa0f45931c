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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rational_approx.errors import RationalApproxError
from rational_approx.representation.domain import Domain
from rational_approx.representation.multiprecision import working_precision
from rational_approx.representation.targets import Target, resolve_target
from rational_approx.verification.exact import ExactRational, exact_rational, exact_target
from rational_approx.verification.lower_bound import LowerBound, vallee_poussin_lower_bound
from rational_approx.verification.pole_free import certify_pole_free
from rational_approx.verification.upper_bound import SupBound, certified_sup_error

__all__ = ["Certificate", "certify", "check_certify_options", "approximant_to_certify", "APPROXIMANT_SOURCES"]

_INF = math.inf


def check_certify_options(*, rtol: float, prec: int, max_intervals: int = 1, max_seconds: float | None = None) -> None:
    """Validate the work options of :func:`certify` (raise :class:`RationalApproxError` with one clear line)."""
    if isinstance(rtol, bool) or not isinstance(rtol, int | float) or not 0 < rtol < 1:
        raise RationalApproxError(f"rtol must be a number in (0, 1) (relative tightness of the upper bound), got "
                                  f"{rtol!r}")
    if isinstance(prec, bool) or not isinstance(prec, int) or prec < 32:
        raise RationalApproxError(f"prec must be an integer ≥ 32 (bits of the ball arithmetic), got {prec!r}")
    if isinstance(max_intervals, bool) or not isinstance(max_intervals, int) or max_intervals < 1:
        raise RationalApproxError(f"max_intervals must be a positive integer, got {max_intervals!r}")
    if max_seconds is not None and not (isinstance(max_seconds, int | float) and max_seconds > 0
                                        and math.isfinite(max_seconds)):
        raise RationalApproxError(f"max_seconds must be a positive number of seconds, got {max_seconds!r}")


#: Where :func:`approximant_to_certify` takes the approximant from (the ``--source`` of ``rational-approx certify``).
APPROXIMANT_SOURCES = ("auto", "highprec", "minimax")


def approximant_to_certify(target: Target, type: tuple[int, int], domain: Domain, *, source: str = "highprec",
                           prec: int = 256, progress: Callable[[str], None] | None = None) -> tuple[Any, str]:
    """A best type-(m, n) approximant of ``target`` on ``domain`` to hand to :func:`certify`, and how it was made.

    ``source``: "auto" — the multiprecision Remez of :mod:`rational_approx.fitting.highprec` for |x| of type (n, n)
    and ReLU of type (2k + 1, 2k) on [−1, 1] (``abs_minimax`` / ``relu_minimax``), else the double-precision
    :func:`~rational_approx.fitting.minimax.minimax`; "highprec" — the same, with that minimax refined at ``prec``
    bits by :func:`~rational_approx.fitting.refine.refine_minimax`; "minimax" — always the double-precision minimax.
    ``progress`` receives one-line status messages. Returns (approximant, description).
    """
    if source not in APPROXIMANT_SOURCES:
        raise RationalApproxError(f"source must be one of {', '.join(APPROXIMANT_SOURCES)}, got {source!r}")
    from rational_approx.fitting.highprec import abs_minimax, relu_minimax
    from rational_approx.fitting.minimax import minimax
    from rational_approx.fitting.refine import refine_minimax

    def say(text: str) -> None:
        if progress is not None:
            progress(text)

    m, n = type
    standard = source != "minimax" and domain.intervals == ((-1.0, 1.0),)
    if standard and target.name == "abs" and m == n and n >= 2:
        how = f"highprec.abs_minimax({n})"
        say(f"computing the approximant {how} …")
        return abs_minimax(n, progress=progress), how
    if standard and target.name == "relu" and m == n + 1 and n % 2 == 0 and n >= 2:
        how = f"highprec.relu_minimax({n // 2})"
        say(f"computing the approximant {how} …")
        return relu_minimax(n // 2, progress=progress), how
    how = "minimax (double precision)"
    say(f"computing the approximant: {how} …")
    approx = minimax(target, (m, n), domain)
    if source == "highprec":
        how = f"minimax refined at {prec} bits"
        say(f"refining it at {prec} bits …")
        approx = refine_minimax(approx, prec=prec)
    return approx, how


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
        (upper − lower)/lower; inf when no lower bound was proved (``to_dict`` writes null with a note).
    partial : bool
        The time limit (``max_seconds``) ran out: the bracket is still rigorous, only wider than ``rtol`` asks.
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

    @property
    def partial(self) -> bool:
        return self.sup.timed_out

    def to_dict(self, *, coefficients: bool = False) -> dict:
        """Strict-JSON-ready dict: a non-finite bound is null with ``<key>_note`` saying why."""
        d = {
            "target": self.target,
            "type": list(self.type),
            "domain": [list(iv) for iv in self.domain.intervals],
            "lower": self.lower,
            "upper": self.upper,
            "relative_width": self.relative_width,
            "certified": self.certified,
            "partial": self.partial,
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
        reasons = {"upper": "the upper bound could not be proved finite (q not proved non-zero on some piece, or the "
                            "working precision is too low)",
                   "relative_width": "no positive lower bound was proved"}
        for key, why in reasons.items():
            if not math.isfinite(d[key]):
                d[key], d[f"{key}_note"] = None, why
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
    max_seconds: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> Certificate:
    """Certified bracket of the best error E_{m,n}(f, D) from an approximant r and its alternation set.

    Parameters
    ----------
    target : named piecewise-linear target or its name.
    r : HighPrecResult, MinimaxResult, BarycentricRational, PolyQuotient or (p, q) (:func:`exact_rational`).
    domain : default: r's domain when it has one, else the target's default domain.
    type : (m, n); default r's type.
    reference : alternation points for the lower bound; default r's extremal points or a sampled search.
    rtol : relative tightness requested of the upper bound with respect to max |f − r̃|, in (0, 1).
    prec : ball precision in bits (≥ 32).
    max_intervals : work limit of the upper bound (a positive integer).
    max_seconds : time limit of the upper bound's subdivision; when it runs out the bracket is returned as it stands
        (rigorous, wider than ``rtol``) and ``partial`` is True.
    progress : called with one-line status messages (about every 5 s during the upper bound).

    Returns
    -------
    Certificate
    """
    t0 = time.perf_counter()
    check_certify_options(rtol=rtol, prec=prec, max_intervals=max_intervals, max_seconds=max_seconds)
    tgt = resolve_target(target)
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
            max_seconds=max_seconds,
            progress=progress,
        )
        if progress is not None:
            progress(f"upper bound done ({sup.intervals} intervals, {sup.seconds:.1f} s); lower bound (de la Vallée "
                     f"Poussin) …")
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

