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

from .aaa import AAAResult, aaa
from .activation import ActivationCoefficients, activation_coefficients
from .barycentric import BarycentricRational, PolyQuotient
from .certify import Certificate, certified_sup_error, certify, certify_pole_free, vallee_poussin_lower_bound
from .claims import claims, claims_markdown
from .domain import Domain
from .errors import (
    ConvergenceError,
    DegreeError,
    DomainError,
    IllConditionedWarning,
    RationalApproxError,
    TargetError,
)
from .extrema import local_extrema, sup_error
from .highprec import HighPrecResult, abs_minimax, abs_minimax_table, refine_minimax, relu_minimax
from .lawson import LawsonResult, lawson
from .minimax import MinimaxResult, minimax
from .rates import degree_needed, gate_degree_needed, reverse_gap_units
from .safepade import SafePade, least_squares_fit, relaxed_remez
from .targets import TARGET_NAMES, Target, get_target
from .theory import (
    BERNSTEIN_BETA,
    best_polynomial_abs,
    newman_bound,
    newman_rational,
    stahl_asymptote,
    zolotarev_sign,
)

__all__ = [
    "AAAResult", "aaa", "ActivationCoefficients", "activation_coefficients",
    "BarycentricRational", "PolyQuotient", "Certificate", "certified_sup_error", "certify", "certify_pole_free",
    "vallee_poussin_lower_bound", "Domain", "ConvergenceError", "DegreeError", "DomainError", "IllConditionedWarning",
    "RationalApproxError", "TargetError", "local_extrema", "sup_error", "HighPrecResult", "abs_minimax",
    "abs_minimax_table", "refine_minimax", "relu_minimax", "LawsonResult", "lawson", "MinimaxResult", "minimax",
    "TARGET_NAMES", "Target", "get_target", "claims", "claims_markdown", "degree_needed", "gate_degree_needed",
    "reverse_gap_units", "SafePade", "least_squares_fit", "relaxed_remez", "BERNSTEIN_BETA", "best_polynomial_abs",
    "newman_bound", "newman_rational", "stahl_asymptote", "zolotarev_sign",
]
