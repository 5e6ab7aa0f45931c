"""Shared arb / mpmath helpers: exact conversions, working precision, outward rounding, Chebyshev → monomial.

python-flint's ``arb`` (Johansson, "Arb: efficient arbitrary-precision midpoint-radius interval arithmetic",
IEEE Trans. Computers 66 (2017)) is a ball [mid ± rad] guaranteed to contain the exact value; mpmath's ``mpf`` is
a binary floating-point number of arbitrary precision. The high-precision solvers
(:mod:`rational_approx.fitting.highprec`, :mod:`rational_approx.fitting.refine`) compute with ball midpoints;
the certificates (:mod:`rational_approx.verification.certify` and its parts) need exact conversions and outward
rounding to floats. Both use the helpers here.

Example
-------
>>> from rational_approx.representation.multiprecision import arb_from_mpf, mpf_from_arb, round_up
>>> a = arb_from_mpf(0.1)            # the binary number 0.1000000000000000055511151231257827…, exactly
>>> a.is_exact(), float(mpf_from_arb(a)) == 0.1, round_up(a) > 0.1
(True, True, True)
"""

from __future__ import annotations

import math
from typing import Any

import mpmath
import numpy as np
from flint import arb, arb_poly, ctx
from mpmath.libmp import from_man_exp

from rational_approx.errors import TargetError

__all__ = [
    "arb_from_mpf",
    "mpf_from_arb",
    "exact_mid",
    "exact_number",
    "working_precision",
    "round_up",
    "round_down",
    "abs_up",
    "abs_down",
    "cheb_to_monomial",
]

_INF = math.inf


# ------------------------------------------------------------------------------------------------ conversions
def arb_from_mpf(x: mpmath.mpf | float | int) -> arb:
    """The exact arb value of a binary floating-point number (mpmath mpf, float or int): no rounding."""
    if not isinstance(x, mpmath.mpf):  # mpmath.mpf(an mpf) would round it to the current mp precision
        x = mpmath.mpf(float(x) if isinstance(x, float | np.floating) else int(x))
    sign, man, exp, _ = x._mpf_
    if man == 0:
        if exp != 0:  # mpmath encodes ±inf and nan as zero mantissa with a non-zero exponent
            raise TargetError(f"cannot convert non-finite {x} to a ball")
        return arb(0)
    return arb((-man if sign else man, exp))


def mpf_from_arb(x: arb) -> mpmath.mpf:
    """The midpoint of an arb ball as an exact mpmath mpf."""
    man, exp = x.mid().man_exp()
    return mpmath.mp.make_mpf(from_man_exp(int(man), int(exp)))  # exact; mpf((man, exp)) would round


def exact_mid(x: arb) -> arb:
    """Drop the radius (the working quantities of a Remez step are points, not enclosures)."""
    return x.mid()


def exact_number(c: Any) -> arb:
    """A ball containing the exact value of c: arb as is, binary numbers exactly, decimal strings at ctx.prec."""
    if isinstance(c, arb):
        return c
    if isinstance(c, str):
        with mpmath.workprec(ctx.prec):
            return arb_from_mpf(mpmath.mpf(c))
    if isinstance(c, mpmath.mpf | int | np.integer):
        return arb_from_mpf(c)
    return arb_from_mpf(float(c))


class working_precision:  # lower case: used like a function, ``with working_precision(256): ...``
    """Context manager setting flint's working precision (bits), restoring the previous one on exit."""

    def __init__(self, bits: int):
        self.bits = int(bits)

    def __enter__(self):
        self.old = ctx.prec
        ctx.prec = self.bits

    def __exit__(self, *exc):
        ctx.prec = self.old


# --------------------------------------------------------------------------------------------- float rounding
def round_up(a: arb) -> float:
    """A float ≥ every point of the ball a (rounded outward)."""
    if not a.is_finite():
        return _INF
    v = float(a.mid()) + float(a.rad())
    return math.nextafter(math.nextafter(v, _INF), _INF)


def round_down(a: arb) -> float:
    """A float ≤ every point of the ball a (rounded outward)."""
    if not a.is_finite():
        return -_INF
    v = float(a.mid()) - float(a.rad())
    return math.nextafter(math.nextafter(v, -_INF), -_INF)


def abs_up(a: arb) -> float:
    """A float ≥ |x| for every x in the ball a."""
    return round_up(a.abs_upper())


def abs_down(a: arb) -> float:
    """A float ≤ |x| for every x in the ball a (≥ 0)."""
    return max(0.0, round_down(a.abs_lower()))


# ------------------------------------------------------------------------------------------------------ bases
def cheb_to_monomial(c: list, a: arb, b: arb) -> list:
    """Monomial coefficients in x of Σ c_j T_j((2x − a − b)/(b − a)), in ball arithmetic."""
    s = arb_poly([-(a + b) / (b - a), 2 / (b - a)])
    T0, T1 = arb_poly([1]), s
    out = arb_poly([0]) + T0 * c[0]
    if len(c) > 1:
        out = out + T1 * c[1]
    for j in range(2, len(c)):
        T0, T1 = T1, 2 * s * T1 - T0
        out = out + T1 * c[j]
    coeffs = out.coeffs()
    return coeffs + [arb(0)] * (len(c) - len(coeffs))
