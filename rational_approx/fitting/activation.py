"""Initial coefficients for trainable rational activations (the RSAE "synthetic fit", done as a true minimax fit).

A rational activation in the safe-Padé form (Molina et al., ICLR 2020; the RSAE paper) is

    r(t) = P(t) / (1 + |B(t)|),   P(t) = Σ_{i=0..m} a_i t^i,   B(t) = Σ_{j=1..n} b_j t^j,

which has no real pole for any coefficients. Starting from the best type-(m, n) approximation P/Q of the gate on its
design domain (normalised so Q(0) = 1, i.e. Q = 1 + B), the safe form reproduces P/Q exactly on an interval where
B ≥ 0. :func:`activation_coefficients` checks that condition exactly (B's minimum over the interval from the real roots
of B') and measures the sup error *of the safe form itself* on the domain, so the number reported is the error of the
function a network will actually evaluate.

Default types follow the paper: (3, 2) for ReLU, (9, 8) for JumpReLU and TopK gates.

Example
-------
>>> c = activation_coefficients("relu")
>>> c.type, round(c.error, 6)
((3, 2), 0.021845)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from rational_approx.errors import IllConditionedWarning
from rational_approx.fitting.minimax import minimax
from rational_approx.representation.domain import Domain
from rational_approx.representation.extrema import sup_error
from rational_approx.representation.safepade import SafePade, relaxed_remez

__all__ = ["ActivationCoefficients", "activation_coefficients", "DEFAULT_TYPES", "GATE_ALIASES"]

DEFAULT_TYPES = {"relu": (3, 2), "abs": (4, 4), "jumprelu": (9, 8), "topk_gate": (9, 8), "heaviside": (9, 8),
                 "sign": (9, 8)}
GATE_ALIASES = {"topk": "topk_gate", "batchtopk": "topk_gate", "standard": "relu"}  # SAE family → gate


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
        b_1..b_n of the denominator 1 + |Σ b_j t^j|.
    domain : Domain
        Where the fit is uniform (the design interval [−1, 1], minus a gap around a jump).
    error : float
        sup over the domain of |gate − safe-Padé r|, located by extremum search.
    minimax_error : float
        E_{m,n} of the plain rational P/Q (equals ``error`` when ``safe_form_exact``).
    safe_form_exact : bool
        B ≥ 0 on the hull of the domain, so 1 + |B| = Q and the safe form equals the minimax rational there.
    conversion_error : float
        Relative error of the monomial coefficients against the barycentric minimax rational.
    params : dict
        Gate parameters (theta, tau, gap).
    method : str
        ``"minimax"`` (the safe form equals the minimax rational) or ``"relaxed_remez"`` (the safe form was fitted
        directly because B changes sign on the interval).
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

    def __call__(self, t: np.ndarray | float) -> np.ndarray:
        return SafePade(self.a, self.b)(t)

    def to_dict(self) -> dict:
        return {
            "gate": self.gate, "type": list(self.type), "a": self.a.tolist(), "b": self.b.tolist(),
            "domain": [list(iv) for iv in self.domain.intervals], "error": self.error,
            "minimax_error": self.minimax_error, "safe_form_exact": self.safe_form_exact,
            "conversion_error": self.conversion_error, "params": self.params, "method": self.method,
        }


def _min_on_interval(c: np.ndarray, lo: float, hi: float) -> float:
    """Minimum of the polynomial with ascending coefficients c over [lo, hi] (critical points from the roots of c')."""
    P = np.polynomial.Polynomial(c)
    crit = [lo, hi]
    if c.size > 2:
        roots = P.deriv().roots()
        crit += [r.real for r in roots if abs(r.imag) < 1e-12 and lo <= r.real <= hi]
    return float(np.min(P(np.array(crit))))


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
    type : (m, n); default :data:`DEFAULT_TYPES` [gate].
    theta, tau : thresholds of the JumpReLU / Heaviside / TopK gates in design units (defaults in
        :func:`rational_approx.representation.targets.get_target`).
    gap : half-width of the gap around a jump (default 0.05).
    domain : override the design domain (default [−1, 1], gapped around a jump).
    """
    gate = GATE_ALIASES.get(gate, gate)
    if type is None:
        if gate not in DEFAULT_TYPES:
            raise ValueError(f"no default type for gate {gate!r}; pass type=(m, n)")
        type = DEFAULT_TYPES[gate]
    res = minimax(gate, type, domain, gap=gap, theta=theta, tau=tau)  # resolves target and domain once
    tgt, dom = res.target, res.domain
    m, n = res.type
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IllConditionedWarning)
        pq = res.r.to_monomial((dom.a, dom.b))
    q0 = pq.q[0]
    a = np.asarray(pq.p, dtype=float) / q0
    qn = np.asarray(pq.q, dtype=float) / q0
    b = qn[1:]
    # B ≥ 0 up to the rounding of the conversion (odd coefficients that vanish by symmetry come out as ±1e-16·|b|)
    bmax = float(np.sum(np.abs(b)) * max(abs(dom.a), abs(dom.b)) ** np.arange(1, n + 1).max()) if n else 0.0
    safe_exact = bool(n == 0 or _min_on_interval(np.concatenate([[0.0], b]), dom.a, dom.b) >= -1e-12 * bmax)
    breaks = np.concatenate([res.extremal_points, np.asarray(tgt.singular_points)])

    def safe_error(a_, b_):
        return sup_error(lambda x: tgt.f(x) - SafePade(a_, b_)(x), dom, breaks)[0]

    error = safe_error(a, b)
    how = "minimax"
    if not safe_exact:
        # 1 + |B| ≠ Q somewhere on the interval: fit the safe form itself (relaxed Remez from the minimax start)
        fit = relaxed_remez(tgt, (m, n), dom, form="safe", init=SafePade(a, b))
        fit_error = safe_error(fit.r.a, fit.r.b)
        if fit_error < error:
            a, b, error, how = fit.r.a, fit.r.b, fit_error, "relaxed_remez"
    return ActivationCoefficients(
        gate=gate, type=(m, n), a=a, b=b, domain=dom, error=error, minimax_error=res.error,
        safe_form_exact=safe_exact, conversion_error=pq.conversion_error,
        params={**tgt.params, **({"gap": gap} if gap is not None else {})}, method=how,
    )
