"""rational_approx — rational approximation of sparsity gates, verified.

Fit rational functions to |x|, ReLU, JumpReLU, Heaviside/sign and TopK-like gates (AAA, AAA-Lawson, barycentric
rational Remez), verify the uniform-approximation claims (mpmath refinement, certified two-sided error bounds in arb
ball arithmetic, classical rates), and produce initial coefficients for trainable rational activations.
This package never imports torch.

Example
-------
>>> from rational_approx import minimax
>>> res = minimax("abs", (30, 30))
>>> f"{res.error:.12e}"
'2.173987820170e-07'
"""

from rational_approx.errors import (
    ConvergenceError,
    DegreeError,
    DomainError,
    IllConditionedWarning,
    RationalApproxError,
    TargetError,
)
from rational_approx.fitting.aaa import AAAResult, aaa
from rational_approx.fitting.activation import (
    DEFAULT_TYPES,
    ActivationCoefficients,
    activation_coefficients,
    default_type,
)
from rational_approx.fitting.highprec import abs_minimax, abs_minimax_table, relu_minimax
from rational_approx.fitting.lawson import LawsonResult, lawson
from rational_approx.fitting.minimax import MinimaxResult, minimax
from rational_approx.fitting.mp_remez import HighPrecResult
from rational_approx.fitting.refine import refine_minimax
from rational_approx.representation.barycentric import BarycentricRational, PolyQuotient
from rational_approx.representation.domain import Domain
from rational_approx.representation.extrema import local_extrema, sup_error
from rational_approx.representation.safepade import SafePade, least_squares_fit, relaxed_remez
from rational_approx.representation.targets import TARGET_NAMES, Target, get_target
from rational_approx.verification.activation_certificate import certify_activation
from rational_approx.verification.certify import Certificate, certify
from rational_approx.verification.claims import claims, claims_markdown
from rational_approx.verification.lower_bound import vallee_poussin_lower_bound
from rational_approx.verification.pole_free import certify_pole_free
from rational_approx.verification.rates import degree_needed, gate_degree_needed, reverse_gap_units
from rational_approx.verification.theory import (
    BERNSTEIN_BETA,
    best_polynomial_abs,
    newman_bound,
    newman_rational,
    stahl_asymptote,
    zolotarev_sign,
)
from rational_approx.verification.upper_bound import certified_sup_error

__all__ = [
    "AAAResult", "aaa", "ActivationCoefficients", "activation_coefficients", "certify_activation", "default_type",
    "DEFAULT_TYPES",
    "BarycentricRational", "PolyQuotient", "Certificate", "certified_sup_error", "certify", "certify_pole_free",
    "vallee_poussin_lower_bound", "Domain", "ConvergenceError", "DegreeError", "DomainError", "IllConditionedWarning",
    "RationalApproxError", "TargetError", "local_extrema", "sup_error", "HighPrecResult", "abs_minimax",
    "abs_minimax_table", "refine_minimax", "relu_minimax", "LawsonResult", "lawson", "MinimaxResult", "minimax",
    "TARGET_NAMES", "Target", "get_target", "claims", "claims_markdown", "degree_needed", "gate_degree_needed",
    "reverse_gap_units", "SafePade", "least_squares_fit", "relaxed_remez", "BERNSTEIN_BETA", "best_polynomial_abs",
    "newman_bound", "newman_rational", "stahl_asymptote", "zolotarev_sign",
]
