"""Approximation domains: a closed interval or a finite union of disjoint closed intervals.

A gapped domain such as ``[-1, -δ] ∪ [δ, 1]`` is what makes uniform approximation of a discontinuous gate (sign,
Heaviside, JumpReLU) meaningful: across a jump of size s no continuous function gets closer than s/2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from rational_approx.errors import DomainError

__all__ = ["Domain"]


@dataclass(frozen=True)
class Domain:
    """A finite union of disjoint closed intervals, sorted left to right.

    Parameters
    ----------
    intervals : sequence of (a, b) pairs with a < b, finite, pairwise disjoint.

    Examples
    --------
    >>> Domain.interval(-1, 1)
    Domain([-1, 1])
    >>> Domain.gapped(-1, 1, center=0.0, gap=0.1)
    Domain([-1, -0.1] ∪ [0.1, 1])
    """

    intervals: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        try:
            ivs = tuple((float(a), float(b)) for a, b in self.intervals)
        except (TypeError, ValueError) as exc:
            raise DomainError(f"intervals must be (a, b) pairs of numbers, got {self.intervals!r}") from exc
        if not ivs:
            raise DomainError("a domain needs at least one interval")
        for a, b in ivs:
            if not (math.isfinite(a) and math.isfinite(b)):
                raise DomainError(f"interval [{a}, {b}] is not finite; rational approximation needs a bounded domain")
            if not a < b:
                raise DomainError(f"interval [{a}, {b}] is empty or reversed; write it as [a, b] with a < b")
        ivs = tuple(sorted(ivs))
        for (a0, b0), (a1, b1) in zip(ivs, ivs[1:]):
            if a1 <= b0:
                raise DomainError(
                    f"intervals [{a0}, {b0}] and [{a1}, {b1}] overlap or touch; merge them into one interval"
                )
        object.__setattr__(self, "intervals", ivs)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def interval(cls, a: float, b: float) -> Domain:
        """The closed interval [a, b]."""
        return cls(((a, b),))

    @classmethod
    def union(cls, intervals: Iterable[Sequence[float]]) -> Domain:
        """A union of disjoint closed intervals."""
        return cls(tuple(tuple(iv) for iv in intervals))  # type: ignore[arg-type]

    @classmethod
    def gapped(cls, a: float, b: float, *, center: float, gap: float) -> Domain:
        """[a, b] with the open gap (center − gap, center + gap) removed.

        Raises :class:`DomainError` unless a < center − gap and center + gap < b (a gap at an end point would leave a
        single interval; write that as :meth:`interval`).
        """
        if not gap > 0 or not math.isfinite(gap):
            raise DomainError(f"gap must be a positive finite number, got {gap}")
        lo, hi = center - gap, center + gap
        if not (a < lo and hi < b):
            raise DomainError(
                f"the gap ({lo}, {hi}) around {center} must lie strictly inside [{a}, {b}]; choose a smaller gap"
            )
        return cls(((a, lo), (hi, b)))

    @classmethod
    def parse(cls, text: str) -> Domain:
        """Parse ``"a,b"`` or ``"a,b;c,d;..."`` (a union) into a domain."""
        try:
            parts = [tuple(float(v) for v in chunk.split(",")) for chunk in text.split(";") if chunk.strip()]
        except ValueError as exc:
            raise DomainError(f"cannot parse domain {text!r}: expected 'a,b' or 'a,b;c,d'") from exc
        if not parts or any(len(p) != 2 for p in parts):
            raise DomainError(f"cannot parse domain {text!r}: expected 'a,b' or 'a,b;c,d'")
        return cls(tuple(parts))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ properties
    @property
    def a(self) -> float:
        """Left end of the domain."""
        return self.intervals[0][0]

    @property
    def b(self) -> float:
        """Right end of the domain."""
        return self.intervals[-1][1]

    @property
    def is_interval(self) -> bool:
        return len(self.intervals) == 1

    @property
    def endpoints(self) -> np.ndarray:
        """All interval end points, sorted."""
        return np.array([v for iv in self.intervals for v in iv])

    def contains(self, x: np.ndarray | float) -> np.ndarray:
        """Boolean mask: which x lie in the domain (closed intervals)."""
        x = np.asarray(x, dtype=float)
        mask = np.zeros(x.shape, dtype=bool)
        for a, b in self.intervals:
            mask |= (x >= a) & (x <= b)
        return mask

    def gaps(self) -> list[tuple[float, float]]:
        """The open gaps between consecutive intervals."""
        return [(b0, a1) for (_, b0), (a1, _) in zip(self.intervals, self.intervals[1:])]

    def is_symmetric(self, tol: float = 0.0) -> bool:
        """True when the domain equals its mirror image −domain."""
        mirrored = sorted((-b, -a) for a, b in self.intervals)
        return all(
            abs(a0 - a1) <= tol and abs(b0 - b1) <= tol for (a0, b0), (a1, b1) in zip(self.intervals, mirrored)
        )

    def scale(self, c: float) -> Domain:
        """The domain c·D for c > 0."""
        if not c > 0:
            raise DomainError(f"scale factor must be positive, got {c}")
        return Domain(tuple((c * a, c * b) for a, b in self.intervals))

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int = 2000, *, cluster: Sequence[float] = (), depth: int = 40) -> np.ndarray:
        """Sample points for fitting: Chebyshev-like points on each interval plus exponential clustering.

        Near every point in ``cluster`` (singularities of the target) and every interval end point, points
        ``c ± (length) · 10^(−s)`` with s on a grid up to ``depth`` are added, so that a kink or jump is resolved far
        below the spacing of any uniform grid (rational approximants of |x| resolve the kink at scale ≈ E_n).
        """
        if n < 2:
            raise DomainError(f"need at least 2 sample points, got {n}")
        pts = []
        total = sum(b - a for a, b in self.intervals)
        for a, b in self.intervals:
            k = max(8, int(round(n * (b - a) / total)))
            theta = np.linspace(0.0, np.pi, k)
            pts.append(0.5 * (a + b) - 0.5 * (b - a) * np.cos(theta))
        width = self.b - self.a
        offsets = width * np.logspace(-depth, 0, 6 * depth)
        for c in list(cluster) + list(self.endpoints):
            pts.append(c + offsets)
            pts.append(c - offsets)
        x = np.unique(np.concatenate(pts))
        return x[self.contains(x)]

    def __repr__(self) -> str:
        return "Domain(" + " ∪ ".join(f"[{a:g}, {b:g}]" for a, b in self.intervals) + ")"
