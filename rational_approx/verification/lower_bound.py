"""Certified lower bound of the best error E_{m,n}(f, D): de la Vallée Poussin's theorem in ball arithmetic.

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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import mpmath
import numpy as np
from flint import arb

from rational_approx.fitting.mp_remez import HighPrecResult
from rational_approx.representation.domain import Domain
from rational_approx.representation.extrema import alternating_indices, golden_section_max
from rational_approx.representation.multiprecision import abs_down, arb_from_mpf, working_precision
from rational_approx.representation.targets import Target
from rational_approx.verification.exact import ExactRational, domain_pieces, exact_rational, exact_target
from rational_approx.verification.pole_free import certify_pole_free

__all__ = ["LowerBound", "vallee_poussin_lower_bound"]


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


def _bound(lower: float, holds: bool, cls: str, points: list, defect: int, required: int,
           notes: list[str]) -> LowerBound:
    """A :class:`LowerBound` whose points and errors are those of ``points`` ((x, e ball, sign) triples)."""
    return LowerBound(lower, holds, cls, [float(x) for x, _, _ in points], [float(e.mid()) for _, e, _ in points],
                      defect, required, notes)


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
                pts.append(float(golden_section_max(lambda t, s=s: s * (tgt.f(np.array(t)) - R(t)),
                                                    float(x[i - 1]), float(x[i + 1]))))
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
    tgt, dom, breaks, piece = exact_target(target, domain)
    notes: list[str] = []
    with working_precision(prec):
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
        pieces = domain_pieces(dom, breaks)
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
        alt = [vals[i] for i in alternating_indices([e for _, e, _ in vals], magnitude=abs_down)]

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
                        low = min(abs_down(e) for _, e, _ in window)
                        if best is None or low > best[0]:
                            best = (low, window, cls)
                        break
            if best is not None:
                break
        if best is None:
            required = m + n + 2 - d
            return _bound(0.0, False, "domain", alt, d, required,
                          notes + [f"only {len(alt)} certified alternating points; (VP) needs {required} "
                                   f"(type {(m, n)}, defect {d})"])
        low, window, cls = best
        crossings = sum(
            1 for a_, b_ in zip(window, window[1:], strict=False) if interval_of(a_[0]) != interval_of(b_[0])
        )
        required = m + n + 2 - d + (crossings if cls == "domain" else 0)
        region = dom if cls == "domain" else Domain.interval(dom.a, dom.b)
        pf = certify_pole_free(R, region, prec=prec)
        if not pf.pole_free:
            return _bound(0.0, False, cls, window, d, required,
                          notes + [f"q not proved zero-free on {region}: " + "; ".join(pf.notes)])
        if cls == "hull":
            notes.append(
                "gapped domain with too few alternations for r* with poles in the gaps: the bound holds for "
                "approximants with no pole in the convex hull of the domain"
            )
        notes.append(
            f"type {(m, n)}, deg p ≤ {dp}, deg q ≤ {dq}, defect {d}; {len(window)} alternating points "
            f"({crossings} across gaps), {required} required"
        )
    return _bound(low, True, cls, window, d, required, notes)

