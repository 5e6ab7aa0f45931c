"""Named target functions: the sparsity gates of SAEs and their building blocks.

Each :class:`Target` carries a float64 evaluation, an mpmath evaluation (for high-precision work), its kinks and
jumps (where approximation is hard, so samples are clustered there), and its parity when it has one (so that
:func:`~rational_approx.fitting.minimax.minimax` can exploit symmetry).

========== ============================ ======================= ==============================
name       formula                      singular point          default domain
========== ============================ ======================= ==============================
abs        |x|                          kink at 0               [−1, 1]
relu       max(x, 0) = (x + |x|)/2      kink at 0               [−1, 1]
jumprelu   x·H(x − θ)                   jump θ at θ             [−1, θ − δ] ∪ [θ + δ, 1]
heaviside  H(x − θ)                     jump 1 at θ             [−1, θ − δ] ∪ [θ + δ, 1]
sign       sign(x)                      jump 2 at 0             [−1, −δ] ∪ [δ, 1]
topk_gate  x·H(x − τ)                   jump τ at τ             [−1, τ − δ] ∪ [τ + δ, 1]
========== ============================ ======================= ==============================

A discontinuous target on a domain that contains its jump is rejected: no continuous function (in particular no
pole-free rational) gets closer than half the jump there, so a "uniform error" would be meaningless.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import mpmath
import numpy as np

from rational_approx.errors import DomainError, TargetError
from rational_approx.representation.domain import Domain

__all__ = ["Target", "get_target", "resolve_target", "resolve_domain", "TARGET_NAMES"]

TARGET_NAMES = ("abs", "relu", "jumprelu", "heaviside", "sign", "topk_gate")


@dataclass(frozen=True)
class Target:
    """A real function to approximate.

    Parameters
    ----------
    name : str
    f : callable
        Vectorised float64 evaluation.
    f_mp : callable or None
        Scalar mpmath evaluation (``mpf -> mpf``); required for high-precision refinement and certificates.
    kinks : tuple of float
        Points where f is continuous but not smooth.
    jumps : tuple of (location, size)
        Jump discontinuities.
    parity : {"even", "odd", None}
        Symmetry about 0, when the function has one.
    """

    name: str
    f: Callable[[np.ndarray], np.ndarray]
    f_mp: Callable[[mpmath.mpf], mpmath.mpf] | None = None
    kinks: tuple[float, ...] = ()
    jumps: tuple[tuple[float, float], ...] = ()
    parity: str | None = None
    params: dict = field(default_factory=dict)

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        return self.f(np.asarray(x, dtype=float))

    @property
    def singular_points(self) -> tuple[float, ...]:
        return tuple(sorted(set(self.kinks) | {loc for loc, _ in self.jumps}))

    @property
    def is_continuous(self) -> bool:
        return not self.jumps

    def default_domain(self, gap: float | None = None) -> Domain:
        """[−1, 1], with a gap of half-width ``gap`` (default 0.05) around each jump."""
        if self.is_continuous:
            return Domain.interval(-1.0, 1.0)
        gap = 0.05 if gap is None else gap
        (loc, _), *rest = self.jumps
        if rest:
            raise TargetError(f"target {self.name!r} has several jumps; pass an explicit domain")
        return Domain.gapped(-1.0, 1.0, center=loc, gap=gap)

    def check_domain(self, domain: Domain) -> None:
        """Raise :class:`TargetError` if a jump lies inside the domain, and check finiteness on a sample."""
        for loc, size in self.jumps:
            if bool(domain.contains(loc)):
                raise TargetError(
                    f"target {self.name!r} jumps by {size:g} at x = {loc:g}, which lies inside {domain}: no continuous "
                    f"function gets closer than half the jump ({abs(size) / 2:g}) there. Remove a gap around the jump, "
                    f"e.g. Domain.gapped(a, b, center={loc:g}, gap=0.05) or --gap 0.05 on the command line."
                )
        mids = np.array([0.5 * (a + b) for a, b in domain.intervals])  # exactly: a singularity at a centre is seen
        x = np.union1d(domain.sample(400, cluster=self.singular_points, depth=12), mids)
        self.evaluate(x)

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """f(x) as float64, raising :class:`TargetError` on a wrong output shape or at the first non-finite value."""
        y = np.asarray(self.f(x), dtype=float)
        if y.shape != x.shape:
            raise TargetError(f"target {self.name!r} returned shape {y.shape} for input of shape {x.shape}")
        bad = ~np.isfinite(y)
        if bad.any():
            raise TargetError(
                f"target {self.name!r} is not finite at x = {x[bad][0]!r} (value {y[bad][0]}); "
                "restrict the domain or remove the singularity"
            )
        return y

    @classmethod
    def from_callable(
        cls,
        fn: Callable[[np.ndarray], np.ndarray],
        *,
        name: str | None = None,
        f_mp: Callable | None = None,
        kinks: tuple[float, ...] = (),
        jumps: tuple[tuple[float, float], ...] = (),
        parity: str | None = None,
    ) -> Target:
        """Wrap a user function. Declare kinks and jumps you know of: they guide sampling and domain checks."""
        if not callable(fn):
            raise TargetError(f"target must be callable, got {type(fn).__name__}")
        if parity not in (None, "even", "odd"):
            raise TargetError(f"parity must be 'even', 'odd' or None, got {parity!r}")

        def f(x: np.ndarray) -> np.ndarray:
            return np.asarray(fn(x), dtype=float) * np.ones_like(x)

        return cls(name or getattr(fn, "__name__", "user"), f, f_mp, tuple(kinks), tuple(jumps), parity)


def _heaviside(x: np.ndarray) -> np.ndarray:
    return np.heaviside(x, 0.5)


def _mp_heaviside(x):
    return mpmath.mpf(1) if x > 0 else (mpmath.mpf(0) if x < 0 else mpmath.mpf(0.5))


def get_target(name: str, *, theta: float | None = None, tau: float | None = None) -> Target:
    """The named target ``name`` (see the module table); ``theta`` for jumprelu/heaviside, ``tau`` for topk_gate.

    ``theta`` defaults to 0.5 for jumprelu and 0.0 for heaviside; ``tau`` defaults to 0.5.
    """
    if name == "abs":
        return Target("abs", np.abs, abs, kinks=(0.0,), parity="even")
    if name == "relu":
        return Target("relu", lambda x: np.maximum(x, 0.0), lambda x: max(x, 0), kinks=(0.0,))
    if name == "sign":
        return Target("sign", np.sign, mpmath.sign, jumps=((0.0, 2.0),), parity="odd")
    if name in ("jumprelu", "heaviside", "topk_gate"):
        given = tau if name == "topk_gate" else theta
        th = float(given) if given is not None else (0.0 if name == "heaviside" else 0.5)
        if not math.isfinite(th):
            raise TargetError(f"threshold for {name!r} must be finite, got {th}")
        if name == "heaviside":
            return Target(
                name, lambda x: _heaviside(x - th), lambda x: _mp_heaviside(x - th), jumps=((th, 1.0),),
                params={"theta": th},
            )
        key = "tau" if name == "topk_gate" else "theta"
        if th == 0.0:  # no jump: the gate is ReLU
            return Target(name, lambda x: np.maximum(x, 0.0), lambda x: max(x, 0), kinks=(0.0,), params={key: th})
        return Target(
            name, lambda x: x * _heaviside(x - th), lambda x: x * _mp_heaviside(x - th), jumps=((th, th),),
            params={key: th},
        )
    raise TargetError(f"unknown target {name!r}; choose one of {', '.join(TARGET_NAMES)} or pass a callable")


def resolve_target(target: Target | str | Callable[[np.ndarray], np.ndarray], **kw) -> Target:
    """A :class:`Target` from a Target, a name known to :func:`get_target` (``kw``: theta, tau), or a callable."""
    if isinstance(target, Target):
        return target
    if isinstance(target, str):
        return get_target(target, **kw)
    if callable(target):
        return Target.from_callable(target)
    raise TargetError(f"target must be a Target, a target name or a callable, got {type(target).__name__}")


def resolve_domain(domain: Domain | str | Sequence[float] | None, target: Target, gap: float | None = None) -> Domain:
    """The domain: ``target.default_domain(gap)`` when None, else a Domain, a string ``"a,b;c,d"`` or (a, b).

    The target is checked on it (:meth:`Target.check_domain`): a jump inside the domain or a non-finite value raises
    :class:`TargetError`.
    """
    if domain is None:
        dom = target.default_domain(gap)
    elif isinstance(domain, Domain):
        dom = domain
    elif isinstance(domain, str):
        dom = Domain.parse(domain)
    else:
        try:
            a, b = domain  # type: ignore[misc]
        except (TypeError, ValueError) as exc:
            raise DomainError(f"domain must be a Domain, 'a,b' or an (a, b) pair, got {domain!r}") from exc
        dom = Domain.interval(a, b)
    target.check_domain(dom)
    return dom


def piecewise_linear_form(
    target: Target,
) -> tuple[tuple[float, ...], Callable[[float], tuple[float, float]]] | None:
    """Exact piecewise-linear form of a named target: ``(breakpoints, piece)`` or None.

    Every named target (|x|, ReLU, sign, Heaviside, JumpReLU, TopK gate) is affine between its singular
    points: ``piece(x0)`` returns (α, β) with f(x) = αx + β on the piece containing x0 (x0 not a breakpoint).
    The numbers are binary floats, so f is evaluated *exactly* in ball arithmetic — the basis of the
    certificates. None for targets not known to be piecewise linear (user callables).
    """
    name, params = target.name, target.params
    theta = params.get("theta", params.get("tau"))
    if name == "abs":
        return (0.0,), lambda x0: (1.0, 0.0) if x0 > 0 else (-1.0, 0.0)
    if name == "relu" or (name in ("jumprelu", "topk_gate") and theta == 0.0):
        return (0.0,), lambda x0: (1.0, 0.0) if x0 > 0 else (0.0, 0.0)
    if name == "sign":
        return (0.0,), lambda x0: (0.0, 1.0) if x0 > 0 else (0.0, -1.0)
    if name == "heaviside":
        th = float(theta)
        return (th,), lambda x0: (0.0, 1.0) if x0 > th else (0.0, 0.0)
    if name in ("jumprelu", "topk_gate"):
        th = float(theta)
        return (th,), lambda x0: (1.0, 0.0) if x0 > th else (0.0, 0.0)
    return None

