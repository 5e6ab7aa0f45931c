r"""The trainable safe-Padé rational activation of the RSAE (the hot path of :mod:`rsae`).

What it computes
----------------
.. math::

    φ(h) = C_{out}\, r(h / C_{in}), \qquad
    r(t) = \frac{P(t)}{1 + |B(t)|}, \quad P(t) = \sum_{i=0}^{m} a_i t^i, \quad B(t) = \sum_{j=0}^{n} b_j t^j,

elementwise on ``[..., d_sae]`` pre-activations (Yin & Yu, "Rational Sparse Autoencoder", arXiv 2606.14990;
the safe denominator 1 + |B| is that of the Padé activation units of Molina et al., ICLR 2020, here with a free
constant b_0, which makes every rational with a positive denominator on [−1, 1] representable). The
coefficients (a, b, b_0) are shared by all latents or, optionally, one set per latent (φ_j with its own r_j),
and are kept in float64; C_in, C_out > 0 are one scalar each or, optionally, one per latent, and are stored
as logarithms so that gradient steps keep them positive.

Evaluation, both branches
-------------------------
For |t| ≤ 1 the polynomials are evaluated by Horner's rule in t. For |t| > 1 the powers of t would overflow
(t⁹ already does for |t| > 2¹⁴ in float32), so r is rewritten in the reciprocal variable s = 1/t, |s| < 1:

.. math::

    r(t) = σ(t)\,\frac{\tilde P(s)}{|s|^n + |\tilde B(s)|}, \qquad
    \tilde P(s) = \sum_{i=0}^{m} a_i s^{m-i}, \quad \tilde B(s) = \sum_{j=0}^{n} b_j s^{n-j},

with the factor σ(t) = t^m / |t|^n = sign(t)^m |t|^{m-n} (for m < n: sign(t)^m |s|^{n-m}). Both branches are
one Horner pass over u = t or u = s with the coefficient sequence selected per element; every power of u
lies in [−1, 1]. Write D = 1 + |B(t)| or |s|^n + |B̃(s)|, Q = B(t) or B̃(s), q = P(t)/D or P̃(s)/D, κ = 1 or
s, and σ = 1 for |t| ≤ 1. The analytic gradients are

.. math::

    \frac{∂r}{∂t} = σ κ \frac{P_d − q\,\operatorname{sign}(Q)\,B_d}{D}, \quad
    \frac{∂r}{∂a_i} = \frac{σ u^{π(i)}}{D}, \quad
    \frac{∂r}{∂b_j} = −\frac{σ q \operatorname{sign}(Q) u^{π'(j)}}{D},

with (P_d, B_d) = (P'(t), B'(t)) for |t| ≤ 1 and (Σ_i i a_i s^{m−i}, Σ_j j b_j s^{n−j}) for |t| > 1 (then
P'(t) = t^{m−1} P_d(s) and B'(t) = t^{n−1} B_d(s)), and exponents π(i) = i, π'(j) = j for |t| ≤ 1,
π(i) = m − i, π'(j) = n − j for |t| > 1. At a kink B = 0 the subgradient sign(0) = 0 is used: it is the mean
of the two one-sided derivatives. Through t = h e^{−λ_in} and φ = e^{λ_out} r (λ = log C):
∂φ/∂h = C_out r'(t) / C_in, ∂φ/∂λ_in = −C_out r'(t) t (formed with tκ ∈ [−1, 1], so it cannot overflow where
r' does not) and ∂φ/∂λ_out = φ. Shared coefficient gradients are reductions over all elements; per-latent
coefficient and scale gradients are reductions over the leading dimensions (one per latent). Per-latent
coefficients only change the Horner tables from [2, K] to [2, K, d] (one column per latent, broadcast over
the rows); the formulas above hold per latent.

Precision and overflow policy
-----------------------------
Fast path: float32 arithmetic for float32, bfloat16 and float16 inputs (float64 when the input or a parameter
is float64); one fused ``torch.compile`` kernel per direction for large tensors, the same code eagerly for
small ones. The forward counts the elements whose φ is not finite or whose reciprocal-branch denominator fell
below √tiny of the working precision (where the underflow of |s|^n could matter); the backward checks that
its reductions are finite (every non-finite per-element term reaches one of them). On any such event the call
is recomputed in float64, where for float32-range inputs with n ≤ 8 and m − n ≤ 8 no power under- or
overflows. Then:

* outputs whose true value exceeds the output dtype's range saturate to ± its largest finite value, and their
  gradients are zero (the derivative of that clamp);
* gradients beyond the range of their dtype saturate likewise;
* values still undefined in float64 (only reachable with extreme coefficient ratios) are set to 0 at finite
  inputs, with a :class:`RuntimeWarning`.

So finite inputs give finite outputs and gradients; NaN inputs propagate NaN (to their output, their input
gradient and the coefficient gradients); ±inf inputs are outside the contract.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from rsae.errors import ConfigError

__all__ = [
    "DEFAULT_TYPES",
    "RationalActivation",
    "RationalCoefficients",
    "check_tails",
    "configure_kernels",
    "current_kernel_settings",
    "kernel_settings",
    "rational_activation",
    "safe_pade",
]

class _DefaultTypes(Mapping[str, tuple[int, int]]):
    """The default rational type (m, n) per SAE gate, read from the one table ``rational_approx.DEFAULT_TYPES``
    (through ``rational_approx.default_type``, imported on first use: ``rational_approx`` is slow to import)."""

    _gates = ("relu", "jumprelu", "topk", "batchtopk")

    def __getitem__(self, gate: str) -> tuple[int, int]:
        if gate not in self._gates:
            raise KeyError(gate)
        from rational_approx.fitting.activation import default_type

        return default_type(gate)

    def __iter__(self) -> Iterator[str]:
        return iter(self._gates)

    def __len__(self) -> int:
        return len(self._gates)


DEFAULT_TYPES: Mapping[str, tuple[int, int]] = _DefaultTypes()
"""Default rational type (m, n) per SAE gate: (3, 2) for ReLU, (9, 8) for JumpReLU, TopK and BatchTopK."""

_settings: dict[str, Any] = {
    "precision": "auto",
    "float32_tolerance": 1e-5,
    "compile": os.environ.get("RSAE_RATIONAL_COMPILE", "1") != "0",
    "min_numel": 1 << 18,
    "chunk_numel": 1 << 18,
}
_compiled: dict[str, Callable[..., Any]] = {}
# The backward has m + n + 3 reductions; inductor's CPU default fuses at most 16 side by side and would split
# the rest into further passes that re-read materialised intermediates. One pass is much faster.
_INDUCTOR_OPTIONS = {"cpp.max_horizontal_fusion_size": 64, "max_fusion_size": 256}


def configure_kernels(*, compile: bool | None = None, min_numel: int | None = None,
                      chunk_numel: int | None = None, precision: str | None = None,
                      float32_tolerance: float | None = None) -> None:
    """Choose how the rational kernels run.

    Parameters
    ----------
    precision
        Working precision for float32 (and narrower) inputs: ``"auto"`` (default) — float32 unless
        :func:`float32_error_bound` of the current coefficients exceeds ``float32_tolerance``, then float64;
        ``"float32"`` — always float32 (plus the overflow fallback); ``"float64"`` — always float64.
        Float64 inputs or parameters always compute in float64.
    float32_tolerance
        The threshold of ``"auto"`` (default 1e-5).
    compile
        Fuse forward and backward into one ``torch.compile`` kernel each (default True; the environment
        variable ``RSAE_RATIONAL_COMPILE=0`` sets False). If compilation fails (no C++ compiler, no Triton),
        the eager code is used with a warning. The first call per shape class, dtype and type (m, n) compiles
        (about 10–20 s on CPU); later calls reuse the kernel.
    min_numel
        Tensors with fewer elements run eagerly (default 2¹⁸): compiling is not worth it for them.
    chunk_numel
        The eager code processes whole rows in blocks of about this many elements (default 2¹⁸), which bounds
        its temporary memory; the compiled kernels take the whole tensor at once.
    """
    for name, value, low in (("min_numel", min_numel, 0), ("chunk_numel", chunk_numel, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ConfigError(f"{name} must be an int >= {low}, got {value!r}")
    if precision is not None:
        if precision not in ("auto", "float32", "float64"):
            raise ConfigError(f"precision must be 'auto', 'float32' or 'float64', got {precision!r}")
        _settings["precision"] = precision
    if float32_tolerance is not None:
        if isinstance(float32_tolerance, bool) or not float32_tolerance > 0:
            raise ConfigError(f"float32_tolerance must be a number > 0, got {float32_tolerance!r}")
        _settings["float32_tolerance"] = float(float32_tolerance)
    if compile is not None:
        _settings["compile"] = bool(compile)
    if min_numel is not None:
        _settings["min_numel"] = min_numel
    if chunk_numel is not None:
        _settings["chunk_numel"] = chunk_numel


def current_kernel_settings() -> dict[str, Any]:
    """A copy of the settings :func:`configure_kernels` sets (``precision``, ``float32_tolerance``, ``compile``,
    ``min_numel``, ``chunk_numel``)."""
    return dict(_settings)


@contextlib.contextmanager
def kernel_settings(**settings: Any) -> Iterator[None]:
    """Within the block, :func:`configure_kernels` ``(**settings)``; on exit the settings named are restored.

    For example ``with kernel_settings(min_numel=0):`` sends small tensors through the compiled kernels too, which
    pays off when the same small shape is evaluated hundreds of times (the upgrade's calibration fit).
    """
    saved = {k: _settings[k] for k in settings if k in _settings}
    configure_kernels(**settings)
    try:
        yield
    finally:
        _settings.update(saved)


def _horner(u: Tensor, big: Tensor, table: Tensor) -> Tensor:
    """Σ_k c_k u^(K−1−k) by Horner's rule, c from row 0 of ``table`` where |t| ≤ 1 and row 1 where |t| > 1.

    A per-latent table [1, K, d] holds row 0 only: row 1 is always row 0 reversed (:func:`_tables`)."""
    size = table.shape[1]
    if size == 0:
        return torch.zeros_like(u)
    if table.shape[0] == 1:
        acc = torch.where(big, table[0, size - 1], table[0, 0])
        for k in range(1, size):
            acc = acc * u + torch.where(big, table[0, size - 1 - k], table[0, k])
        return acc
    acc = torch.where(big, table[1, 0], table[0, 0])
    for k in range(1, size):
        acc = acc * u + torch.where(big, table[1, k], table[0, k])
    return acc


def _common(h: Tensor, inv_c_in: Tensor, pt: Tensor, ht: Tensor, m: int, n: int) -> tuple[Tensor, ...]:
    """The branch-selected quantities shared by forward and backward (see the module docstring)."""
    t = h.to(pt.dtype) * inv_c_in
    big = t.abs() > 1
    u = torch.where(big, t.reciprocal(), t)
    au = u.abs()
    p = _horner(u, big, pt)
    q_poly = _horner(u, big, ht)
    d = torch.where(big, au**n, 1.0) + q_poly.abs()
    mag = t.abs() ** (m - n) if m >= n else au ** (n - m)
    sigma = torch.where(big, torch.sign(t) * mag if m % 2 else mag, 1.0)
    return t, big, u, p, q_poly, d, sigma


def _forward_kernel(h: Tensor, inv_c_in: Tensor, c_out: Tensor, pt: Tensor, ht: Tensor,
                    m: int, n: int, omax: float, dmin: float, positive: bool = False) -> tuple[Tensor, Tensor]:
    """φ(h) saturated to ±omax in h's dtype, and the number of elements needing the float64 path.

    Those are the elements where φ is not finite (overflow in the working precision, or a NaN input) or the
    denominator D fell below ``dmin`` (where the underflow of |s|^n could matter). The count covers every
    element, masked or not, so ``positive`` never changes which precision a call ends in.

    ``positive``: the relu gate's mask in the same pass, φ(h) where h > 0 and exactly 0 elsewhere (NaN h
    included, as ``torch.where(h > 0, φ(h), 0)`` gives).
    """
    _, _, _, p, _, d, sigma = _common(h, inv_c_in, pt, ht, m, n)
    phi = sigma * p * d.reciprocal() * c_out
    flag = torch.where(torch.isfinite(phi) & (d >= dmin), 0.0, 1.0).sum()
    out = phi.clamp(-omax, omax)
    if positive:
        out = torch.where(h > 0, out, 0.0)
    return out.to(h.dtype), flag


def _backward_kernel(g: Tensor, h: Tensor, inv_c_in: Tensor, c_out: Tensor, pt: Tensor, ht: Tensor,
                     pdt: Tensor, bdt: Tensor, m: int, n: int, omax: float, gmax: float,
                     per_latent: bool, saturating: bool, per_latent_coef: bool = False,
                     positive: bool = False) -> tuple[Tensor, ...]:
    """Gradients wrt h, a, (b_0, ..., b_n), log C_in, log C_out for upstream g (h and g are [rows, d]).

    ``per_latent`` (scales) and ``per_latent_coef`` (coefficient tables [2, K, d]) make the corresponding
    reductions sum over the rows only, giving [d] per scale and [d, K] per coefficient vector.

    Every per-element term that is not finite (overflow in the working precision, or a NaN input) makes at
    least one of the returned reductions non-finite: each element contributes f·1 to some ∂/∂a_i, f·q·sign(Q)
    times a power of u to every ∂/∂b_j, f·core times tκ to ∂/∂log C_in and f·P to ∂/∂log C_out, and a
    non-finite factor times any finite number (zero included) is non-finite. The caller checks those few
    numbers instead of a mask over all elements. Gradients wrt h saturate to ±gmax.

    ``saturating`` says whether φ may exceed ±omax here (the working precision is wider than the output
    dtype); if not, the forward found every φ finite, so no element is saturated and the mask is skipped.

    ``positive`` (the forward's relu-gate mask): elements with h <= 0 (or NaN) contribute nothing — their f is
    set to 0 after the product, so every gradient term of theirs is 0, as after the backward of
    ``torch.where(h > 0, φ(h), 0)``.
    """
    t, big, u, p, q_poly, d, sigma = _common(h, inv_c_in, pt, ht, m, n)
    inv_d = d.reciprocal()  # one division, then products (divisions are the slowest vector op)
    gc = g.to(pt.dtype)
    f = gc * c_out * sigma * inv_d
    if saturating:
        phi = sigma * p * inv_d * c_out  # the forward's expression: the same elements saturate
        f = torch.where(phi.abs() <= omax, f, 0.0)  # select after the product: 0 even where σ = inf
    if positive:
        f = torch.where(h > 0, f, 0.0)
    q = p * inv_d
    sq = torch.sign(q_poly)
    core = _horner(u, big, pdt) - q * sq * _horner(u, big, bdt)
    fc = f * core
    grad_h = (fc * torch.where(big, u, 1.0) * inv_c_in).clamp(-gmax, gmax).to(h.dtype)
    fb = -(f * q * sq)

    def rows(x: Tensor) -> Tensor:
        # one row (the sparse path's gathered entries, [1, N]): the row itself; torch's sum over a dimension of
        # size 1 is a slow path on CPU (11 ms for N = 32768 in float64, against 0.01 ms for the copy)
        return x[0] if x.shape[0] == 1 else x.sum(0)

    def red(x: Tensor) -> Tensor:
        return rows(x) if per_latent else x.sum()

    g_lcin = red(-(fc * torch.where(big, 1.0, t)))
    g_lcout = red(f * p)  # = Σ g·φ over unsaturated elements, since f·p = g·C_out·σ·P/D there
    powers = [torch.ones_like(u)]
    for _ in range(max(m, n)):
        powers.append(powers[-1] * u)
    if per_latent_coef:  # stacked [K, d] (contiguous rows), returned as the [d, K] view
        g_a = torch.stack([rows(f * torch.where(big, powers[m - i], powers[i])) for i in range(m + 1)]).T
        g_c = torch.stack([rows(fb * torch.where(big, powers[n - j], powers[j])) for j in range(n + 1)]).T
    else:
        g_a = torch.stack([(f * torch.where(big, powers[m - i], powers[i])).sum() for i in range(m + 1)])
        g_c = torch.stack([(fb * torch.where(big, powers[n - j], powers[j])).sum() for j in range(n + 1)])
    return grad_h, g_a, g_c, g_lcin, g_lcout


def _tables(a: Tensor, c: Tensor, dtype: torch.dtype, derivatives: bool = True) -> tuple[Tensor, ...]:
    """Horner coefficient tables: row 0 for |t| ≤ 1 (in t, highest power first), row 1 for |t| > 1 (in s = 1/t),
    which is row 0 reversed.

    ``c`` = (b_0, b_1, ..., b_n), the whole polynomial B inside the absolute value. Shared coefficients (a [K],
    c [K']) give tables [2, K]. Per-latent coefficients (a [d, K], c [d, K']) give [1, K, d]: row 0 only (with
    one coefficient per entry the tables are as large as the input on the sparse path, so the reversed row is
    read in place by :func:`_horner` instead of being copied); entry ``table[0, k]`` is a contiguous [d] vector
    that broadcasts over the rows of [rows, d] inputs. ``derivatives=False`` returns only the tables of P and B
    (what the forward needs)."""
    a = a.detach().to(dtype)
    c = c.detach().to(dtype)

    def table(x: Tensor) -> Tensor:
        if x.dim() == 1:
            return torch.stack([x.flip(0), x])
        return x.flip(-1).T.contiguous().unsqueeze(0)

    if not derivatives:
        return table(a), table(c)

    def weights(x: Tensor) -> Tensor:
        return (torch.arange(x.shape[-1], dtype=dtype, device=x.device) * x)[..., 1:]

    return table(a), table(c), table(weights(a)), table(weights(c))


def _use_compiled(numel: int) -> bool:
    """Whether a tensor of ``numel`` elements goes through the compiled kernels (see configure_kernels)."""
    return bool(_settings["compile"]) and numel >= _settings["min_numel"]


def _compiled_or_eager(name: str, fn: Callable[..., Any], numel: int) -> Callable[..., Any] | None:
    """The compiled version of ``fn`` when enabled and worthwhile, else None (run eagerly)."""
    if not _use_compiled(numel):
        return None
    if name not in _compiled:
        _raise_recompile_limit()
        _compiled[name] = torch.compile(fn, dynamic=None, options=_INDUCTOR_OPTIONS)
    return _compiled[name]


RECOMPILE_LIMIT = 64
"""Lower bound this module sets on ``torch._dynamo.config.recompile_limit`` when it first compiles a kernel. Each
kernel is compiled per combination of dtype (float32 training, float64 calibration), rank and grad requirements
(shared or per-latent scales, per-latent coefficients, inputs that need a gradient), and shape class; one upgrade
run meets more than torch's default 8, after which dynamo silently runs the kernel eagerly for every new
combination (measured: the main job's `paper` upgrade stages took 31–36 s each at the default limit, one stage
12 s in a process that had compiled its variants)."""


def _raise_recompile_limit() -> None:
    config = torch._dynamo.config
    for key in ("recompile_limit", "cache_size_limit"):  # the name changed across torch versions
        if hasattr(config, key) and getattr(config, key) < RECOMPILE_LIMIT:
            setattr(config, key, RECOMPILE_LIMIT)


def _call(name: str, fn: Callable[..., Any], numel: int, *args: Any) -> Any:
    """``fn(*args)``, compiled when worthwhile; a compiler failure switches to eager for the session."""
    compiled = _compiled_or_eager(name, fn, numel)
    if compiled is not None:
        try:
            return compiled(*args)
        except Exception as exc:  # noqa: BLE001 - any compiler/toolchain failure: fall back to eager
            _settings["compile"] = False
            warnings.warn(f"rsae.core.rational: torch.compile failed ({type(exc).__name__}: {exc}); using the "
                          "eager kernels from now on (slower, same results).", RuntimeWarning, stacklevel=3)
    return fn(*args)


def _row_chunks(rows: int, d: int, compiled: bool) -> list[slice]:
    """Row blocks of about ``chunk_numel`` elements for the eager code; one block for the compiled kernels."""
    if compiled or rows == 0:
        return [slice(0, rows)]
    step = max(1, _settings["chunk_numel"] // max(d, 1))
    return [slice(i, min(i + step, rows)) for i in range(0, rows, step)]


class _Params(NamedTuple):
    """What forward and backward both need, derived from the saved tensors."""

    h2: Tensor
    inv_c_in: Tensor
    c_out: Tensor
    tables: tuple[Tensor, ...]
    m: int
    n: int
    per_latent: bool
    per_latent_coef: bool


def _params(h: Tensor, a: Tensor, c: Tensor, log_c_in: Tensor | None, log_c_out: Tensor | None,
            dtype: torch.dtype, derivatives: bool = True) -> _Params:
    d = h.shape[-1] if h.dim() > 0 else 1
    h2 = h.reshape(h.numel() // d if d else 0, d)
    zero = torch.zeros((), dtype=dtype, device=h.device)
    lci = zero if log_c_in is None else log_c_in.detach().to(dtype)
    lco = zero if log_c_out is None else log_c_out.detach().to(dtype)
    return _Params(h2, torch.exp(-lci), torch.exp(lco), _tables(a, c, dtype, derivatives), a.shape[-1] - 1,
                   c.shape[-1] - 1, lci.dim() > 0, a.dim() > 1)


def _compute_dtype(h: Tensor, a: Tensor, c: Tensor, *scales: Tensor | None) -> torch.dtype:
    """float64 if the input or a scale is float64, or the coefficients are too ill-conditioned for float32 (see
    :func:`float32_error_bound`), else float32 (also for bfloat16/float16 inputs). Float64 coefficients alone
    (how :class:`RationalActivation` stores them) do not force float64."""
    wide = any(x is not None and x.dtype == torch.float64 for x in (h, *scales))
    if not wide and _settings["precision"] == "float64":
        wide = True
    elif not wide and _settings["precision"] == "auto":
        wide = _condition(a, c) * _F32_UNIT > _settings["float32_tolerance"]
    return torch.float64 if wide else torch.float32


_F32_UNIT = 2.0**-24  # unit roundoff of float32


def _condition(a: Tensor, c: Tensor) -> float:
    """κ = Σ|a_i| + Σ|b_j| (b_0 included): the float32 Horner error of r on |t| ≤ 1 is ≲ (m + n + 2)·u·κ.

    For per-latent coefficients (a [d, m+1], c [d, n+1]) the worst latent's κ (0 for d = 0: an empty gathered
    support)."""
    if a.numel() == 0:
        return 0.0
    return float((a.detach().abs().sum(-1) + c.detach().abs().sum(-1)).max())


def float32_error_bound(a: Any, b: Any, b0: float = 0.0) -> float:
    """u₃₂ · κ, κ = Σ|a_i| + |b_0| + Σ|b_j|: the scale of the float32 rounding error of r on [−1, 1].

    P and B are each evaluated by Horner's rule with a rounding error ≲ (degree + 1)·u·Σ|coefficient| for
    |t| ≤ 1 (Higham, "Accuracy and Stability of Numerical Algorithms", §5.1), and D = 1 + |B| ≥ 1, so the error
    of r = P/D is ≲ (m + n + 2)·u·(Σ|a_i| + |r|·Σ|b_j|). With ``precision="auto"`` (the default of
    :func:`configure_kernels`) the kernel computes in float64 when this scale exceeds ``float32_tolerance``
    (default 1e-5): the (3, 2) ReLU fit (κ ≈ 5.7) stays in float32, the (9, 8) JumpReLU fit (κ ≈ 6e7) goes to
    float64, where it keeps its minimax error (docs/rational_activation.md).

    Per-latent coefficients (``a`` [d, m+1], ``b`` [d, n], ``b0`` a number or [d]) give the worst latent's
    bound: one working precision serves all latents.
    """
    a_n = np.asarray(a.detach().cpu() if isinstance(a, Tensor) else a, dtype=np.float64)
    b_n = np.asarray(b.detach().cpu() if isinstance(b, Tensor) else b, dtype=np.float64)
    b0_n = np.asarray(b0.detach().cpu() if isinstance(b0, Tensor) else b0, dtype=np.float64)
    if a_n.ndim == 1:
        c_n = np.concatenate([b0_n.reshape(1), b_n.reshape(-1)])
    else:
        rows = a_n.shape[0]
        c_n = np.concatenate([np.broadcast_to(b0_n, (rows,)).reshape(rows, 1), b_n.reshape(rows, -1)], axis=1)
    return _condition(torch.as_tensor(a_n), torch.as_tensor(c_n)) * _F32_UNIT


def _dmin(dtype: torch.dtype) -> float:
    """√tiny: a reciprocal-branch denominator below this sends the call to the float64 path."""
    return math.sqrt(torch.finfo(dtype).tiny)


def _forward(h: Tensor, a: Tensor, c: Tensor, log_c_in: Tensor | None, log_c_out: Tensor | None,
             dtype: torch.dtype, positive: bool = False) -> tuple[Tensor, bool]:
    """φ(h) computed in ``dtype``, and whether it needs the float64 path (see the module docstring)."""
    pr = _params(h, a, c, log_c_in, log_c_out, dtype, derivatives=False)
    pt, ht = pr.tables
    omax = torch.finfo(h.dtype).max
    compiled = _use_compiled(pr.h2.numel())
    outs, flags = [], []
    for rows in _row_chunks(pr.h2.shape[0], pr.h2.shape[1], compiled):
        # the masked kernels are compiled apart, so the two variants do not share one compile cache
        out, flag = _call("forward_positive" if positive else "forward", _forward_kernel, pr.h2.numel(),
                          pr.h2[rows], pr.inv_c_in, pr.c_out, pt, ht, pr.m, pr.n, omax, _dmin(dtype), positive)
        outs.append(out)
        flags.append(flag)
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    return out.reshape(h.shape), bool(torch.stack(flags).sum() != 0)


def _backward(g: Tensor, h: Tensor, a: Tensor, c: Tensor, log_c_in: Tensor | None, log_c_out: Tensor | None,
              dtype: torch.dtype, flagged: bool, positive: bool = False) -> list[Tensor]:
    """[∂/∂h, ∂/∂a, ∂/∂(b_0..b_n), ∂/∂log C_in, ∂/∂log C_out] computed in ``dtype`` (reductions in ``dtype``).

    ``flagged``: the forward took the float64 path, so some outputs may have saturated.
    """
    pr = _params(h, a, c, log_c_in, log_c_out, dtype)
    g2 = g.reshape(pr.h2.shape)
    omax = torch.finfo(h.dtype).max
    compiled = _use_compiled(pr.h2.numel())
    grads_h: list[Tensor] = []
    sums: list[Tensor] = []
    for rows in _row_chunks(pr.h2.shape[0], pr.h2.shape[1], compiled):
        gh, *red = _call("backward_positive" if positive else "backward", _backward_kernel, pr.h2.numel(),
                         g2[rows], pr.h2[rows], pr.inv_c_in, pr.c_out, *pr.tables, pr.m, pr.n, omax, omax,
                         pr.per_latent, flagged or dtype != h.dtype, pr.per_latent_coef, positive)
        grads_h.append(gh)
        sums = red if not sums else [s + r for s, r in zip(sums, red, strict=True)]
    grad_h = grads_h[0] if len(grads_h) == 1 else torch.cat(grads_h)
    return [grad_h.reshape(h.shape), *sums]


def _saturate(x: Tensor, dtype: torch.dtype) -> Tensor:
    """Cast to ``dtype``, clamping finite values beyond its range to ± its largest finite value."""
    big = torch.finfo(dtype).max
    if big >= torch.finfo(x.dtype).max:  # widening (float32 reductions for float64 coefficients): exact
        return x.to(dtype)
    return x.clamp(-big, big).to(dtype)


def _sanitize(x: Tensor, keep_nan: Tensor | bool) -> tuple[Tensor, bool]:
    """Replace NaN by 0 where ``keep_nan`` is False (inputs finite there); report whether anything changed."""
    fix = torch.isnan(x) & ~torch.as_tensor(keep_nan, device=x.device)
    if not bool(fix.any()):
        return x, False
    return torch.where(fix, torch.zeros_like(x), x), True


def _sanitize_grads(grads: list[Tensor], h: Tensor, g: Tensor) -> list[Tensor]:
    """Last resort after the float64 path: NaN gradients not caused by NaN in h or g become 0 (warning)."""
    nan_in = torch.isnan(h) | torch.isnan(g)
    out, changed = _sanitize(grads[0], nan_in)
    fixed = [out]
    inputs_clean = not bool(nan_in.any())
    for x in grads[1:]:
        if inputs_clean:
            x, c = _sanitize(x, False)
            changed |= c
        fixed.append(x)
    if changed:
        _warn_sanitized()
    return fixed


def _warn_sanitized() -> None:
    warnings.warn("rsae.core.rational: some values were undefined even in float64 (extreme coefficient ratios?) "
                  "and were set to 0; check the rational's coefficients.", RuntimeWarning, stacklevel=4)


class _SafePadeFunction(torch.autograd.Function):
    """φ(h) = C_out · r(h / C_in) with analytic backward; see the module docstring for formulas and policy.

    ``positive=True`` applies the relu gate in the same kernels: the output is φ(h) where h > 0 and 0 elsewhere,
    and the masked elements contribute nothing to any gradient (no separate ``where`` pass each way)."""

    @staticmethod
    def forward(ctx: Any, h: Tensor, a: Tensor, b: Tensor, b0: Tensor | None, log_c_in: Tensor | None,
                log_c_out: Tensor | None, positive: bool = False) -> Tensor:
        c = _denominator_coefficients(b, b0)
        dtype = _compute_dtype(h, a, c, log_c_in, log_c_out)
        ctx.positive = positive
        with torch.autocast(h.device.type, enabled=False):
            out, fallback = _forward(h, a, c, log_c_in, log_c_out, dtype, positive)
            ctx.flagged = fallback
            if fallback and dtype != torch.float64:
                dtype = torch.float64
                out, fallback = _forward(h, a, c, log_c_in, log_c_out, dtype, positive)
            if fallback:
                out, changed = _sanitize(out, torch.isnan(h))
                if changed:
                    _warn_sanitized()
        ctx.save_for_backward(h, a, b, b0, log_c_in, log_c_out)
        ctx.compute_dtype = dtype
        ctx.min_numel = _settings["min_numel"]  # the backward runs fused or eager as the forward did
        return out

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        h, a, b, b0, log_c_in, log_c_out = ctx.saved_tensors
        c = _denominator_coefficients(b, b0)
        dtype = ctx.compute_dtype
        with torch.autocast(h.device.type, enabled=False), kernel_settings(min_numel=ctx.min_numel):
            grads = _backward(g, h, a, c, log_c_in, log_c_out, dtype, ctx.flagged, ctx.positive)
            finite = all(bool(torch.isfinite(x).all()) for x in grads[1:])
            if not finite and dtype != torch.float64:
                dtype = torch.float64
                grads = _backward(g, h, a, c, log_c_in, log_c_out, dtype, ctx.flagged, ctx.positive)
                finite = all(bool(torch.isfinite(x).all()) for x in grads[1:])
            if not finite:
                grads = _sanitize_grads(grads, h, g)
        # ∂/∂h leaves the kernel saturated and in h's dtype; the small reductions are cast here
        grad_h = grads[0] if ctx.needs_input_grad[0] else None
        g_a, g_c, g_lcin, g_lcout = grads[1:]
        rest = zip((g_a, g_c[..., 1:], g_c[..., 0], g_lcin, g_lcout), (a, b, b0, log_c_in, log_c_out),
                   ctx.needs_input_grad[1:6], strict=True)
        return (grad_h, *(_saturate(gr, x.dtype).reshape(x.shape) if x is not None and need else None
                          for gr, x, need in rest), None)


def _denominator_coefficients(b: Tensor, b0: Tensor | None) -> Tensor:
    """(b_0, b_1, ..., b_n) detached, with b_0 = 0 when absent (the form without the free constant): shape
    [n+1] for shared coefficients, [d, n+1] for per-latent ones (b [d, n], b0 [d])."""
    lead = b.shape[:-1]
    head = b.new_zeros(*lead, 1) if b0 is None else b0.detach().reshape(*lead, 1).to(b.dtype)
    return torch.cat([head, b.detach()], dim=-1)


def _check_coefficients(a: Tensor, b: Tensor, b0: Tensor | None = None, h: Tensor | None = None) -> None:
    """Shared coefficients a [m+1], b [n], b0 []; or per latent a [d, m+1], b [d, n], b0 [d] with d the last
    dimension of the input ``h``."""
    for name, x in (("a", a), ("b", b), ("b0", b0)):
        if x is not None and not isinstance(x, Tensor):
            raise ConfigError(f"coefficients {name} must be a tensor, got {type(x).__name__}")
    if a.dim() not in (1, 2) or a.shape[-1] < 1:
        raise ConfigError(f"numerator coefficients a must be a tensor [m+1] (a_0..a_m ascending, shared) or "
                          f"[d, m+1] (per latent), got shape {tuple(a.shape)}")
    if a.dim() == 1:
        if b.dim() != 1:
            raise ConfigError(f"denominator coefficients b must be a 1-D tensor [n] (b_1..b_n; the constant 1 is "
                              f"implicit) when a is shared, got shape {tuple(b.shape)}")
        if b0 is not None and b0.dim() != 0:
            raise ConfigError(f"the denominator constant b0 must be a 0-d tensor when a is shared, got shape "
                              f"{tuple(b0.shape)}")
    else:
        d = a.shape[0]
        if b.dim() != 2 or b.shape[0] != d:
            raise ConfigError(f"per-latent coefficients: a has shape {tuple(a.shape)}, so b must be [{d}, n], "
                              f"got shape {tuple(b.shape)}")
        if b0 is not None and tuple(b0.shape) != (d,):
            raise ConfigError(f"per-latent coefficients: b0 must have shape [{d}], got {tuple(b0.shape)}")
        last = h.shape[-1] if h is not None and h.dim() > 0 else None
        if h is not None and last != d:
            raise ConfigError(f"per-latent coefficients for d = {d} latents, but the input's last dimension is "
                              f"{last if last is not None else '(a 0-d input)'}")
    for name, x in (("a", a), ("b", b), ("b0", b0)):
        if x is not None and not x.is_floating_point():
            raise ConfigError(f"coefficients {name} must be a floating-point tensor, got {x.dtype}")


def _check_input(h: Tensor, *params: Tensor) -> None:
    if not isinstance(h, Tensor) or not h.is_floating_point():
        raise ConfigError(f"the rational activation needs a floating-point tensor, got "
                          f"{getattr(h, 'dtype', type(h).__name__)}; cast it with .float()")
    for x in params:
        if x.device != h.device:
            raise ConfigError(f"input is on {h.device} but a coefficient or scale is on {x.device}; move the "
                              f"module/coefficients with .to({str(h.device)!r})")


def safe_pade(t: Tensor, a: Tensor, b: Tensor, b0: Tensor | None = None) -> Tensor:
    r"""The safe-Padé rational r(t) = Σ_{i=0}^m a_i tⁱ / (1 + |b_0 + Σ_{j=1}^n b_j tʲ|), elementwise.

    Differentiable in ``t``, ``a``, ``b`` and ``b0`` through one custom autograd function with analytic gradients;
    finite for every finite float32 input (see the module docstring for the reciprocal branch and the
    saturation policy).

    Parameters
    ----------
    t
        Any shape, floating point (float16/bfloat16 are evaluated in float32 and returned in their dtype).
    a
        Numerator coefficients a_0..a_m, ascending: shape [m+1], shared by all elements, or [d, m+1], one row
        per position of the last dimension d of ``t`` (per-latent coefficients).
    b
        Denominator coefficients b_1..b_n (the constant 1 is implicit), shape [n] (n = 0 allowed), or [d, n].
    b0
        The free constant b_0 inside the absolute value, a 0-d tensor (or [d] with per-latent coefficients);
        ``None`` means b_0 = 0.

    Returns
    -------
    Tensor
        r(t), same shape and dtype as ``t``.

    Examples
    --------
    >>> import torch
    >>> a = torch.tensor([0.0218, 0.5, 1.5957, 1.1915])   # (3,2) ReLU fit on [-1, 1] (Boullé et al. 2020)
    >>> b = torch.tensor([0.0, 2.3830])
    >>> safe_pade(torch.tensor([-1.0, 0.0, 1.0]), a, b)
    tensor([-0.0219,  0.0218,  0.9781])
    """
    _check_coefficients(a, b, b0, t)
    _check_input(t, a, b, *([] if b0 is None else [b0]))
    return _SafePadeFunction.apply(t, a, b, b0, None, None)


def rational_activation(h: Tensor, a: Tensor, b: Tensor, log_c_in: Tensor, log_c_out: Tensor,
                        b0: Tensor | None = None, tails: tuple[float, float] | None = None, *,
                        positive: bool = False) -> Tensor:
    """φ(h) = exp(log_c_out) · r(h · exp(−log_c_in)) elementwise on [..., d]; differentiable in all arguments.

    ``b0`` is the free constant of the denominator 1 + |b_0 + Σ_j b_j tʲ| (0-d tensor; ``None`` means 0).

    ``tails = (s_left, s_right)`` replaces r outside its design interval t ∈ [−1, 1] by straight lines of those
    slopes, continuous at ±1: r̃(t) = r(clamp(t, −1, 1)) + s_right · max(t − 1, 0) + s_left · min(t + 1, 0).
    A rational of type (m, m − 1) grows like t far from [−1, 1] whatever it approximates there; with the tails of
    the fitted primitive (``(0, 1)`` for ReLU, JumpReLU and the TopK gate, which are 0 below −1 and t above 1)
    r̃ stays within the fit's sup error of the primitive on the whole real line. ``None`` (default): r everywhere.

    Coefficients are shared (``a`` [m+1], ``b`` [n], ``b0`` []) or per latent (``a`` [d, m+1], ``b`` [d, n],
    ``b0`` [d], row j used for column j of ``h``). ``log_c_in`` and ``log_c_out`` are 0-d tensors (shared
    scales) or shape [d] (one per latent, broadcast over the last dimension of ``h``); the two choices are
    independent. This is the functional form of :class:`RationalActivation`.

    ``positive=True`` returns the relu-gated φ, ``torch.where(h > 0, φ(h), 0)``, with the mask applied inside the
    fused forward and backward kernels (one pass each way instead of three). It equals that formulation to the
    last bit in the forward; the gradients are equal too, except where a masked element alone would have sent
    the call to the float64 path (its non-finite φ or gradient term is now zeroed before the check). With tails
    the clamp stays eager; under the mask the left tail (non-zero only for h < −C_in) is dropped, the right tail
    (zero for h ≤ C_in) is kept, so a NaN input gives NaN there (the tail's max(h − C_in, 0)), where the
    ``where`` formulation gave 0.
    """
    _check_coefficients(a, b, b0, h)
    _check_input(h, a, b, log_c_in, log_c_out, *([] if b0 is None else [b0]))
    for name, x in (("log_c_in", log_c_in), ("log_c_out", log_c_out)):
        if x.dim() > 1 or (x.dim() == 1 and (h.dim() == 0 or x.shape[0] != h.shape[-1])):
            last = h.shape[-1] if h.dim() else "?"
            raise ConfigError(f"{name} must be a scalar or have shape [d] = [{last}] (the input's last "
                              f"dimension), got {tuple(x.shape)}")
    if log_c_in.dim() != log_c_out.dim():
        raise ConfigError("log_c_in and log_c_out must both be scalars or both per-latent [d]")
    positive = bool(positive)
    if tails is None:
        return _SafePadeFunction.apply(h, a, b, b0, log_c_in, log_c_out, positive)
    left, right = check_tails(tails)
    c_in = log_c_in.exp().to(h.dtype)
    # clamp(h, −C_in, C_in) > 0 exactly where h > 0 (C_in > 0), so the kernel's mask on it is the gate's mask
    out = _SafePadeFunction.apply(torch.maximum(torch.minimum(h, c_in), -c_in), a, b, b0, log_c_in, log_c_out,
                                  positive)
    slope = (log_c_out - log_c_in).exp().to(h.dtype)  # C_out / C_in: φ's slope on a tail of slope 1
    if right:
        out = out + (slope * right) * torch.relu(h - c_in)
    if left and not positive:
        out = out - (slope * left) * torch.relu(-c_in - h)
    big = torch.finfo(out.dtype).max  # a tail beyond the dtype's range saturates, as the kernel does
    return out.clamp(-big, big)


def check_tails(tails: Any) -> tuple[float, float]:
    """``tails`` as two finite floats (s_left, s_right), or a ConfigError (the one check of a tails argument: the
    kernel, :class:`RationalActivation` and ``SAEConfig.rational_tails`` use it)."""
    try:
        left, right = (float(s) for s in tails)
    except (TypeError, ValueError):
        raise ConfigError(f"tails must be None or two slopes (s_left, s_right), got {tails!r}") from None
    if not (math.isfinite(left) and math.isfinite(right)):
        raise ConfigError(f"tails must be finite slopes, got {tails!r}")
    return left, right


class RationalCoefficients(NamedTuple):
    """A snapshot of a :class:`RationalActivation`'s parameters as float64 numpy arrays."""

    a: np.ndarray
    """Numerator coefficients a_0..a_m (ascending), shape [m+1] (shared) or [d_sae, m+1] (per latent)."""
    b: np.ndarray
    """Denominator coefficients b_1..b_n, shape [n] (shared) or [d_sae, n] (per latent)."""
    c_in: np.ndarray
    """Input scale C_in > 0: shape [] (shared) or [d_sae] (per latent)."""
    c_out: np.ndarray
    """Output scale C_out > 0: shape [] (shared) or [d_sae] (per latent)."""
    b0: float | np.ndarray = 0.0
    """The denominator's free constant b_0: a float (shared) or an array [d_sae] (per latent)."""


def _as_coefficients(name: str, x: Any, d_sae: int | None, per_latent: bool) -> Tensor:
    """``x`` as float64 [K] (shared), or [d_sae, K] when ``per_latent`` (a 1-D ``x`` is repeated for every latent).

    With ``name == "b0"`` K is absent: [] or [d_sae]."""
    scalar = name == "b0"
    try:
        t = torch.as_tensor(np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be {'a number' if scalar else 'a sequence of real numbers'} or array, got "
                          f"{type(x).__name__}: {exc}") from exc
    if not bool(torch.isfinite(t).all()):
        raise ConfigError(f"{name} contains non-finite values: {t.tolist()}")
    base = 0 if scalar else 1
    if t.dim() == base:
        return t.expand(d_sae, *t.shape).clone() if per_latent else t
    if t.dim() == base + 1 and per_latent:
        if t.shape[0] != d_sae:
            raise ConfigError(f"per-latent {name} must have {d_sae} rows (d_sae), got shape {tuple(t.shape)}")
        return t
    want = ("a number" if scalar else "1-D [K]") + (f", or [{d_sae}{'' if scalar else ', K'}] per latent"
                                                   if per_latent else "")
    hint = "" if per_latent else " (per-latent coefficients need per_latent_coefficients=True and d_sae)"
    raise ConfigError(f"{name} must be {want}, got shape {tuple(t.shape)}{hint}")


def _log_scale(name: str, c: Any, d_sae: int | None, per_latent: bool) -> Tensor:
    try:
        arr = np.asarray(c.detach().cpu() if isinstance(c, Tensor) else c, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a positive number or array, got {type(c).__name__}") from exc
    if not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        raise ConfigError(f"{name} must be finite and > 0 (it is stored as log {name}), got {arr.tolist()}")
    if arr.ndim == 0:
        return torch.full((d_sae,) if per_latent else (), math.log(float(arr)))
    if not per_latent:
        raise ConfigError(f"{name} has shape {arr.shape} but per_latent_scales=False; pass a scalar, or set "
                          "per_latent_scales=True with d_sae")
    if arr.shape != (d_sae,):
        raise ConfigError(f"{name} must have shape [d_sae] = [{d_sae}] for per-latent scales, got "
                          f"{arr.shape}")
    return torch.as_tensor(np.log(arr))


class RationalActivation(nn.Module):
    r"""Trainable rational activation φ(h) = C_out · r(h / C_in), r(t) = P(t) / (1 + |b_0 + B(t)|).

    Parameters ``a`` [m+1], ``b`` [n] and ``b0`` [] are shared by all latents, or, with
    ``per_latent_coefficients=True``, one row per latent: ``a`` [d_sae, m+1], ``b`` [d_sae, n], ``b0`` [d_sae];
    they are always stored in float64 (a module cast such as ``.float()`` leaves them float64; the kernel picks
    its working precision from their conditioning, the worst latent's for per-latent coefficients, see
    :func:`float32_error_bound`); ``log_c_in`` and ``log_c_out`` are scalars, or [d_sae] with
    ``per_latent_scales=True``. Forward and backward are one custom autograd function
    with analytic gradients, overflow-safe for any finite float32 input (module docstring of
    :mod:`rsae.core.rational`).

    Parameters
    ----------
    a, b
        Initial numerator coefficients a_0..a_m (ascending) and denominator coefficients b_1..b_n
        (array-like or tensor; stored in float64; the scales in the default dtype). With
        ``per_latent_coefficients`` either 1-D (every latent starts from the same rational) or [d_sae, K].
    b0
        Initial free constant b_0 of the denominator (default 0; a state dict without ``b0``, saved before the
        constant existed, loads with b_0 = 0); a number, or [d_sae] with ``per_latent_coefficients``.
    c_in, c_out
        Initial positive scales (a number, or an array [d_sae] with ``per_latent_scales``).
    d_sae
        Number of latents (size of the input's last dimension). Required for per-latent scales; when given,
        the forward checks the input against it.
    per_latent_scales
        One C_in and C_out per latent instead of one each.
    per_latent_coefficients
        One rational (a_j, b_j, b_0,j) per latent instead of one shared (needs ``d_sae``). Independent of
        ``per_latent_scales``. The fused kernel evaluates it in the same single pass; its coefficient
        gradients are reductions over the rows only (docs/rational_activation.md has the cost).
    tails
        ``(s_left, s_right)``: straight-line tails outside the design interval t ∈ [−1, 1]
        (:func:`rational_activation`); ``None`` (default): the rational everywhere.

    Examples
    --------
    >>> import torch
    >>> act = RationalActivation([0.0218, 0.5, 1.5957, 1.1915], [0.0, 2.3830], c_in=2.0, d_sae=3)
    >>> act
    RationalActivation(type=(3, 2), d_sae=3, per_latent_scales=False, c_in=2, c_out=1)
    >>> act(torch.tensor([[-2.0, 0.0, 2.0]])).detach()
    tensor([[-0.0219,  0.0218,  0.9781]])
    """

    def __init__(self, a: Sequence[float] | np.ndarray | Tensor, b: Sequence[float] | np.ndarray | Tensor,
                 c_in: float | Sequence[float] | np.ndarray | Tensor = 1.0,
                 c_out: float | Sequence[float] | np.ndarray | Tensor = 1.0,
                 d_sae: int | None = None, per_latent_scales: bool = False,
                 b0: float | Sequence[float] | np.ndarray | Tensor = 0.0,
                 per_latent_coefficients: bool = False, tails: tuple[float, float] | None = None) -> None:
        super().__init__()
        self.tails = None if tails is None else check_tails(tails)
        if d_sae is not None and (isinstance(d_sae, bool) or not isinstance(d_sae, int) or d_sae < 1):
            raise ConfigError(f"d_sae must be a positive int or None, got {d_sae!r}")
        if per_latent_scales and d_sae is None:
            raise ConfigError("per_latent_scales=True needs d_sae (the number of latents)")
        if per_latent_coefficients and d_sae is None:
            raise ConfigError("per_latent_coefficients=True needs d_sae (the number of latents)")
        per_coef = bool(per_latent_coefficients)
        a_t = _as_coefficients("a", a, d_sae, per_coef)
        b_t = _as_coefficients("b", b, d_sae, per_coef)
        b0_t = _as_coefficients("b0", b0, d_sae, per_coef)
        if a_t.shape[-1] < 1:
            raise ConfigError("a must hold at least a_0 (type (m, n) has m + 1 >= 1 numerator coefficients)")
        dtype = torch.get_default_dtype()
        self.d_sae = d_sae
        self.per_latent_scales = bool(per_latent_scales)
        self.per_latent_coefficients = per_coef
        self.a = nn.Parameter(a_t.to(torch.float64))
        self.b = nn.Parameter(b_t.to(torch.float64))
        self.log_c_in = nn.Parameter(_log_scale("c_in", c_in, d_sae, self.per_latent_scales).to(dtype))
        self.log_c_out = nn.Parameter(_log_scale("c_out", c_out, d_sae, self.per_latent_scales).to(dtype))
        self.b0 = nn.Parameter(b0_t.to(torch.float64))  # registered last: parameter order of the b_0 = 0 form

    @property
    def type(self) -> tuple[int, int]:
        """The rational type (m, n): numerator degree m, denominator degree n."""
        return self.a.shape[-1] - 1, self.b.shape[-1]

    @classmethod
    def from_gate(cls, gate: str, type: tuple[int, int] | None = None, *, d_sae: int | None = None,
                  per_latent_scales: bool = False, per_latent_coefficients: bool = False,
                  tails: tuple[float, float] | None = None, **gate_kwargs: Any) -> RationalActivation:
        """A rational activation initialised from the rational approximation of a sparsity gate.

        The coefficients come from ``rational_approx.activation_coefficients(gate, type, **gate_kwargs)``,
        valid on that result's ``domain`` (in t = h / C_in); the scales start at 1, to be calibrated on real
        pre-activations (:mod:`rsae.experiments.upgrade`).

        Parameters
        ----------
        gate
            Gate name understood by ``rational_approx.activation_coefficients`` (``relu``, ``jumprelu``,
            ``topk``, ...).
        type
            Rational type (m, n); default ``rational_approx.default_type(gate)`` (the one table of defaults):
            (3, 2) for ReLU, (9, 8) for JumpReLU and the TopK gates.
        d_sae, per_latent_scales, per_latent_coefficients, tails
            As in the constructor (per-latent coefficients all start from the gate's fit).
        **gate_kwargs
            Passed on to ``activation_coefficients`` (e.g. a threshold or domain).
        """
        from rational_approx import activation_coefficients
        from rational_approx.fitting.activation import default_type

        if type is None:
            try:
                type = default_type(gate)
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
        if len(type) != 2 or any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in type):
            raise ConfigError(f"type must be a pair of non-negative ints (m, n), got {type!r}")
        fit = activation_coefficients(gate, tuple(type), **gate_kwargs)
        return cls(fit.a, fit.b, d_sae=d_sae, per_latent_scales=per_latent_scales, b0=fit.b0,
                   per_latent_coefficients=per_latent_coefficients, tails=tails)

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> RationalActivation:
        # The coefficients stay float64 whatever dtype the module is cast to: float32 coefficients perturb a
        # (9, 8) gate fit by 6e-8 relative, which its cancellation amplifies to a sup error of 2.6e-3.
        saved = [p.data for p in (self.a, self.b, self.b0)]
        super()._apply(fn, *args, **kwargs)
        for p, before in zip((self.a, self.b, self.b0), saved, strict=True):
            if p.dtype != torch.float64:  # undo the cast from the saved float64 data, keep the device move
                p.data = before.to(device=p.device, dtype=torch.float64)
        return self

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # state dicts written before the free constant b_0 existed hold the form with b_0 = 0
        if prefix + "a" in state_dict and prefix + "b0" not in state_dict:
            state_dict[prefix + "b0"] = torch.zeros(state_dict[prefix + "a"].shape[:-1],
                                                    dtype=state_dict[prefix + "a"].dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, h: Tensor, positive: bool = False) -> Tensor:
        """φ(h) elementwise on [..., d_sae]; same shape and dtype as ``h``. ``positive=True``: φ(h) where h > 0,
        else 0, masked inside the fused kernels (:func:`rational_activation`)."""
        if isinstance(h, Tensor) and self.d_sae is not None and (h.dim() == 0 or h.shape[-1] != self.d_sae):
            raise ConfigError(f"input's last dimension must be d_sae = {self.d_sae}, got shape "
                              f"{tuple(h.shape)}")
        return rational_activation(h, self.a, self.b, self.log_c_in, self.log_c_out, self.b0, self.tails,
                                   positive=positive)

    def coefficients(self) -> RationalCoefficients:
        """The current (a, b, C_in, C_out, b_0) as float64 numpy arrays (b_0 a float when shared)."""
        def np64(x: Tensor) -> np.ndarray:
            return x.detach().cpu().double().numpy()

        b0 = np64(self.b0) if self.per_latent_coefficients else float(self.b0.detach())
        return RationalCoefficients(np64(self.a), np64(self.b), np.exp(np64(self.log_c_in)),
                                    np.exp(np64(self.log_c_out)), b0)

    def extra_repr(self) -> str:
        m, n = self.type

        def scale(x: Tensor) -> str:
            return f"[{x.shape[0]}]" if x.dim() else f"{math.exp(float(x.detach())):.4g}"

        coef = ", per_latent_coefficients=True" if self.per_latent_coefficients else ""
        coef += f", tails={self.tails}" if self.tails is not None else ""
        return (f"type=({m}, {n}), d_sae={self.d_sae}, per_latent_scales={self.per_latent_scales}{coef}, "
                f"c_in={scale(self.log_c_in)}, c_out={scale(self.log_c_out)}")
