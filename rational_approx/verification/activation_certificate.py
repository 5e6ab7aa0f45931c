"""A certificate of a safe-Padé activation's coefficients as they stand (float64), on the gate's design domain.

Two ball-arithmetic steps: (1) B = b_0 + Σ b_j t^j has no zero on the hull of the domain
(:func:`~rational_approx.verification.pole_free.certify_pole_free` on B as a "denominator") and is positive at the
midpoint, so |B| = B there and the safe form *is* the rational P / (1 + B); (2) rigorous upper and lower bounds of
sup |gate − P/(1 + B)| over the domain (:func:`~rational_approx.verification.upper_bound.certified_sup_error`), with
1 + b_0 formed exactly.

Example
-------
>>> from rational_approx import activation_coefficients, certify_activation
>>> cert = certify_activation(activation_coefficients("relu"))
>>> cert["exact_form"], cert["lower"] <= 0.0218445064 <= cert["upper"]
(True, True)
"""

from __future__ import annotations

from decimal import Decimal, localcontext

import numpy as np

from rational_approx.fitting.activation import ActivationCoefficients
from rational_approx.representation.domain import Domain
from rational_approx.representation.targets import resolve_target
from rational_approx.verification.pole_free import certify_pole_free
from rational_approx.verification.upper_bound import certified_sup_error

__all__ = ["certify_activation"]


def certify_activation(c: ActivationCoefficients, *, rtol: float = 1e-7, prec: int = 256) -> dict:
    """Rigorous bounds on the sup error of the safe form of ``c`` (module docstring).

    Returns a strict-JSON dict: ``B_min_lower`` (a lower bound of min B), ``upper``, ``lower``, ``exact_form``
    (step 1 proved), ``complete`` (step 2 covered the whole domain), ``seconds``.
    """
    lo, hi = c.domain.a, c.domain.b
    Bc = np.concatenate([[c.b0], c.b])
    pole = certify_pole_free(Bc.tolist(), Domain.interval(lo, hi), prec=prec)
    positive = bool(pole.pole_free and np.polynomial.polynomial.polyval(0.5 * (lo + hi), Bc) > 0)
    with localcontext() as dctx:
        dctx.prec = 80
        one_plus_b0 = str(Decimal(1) + Decimal(float(c.b0)))  # exact: 80 digits hold 1 + a double
    q = [one_plus_b0, *[float(v) for v in c.b]]
    tgt = resolve_target(c.gate, **{k: v for k, v in c.params.items() if k != "gap"})
    bound = certified_sup_error(tgt, ([float(v) for v in c.a], q), c.domain, rtol=rtol, prec=prec)
    return {"B_min_lower": pole.min_abs_q if positive else 0.0, "exact_form": positive,
            "upper": bound.upper if np.isfinite(bound.upper) else None, "lower": bound.lower,
            "complete": bool(bound.complete), "seconds": pole.seconds + bound.seconds}
