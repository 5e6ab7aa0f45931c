"""Typed exceptions and warnings of :mod:`rational_approx`.

One small hierarchy: every error raised on purpose by this package is a :class:`RationalApproxError`, and each also
derives from the built-in exception a caller would naturally catch (``ValueError`` for bad input, ``RuntimeError`` for
non-convergence).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "RationalApproxError",
    "DomainError",
    "DegreeError",
    "TargetError",
    "ConvergenceError",
    "IllConditionedWarning",
]


class RationalApproxError(Exception):
    """Base class of all errors raised by :mod:`rational_approx`."""


class DomainError(RationalApproxError, ValueError):
    """An approximation domain is malformed (empty, reversed, overlapping or non-finite intervals)."""


class DegreeError(RationalApproxError, ValueError):
    """A rational type (m, n) is invalid (negative, non-integer, or unsupported by the requested method)."""


class TargetError(RationalApproxError, ValueError):
    """A target function is unknown, non-finite on the domain, or discontinuous on a domain without a gap."""


class ConvergenceError(RationalApproxError, RuntimeError):
    """An iterative method did not converge.

    Attributes
    ----------
    best : Any
        The best result found before giving up (for :func:`rational_approx.fitting.minimax`, a
        :class:`~rational_approx.fitting.minimax.MinimaxResult` with ``converged=False``), so that no work is lost.
    """

    def __init__(self, message: str, best: Any = None):
        super().__init__(message)
        self.best = best


class IllConditionedWarning(UserWarning):
    """A change of representation (e.g. barycentric → monomial coefficients) lost most of its accuracy."""
