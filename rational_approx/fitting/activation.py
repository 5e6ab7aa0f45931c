"""Initial coefficients for trainable rational activations (the RSAE "synthetic fit", done as a true minimax fit).

A rational activation in the safe-Padé form with a free constant (Molina et al., ICLR 2020; the RSAE paper) is

    r(t) = P(t) / (1 + |B(t)|),   P(t) = Σ_{i=0..m} a_i t^i,   B(t) = b_0 + Σ_{j=1..n} b_j t^j,

which has no real pole for any coefficients. Starting from the best type-(m, n) approximation p/q of the gate on its
design domain, whose denominator has no zero on the domain's hull [lo, hi], the safe form reproduces p/q exactly there:
with s = (1 + 10⁻⁶) / min q, a = s·p, b_0 = s·q_0 − 1, b_j = s·q_j, B = s·q − 1 ≥ 10⁻⁶ > 0 on [lo, hi], so
1 + |B| = s·q (:meth:`~rational_approx.representation.safepade.SafePade.from_rational`; the margin 10⁻⁶ keeps B
positive through the rounding of its float64 evaluation). :func:`activation_coefficients` measures the sup error
*of the safe form itself* on the domain, so the number reported is the error of the function a network will evaluate,
and :meth:`ActivationCoefficients.certify` bounds it rigorously (ball arithmetic).

If the minimax denominator vanished on the hull (a pole in a gap), no pole-free form could equal it; the safe form is
then fitted directly by the relaxed Remez exchange and ``method`` says so.

One table of default types, :data:`DEFAULT_TYPES` (the paper's): (3, 2) for ReLU, (9, 8) for the JumpReLU and TopK
gates, keyed by gate and, through :data:`GATE_ALIASES`, by SAE family; :func:`default_type` reads it. The JumpReLU
and Heaviside gates default to θ = 0.5 and the TopK gate to τ = 0.5 in design units, with a gap of half-width 0.05
around the jump (:func:`rational_approx.representation.targets.get_target`).

Example
-------
>>> c = activation_coefficients("relu")
>>> c.type, round(c.error, 6)
((3, 2), 0.021845)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from rational_approx.errors import IllConditionedWarning, RationalApproxError
from rational_approx.fitting.minimax import minimax
from rational_approx.representation.domain import Domain
from rational_approx.representation.extrema import sup_error
from rational_approx.representation.safepade import SafePade, polynomial_min, relaxed_remez

__all__ = ["ActivationCoefficients", "activation_coefficients", "default_type", "DEFAULT_TYPES", "GATE_ALIASES",
           "SAFE_MARGIN"]

DEFAULT_TYPES = {"relu": (3, 2), "abs": (4, 4), "jumprelu": (9, 8), "topk_gate": (9, 8), "heaviside": (9, 8),
                 "sign": (9, 8)}
GATE_ALIASES = {"topk": "topk_gate", "batchtopk": "topk_gate", "standard": "relu"}  # SAE family → gate
SAFE_MARGIN = 1e-6
"""B = s·q − 1 ≥ SAFE_MARGIN on the hull of the domain after the exact conversion (see the module docstring)."""


def default_type(gate: str) -> tuple[int, int]:
    """The default rational type of a gate or SAE family name (:data:`DEFAULT_TYPES`, through :data:`GATE_ALIASES`).

    >>> default_type("relu"), default_type("batchtopk")
    ((3, 2), (9, 8))
    """
    key = GATE_ALIASES.get(gate, gate)
    if key not in DEFAULT_TYPES:
        raise ValueError(f"no default rational type for gate {gate!r} (defaults exist for "
                         f"{sorted(set(DEFAULT_TYPES) | set(GATE_ALIASES))}); pass type=(m, n)")
    return DEFAULT_TYPES[key]


@dataclass(frozen=True)
class ActivationCoefficients:
    """Coefficients of a safe-Padé activation fitted to a gate.

    Attributes
    ----------
    gate : str
    type : (m, n)
    a : ndarray, shape (m+1,)
        Numerator coefficients, ascending powers of t.
    b : ndarray, shape (n,)
        b_1..b_n of the denominator 1 + |b_0 + Σ b_j t^j|.
    domain : Domain
        Where the fit is uniform (the design interval [−1, 1], minus a gap around a jump).
    error : float
        sup over the domain of |gate − safe-Padé r|, located by extremum search.
    minimax_error : float
        E_{m,n} of the minimax rational p/q (equals ``error`` when ``safe_form_exact``, up to the float64
        evaluation of the monomial coefficients).
    safe_form_exact : bool
        B > 0 on the hull of the domain, so 1 + |B| = s·q and the safe form equals the minimax rational there.
    conversion_error : float
        Relative error of the monomial coefficients against the barycentric minimax rational.
    params : dict
        Gate parameters (theta, tau, gap).
    method : str
        ``"minimax"`` (the safe form equals the minimax rational) or ``"relaxed_remez"`` (the safe form was fitted
        directly because the minimax denominator vanishes on the interval).
    b0 : float
        The denominator's free constant b_0.
    """

    gate: str
    type: tuple[int, int]
    a: np.ndarray
    b: np.ndarray
    domain: Domain
    error: float
    minimax_error: float
    safe_form_exact: bool
    conversion_error: float
    params: dict
    method: str = "minimax"
    b0: float = 0.0

    @property
    def safe_pade(self) -> SafePade:
        """The coefficients as a :class:`~rational_approx.representation.safepade.SafePade`."""
        return SafePade(self.a, self.b, "safe", self.b0)

    def __call__(self, t: np.ndarray | float) -> np.ndarray:
        return self.safe_pade(t)

    def to_dict(self) -> dict:
        return {
            "gate": self.gate, "type": list(self.type), "a": self.a.tolist(), "b0": self.b0, "b": self.b.tolist(),
            "domain": [list(iv) for iv in self.domain.intervals], "error": self.error,
            "minimax_error": self.minimax_error, "safe_form_exact": self.safe_form_exact,
            "conversion_error": self.conversion_error, "params": self.params, "method": self.method,
        }


def _exact_monomial(r: Any, m: int, n: int) -> tuple[list[Fraction], list[Fraction]]:
    """Monomial coefficients of the barycentric rational ``r`` expanded in exact rational arithmetic.

    p = Σ_k w_k f_k Π_{j≠k} (x − z_j), q = Σ_k w_k Π_{j≠k} (x − z_j) with the stored data taken as exact, truncated
    to degrees (m, n) (the higher coefficients vanish in exact arithmetic up to the data's rounding). The float64
    conversion of :meth:`BarycentricRational.to_monomial` loses accuracy here (relative 1e-9 in the (9, 8) gate
    fit's coefficients, 2.6e-5 in its sup error); rounding exact coefficients once each loses 2e-7.
    """
    if np.iscomplexobj(r.z) or np.iscomplexobj(r.f) or np.iscomplexobj(r.w):
        raise RationalApproxError("the minimax rational has complex barycentric data; cannot form real coefficients")
    z, f, w = ([Fraction(float(v)) for v in arr] for arr in (r.z, r.f, r.w))
    N = len(z)
    P = [Fraction(0)] * N
    Q = [Fraction(0)] * N
    for k in range(N):
        lk = [Fraction(1)]
        for j in range(N):
            if j != k:  # multiply by (x − z_j)
                lk = [(lk[i - 1] if i else 0) - z[j] * (lk[i] if i < len(lk) else 0) for i in range(len(lk) + 1)]
        wf = w[k] * f[k]
        for i, c in enumerate(lk):
            P[i] += wf * c
            Q[i] += w[k] * c
    return P[: m + 1] + [Fraction(0)] * max(0, m + 1 - N), Q[: n + 1] + [Fraction(0)] * max(0, n + 1 - N)


def activation_coefficients(
    gate: str = "relu",
    type: tuple[int, int] | None = None,
    *,
    theta: float | None = None,
    tau: float | None = None,
    gap: float | None = None,
    domain: Domain | None = None,
) -> ActivationCoefficients:
    """Best type-(m, n) rational for ``gate`` on its design domain, in safe-Padé coefficients.

    Parameters
    ----------
    gate : "relu", "abs", "jumprelu", "topk_gate", "heaviside" or "sign".
    type : (m, n); default :func:`default_type` (gate).
    theta, tau : thresholds of the JumpReLU / Heaviside / TopK gates in design units (defaults in
        :func:`rational_approx.representation.targets.get_target`).
    gap : half-width of the gap around a jump (default 0.05).
    domain : override the design domain (default [−1, 1], gapped around a jump).
    """
    if type is None:
        type = default_type(gate)
    gate = GATE_ALIASES.get(gate, gate)
    res = minimax(gate, type, domain, gap=gap, theta=theta, tau=tau)  # resolves target and domain once
    tgt, dom = res.target, res.domain
    m, n = res.type
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IllConditionedWarning)
        pq = res.r.to_monomial((dom.a, dom.b))
    p_exact, q_exact = _exact_monomial(res.r, m, n)
    p = np.array([float(c) for c in p_exact])
    q = np.array([float(c) for c in q_exact])
    if -polynomial_min(-q, dom.a, dom.b) < 0:  # the sign convention of q is free: make it positive
        p, q = -p, -q
        p_exact, q_exact = [-c for c in p_exact], [-c for c in q_exact]
    breaks = np.concatenate([res.extremal_points, np.asarray(tgt.singular_points)])

    def safe_error(r: SafePade) -> float:
        return sup_error(lambda x: tgt.f(x) - r(x), dom, breaks)[0]

    qmin = polynomial_min(q, dom.a, dom.b)
    safe_exact = bool(qmin > 0)
    if safe_exact:
        sc = Fraction((1 + SAFE_MARGIN) / qmin)  # any s ≥ 1/min q is exact; one rounding per coefficient below
        r = SafePade([float(sc * c) for c in p_exact], [float(sc * c) for c in q_exact[1:]], "safe",
                     float(sc * q_exact[0] - 1))
        error, how = safe_error(r), "minimax"
    else:
        # p/q has a pole on the hull (in a gap): no pole-free form equals it; fit the safe form itself
        # (relaxed Remez from the minimax numerator and denominator normalised to q(0) = 1)
        q0 = float(np.polynomial.polynomial.polyval(0.0, q)) or 1.0
        fit = relaxed_remez(tgt, (m, n), dom, form="safe", init=SafePade(p / q0, q[1:] / q0, "safe", q[0] / q0 - 1))
        r, error, how = fit.r, safe_error(fit.r), "relaxed_remez"
    return ActivationCoefficients(
        gate=gate, type=(m, n), a=r.a, b=r.b, domain=dom, error=error, minimax_error=res.error,
        safe_form_exact=safe_exact, conversion_error=pq.conversion_error,
        params={**tgt.params, **({"gap": gap} if gap is not None else {})}, method=how, b0=r.b0,
    )
