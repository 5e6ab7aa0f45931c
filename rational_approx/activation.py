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

from .domain import Domain
from .errors import IllConditionedWarning
from .extrema import sup_error
from .minimax import minimax
from .targets import resolve_target

__all__ = ["ActivationCoefficients", "activation_coefficients", "safe_pade_eval", "DEFAULT_TYPES"]

DEFAULT_TYPES = {"relu": (3, 2), "abs": (4, 4), "jumprelu": (9, 8), "topk_gate": (9, 8), "heaviside": (9, 8),
                 "sign": (9, 8)}


def safe_pade_eval(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """r(t) = Σ a_i t^i / (1 + |Σ_{j≥1} b_j t^j|), Horner, float64."""
    t = np.asarray(t, dtype=float)
    p = np.polynomial.polynomial.polyval(t, a)
    q = np.polynomial.polynomial.polyval(t, np.concatenate([[0.0], b])) if len(b) else np.zeros_like(t)
    return p / (1.0 + np.abs(q))


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

    def __call__(self, t: np.ndarray | float) -> np.ndarray:
        return safe_pade_eval(t, self.a, self.b)

    def to_dict(self) -> dict:
        return {
            "gate": self.gate, "type": list(self.type), "a": self.a.tolist(), "b": self.b.tolist(),
            "domain": [list(iv) for iv in self.domain.intervals], "error": self.error,
            "minimax_error": self.minimax_error, "safe_form_exact": self.safe_form_exact,
            "conversion_error": self.conversion_error, "params": self.params,
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
        :func:`rational_approx.targets.get_target`).
    gap : half-width of the gap around a jump (default 0.05).
    domain : override the design domain (default [−1, 1], gapped around a jump).
    """
    if type is None:
        if gate not in DEFAULT_TYPES:
            raise ValueError(f"no default type for gate {gate!r}; pass type=(m, n)")
        type = DEFAULT_TYPES[gate]
    tgt = resolve_target(gate, **({"theta": theta} if theta is not None else {}),
                         **({"tau": tau} if tau is not None else {}))
    dom = domain if domain is not None else tgt.default_domain(gap)
    res = minimax(tgt, type, dom)
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

    def err(x):
        return tgt.f(x) - safe_pade_eval(x, a, b)

    error, _ = sup_error(err, dom, np.concatenate([res.extremal_points, np.asarray(tgt.singular_points)]))
    return ActivationCoefficients(
        gate=gate, type=(m, n), a=a, b=b, domain=dom, error=error, minimax_error=res.error,
        safe_form_exact=safe_exact, conversion_error=pq.conversion_error,
        params={**tgt.params, **({"gap": gap} if gap is not None else {})},
    )
