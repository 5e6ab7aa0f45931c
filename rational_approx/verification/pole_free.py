"""Certificates that a denominator has no zero on a domain (plain and safe-Padé forms).

**Pole-free** (:func:`certify_pole_free`): q(X) ∌ 0 on every leaf of an adaptive subdivision (mean-value form
q(m) + q'(X)·[−ρ, ρ] ∩ q(X)), or, for a safe-Padé denominator 1 + |Σ_{j≥1} b_j x^j| (or 1 + Σ|b_j||x|^j), the
form itself (≥ 1 everywhere) together with a check that its floating-point evaluation cannot overflow on the
domain and agrees with the exact form within the Horner rounding bound.

"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flint import arb, arb_poly

from rational_approx.errors import RationalApproxError
from rational_approx.fitting.mp_remez import HighPrecResult
from rational_approx.representation.barycentric import BarycentricRational, PolyQuotient
from rational_approx.representation.domain import Domain
from rational_approx.representation.multiprecision import (
    abs_down,
    abs_up,
    arb_from_mpf,
    round_up,
    working_precision,
)
from rational_approx.verification.exact import ExactRational, coefficient_balls, exact_rational

__all__ = ["PoleFreeCertificate", "certify_pole_free"]

_INF = math.inf


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


def _not_proved(form: str, method: str, t0: float, notes: list[str],
                zero_in: tuple[float, float] | None = None) -> PoleFreeCertificate:
    """The certificate of a denominator not proved zero-free (min |q| bound 0)."""
    return PoleFreeCertificate(False, 0.0, form, zero_in, method, time.perf_counter() - t0, notes)


def _denominator_poly(p_or_r: Any, prec: int) -> arb_poly:
    if isinstance(p_or_r, arb_poly):
        return p_or_r
    if isinstance(p_or_r, ExactRational | HighPrecResult | BarycentricRational | PolyQuotient) or hasattr(
        p_or_r, "r"
    ):
        return exact_rational(p_or_r, prec=prec).polys()[1]
    if isinstance(p_or_r, tuple | list) and len(p_or_r) == 2 and all(
        isinstance(c, Sequence | np.ndarray) and not isinstance(c, str) for c in p_or_r
    ):  # a (p, q) pair: its denominator
        return arb_poly(coefficient_balls(p_or_r[1], "q"))
    if isinstance(p_or_r, Sequence | np.ndarray) and not isinstance(p_or_r, str):
        return arb_poly(coefficient_balls(p_or_r, "the denominator"))
    raise RationalApproxError(
        f"cannot read a denominator from {p_or_r.__class__.__name__}; pass coefficients "
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
    with working_precision(prec):
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
                            return _not_proved(form, "interval subdivision", t0,
                                               [f"q changes sign between {xa:.17g} and {xb:.17g}: "
                                                f"a certified zero (pole of r unless cancelled)"], zero_in=(xa, xb))
                if not encl.contains(0):
                    min_abs = min(min_abs, abs_down(encl))
                    continue
                if depth >= max_depth or not mid.is_exact():
                    return _not_proved(form, "interval subdivision", t0,
                                       [f"could not exclude a zero of q in [{float(lo.mid()):.17g}, "
                                        f"{float(hi.mid()):.17g}] (depth {depth})"])
                stack.append((lo, mid, depth + 1))
                stack.append((mid, hi, depth + 1))
    return PoleFreeCertificate(True, min_abs, form, None, "interval subdivision (mean-value form)",
                               time.perf_counter() - t0, [f"|q| ≥ {min_abs:.6g} on {dom}"])


def _safe_pade_pole_free(
    b_coeffs: Any, dom: Domain, form: str, prec: int, dtype: str, t0: float
) -> PoleFreeCertificate:
    """Safe-Padé denominators are ≥ 1 by construction; certify the floating-point evaluation of that form."""
    b = np.asarray(getattr(b_coeffs, "b", b_coeffs), dtype=float).ravel()
    if not np.all(np.isfinite(b)):
        return _not_proved(form, "form", t0, ["denominator coefficients are not all finite"])
    if dtype not in ("float64", "float32"):
        raise RationalApproxError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    ftype = np.float64 if dtype == "float64" else np.float32
    bt = b.astype(ftype)
    notes = [
        "Q(x) = 1 + |Σ_{j≥1} b_j x^j| ≥ 1 for every real x"
        if form == "safe_pade"
        else "Q(x) = 1 + Σ_{j≥1} |b_j| |x|^j ≥ 1 for every real x"
    ]
    with working_precision(prec):
        xmax = arb_from_mpf(max(abs(dom.a), abs(dom.b)))
        coeffs = [arb_from_mpf(float(c)) for c in bt]  # the coefficients as the float formula sees them
        bound = sum((abs(c) * xmax ** (j + 1) for j, c in enumerate(coeffs)), arb(0))
        big = round_up(bound)
        fmax = float(np.finfo(ftype).max)
        if not big < fmax / 4:
            return _not_proved(form, "form + overflow bound", t0,
                               notes + [f"Σ|b_j||x|^j reaches {big:.3g} on the domain: {dtype} may overflow"])
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
            allowed = round_up(absum * gamma + exact * u) * 2
            dev = abs_up(arb_from_mpf(float(qf)) - exact)
            if not (float(qf) >= 1.0 and math.isfinite(float(qf))) or dev > allowed:
                return _not_proved(form, "form + float check", t0,
                                   notes + [f"{dtype} evaluation at x = {float(xv):.9g} gives {float(qf)!r}, "
                                            f"exact form {exact.str(10)}: the float formula is not the form"])
            worst = max(worst, dev / max(allowed, 1e-300))
    notes.append(
        f"{dtype} formula finite (|B| ≤ {big:.3g}) and ≥ 1 on the domain; it matches the exact form within "
        f"the Horner rounding bound at {len(xs)} sample points (worst {worst:.2f} of the bound)"
    )
    return PoleFreeCertificate(
        True, 1.0, form, None, "form (Q ≥ 1) + overflow bound + float check", time.perf_counter() - t0, notes
    )

