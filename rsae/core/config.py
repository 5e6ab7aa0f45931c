"""Configuration dataclasses for the SAE model (:class:`SAEConfig`) and its training (:class:`TrainConfig`).

Every field carries a docstring right under it (EleutherAI ``sparsify`` style). Both classes validate
themselves in ``__post_init__`` and raise :class:`rsae.errors.ConfigError` with a message saying which value
is wrong and what would be accepted. ``to_dict`` / ``from_dict`` give a JSON-safe round trip used by
checkpoints and ``cfg.json``.

Example
-------
>>> from rsae.core.config import SAEConfig, TrainConfig
>>> cfg = SAEConfig(d_in=64, d_sae=512, family="topk", k=8)
>>> SAEConfig.from_dict(cfg.to_dict()) == cfg
True
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from rsae.errors import ConfigError

__all__ = ["FAMILIES", "RATIONAL_GATES", "SAEConfig", "TrainConfig", "check_device", "check_init_gate", "init_gates"]

FAMILIES: tuple[str, ...] = ("relu", "jumprelu", "topk", "batchtopk", "rational")
"""The SAE families; each differs from the others only in its activation and sparsity penalty."""

RATIONAL_GATES: tuple[str, ...] = ("relu", "jumprelu", "topk", "batchtopk", "cutoff", "none")
"""Where the exact zeros of a rational SAE come from (see :class:`rsae.core.activations.Rational`); ``none``: no
hard gate, z = φ(h) (the paper's reading, in which the rational itself is the gate)."""

_DTYPES = ("float32", "float64", "bfloat16", "float16")


@dataclass(frozen=True)
class SAEConfig:
    """Shape and family of one sparse autoencoder.

    The model is h = (x − b_dec) W_enc + b_enc, z = φ(h), x̂ = z W_dec + b_dec, with φ chosen by ``family``.
    """

    d_in: int
    """Width of the input activations x (e.g. the residual stream's d_model)."""

    d_sae: int
    """Number of latents (dictionary size)."""

    family: str = "relu"
    """Activation family: one of ``relu``, ``jumprelu``, ``topk``, ``batchtopk``, ``rational``."""

    k: int | None = None
    """Active latents per token for ``topk``/``batchtopk`` (batch-top-k keeps k·batch over the batch), and
    for the ``rational`` family when ``rational_gate`` is ``topk`` or ``batchtopk``. Required there, ignored
    elsewhere."""

    l1_coefficient: float = 1e-3
    """λ of the L1 penalty λ · mean_tokens Σ_j |z_j| (· ‖W_dec[j]‖ when ``l1_weight_by_decoder_norm``); used
    by ``relu`` and by ``rational`` with the ``relu`` gate."""

    l1_weight_by_decoder_norm: bool = False
    """Weight each latent's L1 term by the norm of its decoder row (Anthropic's 2024 ReLU recipe; a no-op
    when the decoder rows are kept at unit norm)."""

    l0_coefficient: float = 1e-3
    """λ of the L0 penalty λ · mean_tokens Σ_j H(h_j − θ_j) for ``jumprelu`` and for the rational gates
    ``jumprelu`` and ``cutoff`` (gradient via the straight-through rectangle-kernel estimator)."""

    jumprelu_bandwidth: float = 0.05
    """Bandwidth ε of the rectangle kernel K(u) = 1[|u| < 1/2] in the threshold's straight-through estimator
    ∂/∂θ ≈ −(1/ε) K((h − θ)/ε) (Rajamanoharan et al. 2024)."""

    threshold_init: float = 0.05
    """Initial JumpReLU threshold θ_j (> 0; stored internally as log θ_j), also the initial shared cut-off
    of the rational ``cutoff`` gate."""

    batchtopk_threshold_momentum: float = 0.01
    """Momentum m of the batch-top-k inference threshold θ ← (1 − m) θ + m · (smallest kept activation of
    the batch)."""

    rational_gate: str = "relu"
    """Hard gate giving a rational SAE its support: ``relu`` (h > 0, L1 penalty), ``jumprelu`` (h > θ_j,
    L0 penalty), ``topk``, ``batchtopk`` (k largest), or ``cutoff`` (one learned threshold on φ(h) itself,
    L0 penalty).
    Codes are z = 1[gate] · φ(h): the rational shapes magnitudes, the gate makes exact zeros."""

    rational_l1_on: str = "codes"
    """What the L1 penalty of the rational ``relu`` gate acts on: ``codes`` — the paper's λ₁‖z‖₁ on z = φ(h)
    (default) — or ``pre_acts`` — λ₁ · mean Σ_j max(h_j, 0), the gate's own variable. The latter is not scale
    invariant (h can shrink while C_out grows) and collapsed to L0 ≈ 0 in docs/rsae.md; kept for that record."""

    rational_type: tuple[int, int] | None = None
    """Type (m, n) of the safe-Padé rational r(t) = Σ_{i≤m} a_i tⁱ / (1 + |b_0 + Σ_{1≤j≤n} b_j tʲ|); ``None``
    (default) takes the one table of defaults, ``rational_approx.default_type(rational_init_gate)``: (3, 2) for
    ReLU, (9, 8) for the JumpReLU and TopK gates."""

    rational_init_gate: str = "relu"
    """Target gate whose rational approximation gives the initial (a, b) via
    ``rational_approx.activation_coefficients`` (ignored when ``rational_a``/``rational_b`` are given)."""

    rational_a: tuple[float, ...] | None = None
    """Explicit initial numerator coefficients a_0..a_m (ascending); ``None`` to take them from
    ``rational_init_gate``."""

    rational_b: tuple[float, ...] | None = None
    """Explicit initial denominator coefficients b_1..b_n; ``None`` to take them from
    ``rational_init_gate``."""

    rational_b0: float = 0.0
    """Initial free constant b_0 of the denominator 1 + |b_0 + Σ_j b_j tʲ| (0: the Padé-activation-unit form;
    with ``rational_a = None`` the gate's fit sets it)."""

    rational_floor: float = 0.0
    """Inference floor τ ≥ 0: codes with |z| < τ are set to exactly 0 (0 disables it). Meant for a rational
    without a hard gate (``rational_gate="none"``), whose codes are almost never exactly 0."""

    rational_tails: tuple[float, float] | None = None
    """Slopes (s_left, s_right) of straight-line tails that replace the rational outside its design interval
    t = h / C_in ∈ [−1, 1], continuous at ±1 (:func:`rsae.core.rational.rational_activation`); ``None`` (default)
    evaluates the rational everywhere. The upgrade uses ``(0, 1)``, the tails of ReLU, JumpReLU and the TopK gate
    (0 below the interval, the identity above), so φ stays within the fit's error of the primitive on all inputs."""

    rational_c_in: float = 1.0
    """Initial input scale C_in > 0 of φ(h) = C_out · r(h / C_in) (the trainer re-initialises it from data
    when ``TrainConfig.init_rational_scale_from_data``)."""

    rational_c_out: float = 1.0
    """Initial output scale C_out > 0."""

    rational_per_latent_scales: bool = False
    """Give every latent its own (C_in, C_out) instead of one shared pair."""

    rational_per_latent_coefficients: bool = False
    """Give every latent its own rational (a_j, b_j, b_0,j), all starting from ``rational_a``/``rational_b``/
    ``rational_b0`` (or the gate's fit), instead of one shared by the SAE. The file tensors ``rational_a``,
    ``rational_b``, ``rational_b0`` then have a leading latent dimension [d_sae, ...]."""

    apply_b_dec_to_input: bool = True
    """Subtract b_dec from x before encoding (SAELens ``apply_b_dec_to_input``)."""

    normalize_decoder: bool = True
    """Keep decoder rows at unit norm during training and remove the gradient component parallel to each
    row."""

    dtype: str = "float32"
    """Parameter dtype: ``float32`` (default; CPU training), ``float64``, ``bfloat16`` or ``float16``."""

    device: str = "cpu"
    """Device the model is built on (``cpu``, ``cuda``, ``cuda:1`` ...)."""

    def __post_init__(self) -> None:
        _check_real_fields(self)
        for name in ("d_in", "d_sae"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"SAEConfig.{name} must be a positive integer, got {value!r}")
        if self.family not in FAMILIES:
            raise ConfigError(f"SAEConfig.family must be one of {FAMILIES}, got {self.family!r}")
        if self.rational_l1_on not in ("pre_acts", "codes"):
            raise ConfigError(f"SAEConfig.rational_l1_on must be 'pre_acts' or 'codes', got {self.rational_l1_on!r}")
        if self.rational_gate not in RATIONAL_GATES:
            raise ConfigError(f"SAEConfig.rational_gate must be one of {RATIONAL_GATES}, got {self.rational_gate!r}")
        if self.needs_k:
            if self.k is None or not isinstance(self.k, int) or isinstance(self.k, bool):
                raise ConfigError(f"family {self.family!r} (gate {self.gate!r}) needs an integer k; pass k=...")
            if not 1 <= self.k <= self.d_sae:
                raise ConfigError(f"k must satisfy 1 <= k <= d_sae = {self.d_sae}, got k = {self.k}")
        for name in ("l1_coefficient", "l0_coefficient"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"SAEConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("jumprelu_bandwidth", "threshold_init", "rational_c_in", "rational_c_out"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"SAEConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 < self.batchtopk_threshold_momentum <= 1:
            raise ConfigError(
                f"SAEConfig.batchtopk_threshold_momentum must lie in (0, 1], got {self.batchtopk_threshold_momentum!r}"
            )
        if self.rational_type is None:
            from rational_approx.fitting.activation import default_type

            try:
                object.__setattr__(self, "rational_type", default_type(self.rational_init_gate))
            except ValueError as exc:
                raise ConfigError(f"SAEConfig.rational_type: {exc}") from exc
        if self.rational_tails is not None:
            from rsae.core.rational import check_tails

            object.__setattr__(self, "rational_tails", check_tails(self.rational_tails))
        if not self.rational_floor >= 0 or not math.isfinite(self.rational_b0):
            raise ConfigError(f"SAEConfig.rational_floor must be >= 0 and rational_b0 finite, got "
                              f"{self.rational_floor!r}, {self.rational_b0!r}")
        m, n = self.rational_type
        if m < 0 or n < 0:
            raise ConfigError(f"SAEConfig.rational_type must be two non-negative integers, got {self.rational_type}")
        if self.rational_a is not None and len(self.rational_a) != m + 1:
            raise ConfigError(
                f"rational_a needs m + 1 = {m + 1} coefficients for type {self.rational_type}, "
                f"got {len(self.rational_a)}"
            )
        if self.rational_b is not None and len(self.rational_b) != n:
            raise ConfigError(
                f"rational_b needs n = {n} coefficients for type {self.rational_type}, got {len(self.rational_b)}"
            )
        if (self.rational_a is None) != (self.rational_b is None):
            raise ConfigError("give both rational_a and rational_b, or neither (then rational_init_gate is used)")
        if self.dtype not in _DTYPES:
            raise ConfigError(f"SAEConfig.dtype must be one of {_DTYPES}, got {self.dtype!r}")
        if self.family == "rational":
            check_init_gate(self.rational_init_gate)
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise ConfigError(f"SAEConfig.device {self.device!r} is not a torch device (cpu, cuda, cuda:1)") from exc

    @property
    def gate(self) -> str:
        """The support mechanism: the family itself, or ``rational_gate`` for the rational family."""
        return self.rational_gate if self.family == "rational" else self.family

    @property
    def needs_k(self) -> bool:
        """Whether the support is a (batch-)top-k selection and so ``k`` is required."""
        return self.gate in ("topk", "batchtopk")

    def replace(self, **changes: Any) -> SAEConfig:
        """Return a copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary of every field (tuples become lists)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAEConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        return _from_dict(cls, data, tuple_fields=("rational_type", "rational_a", "rational_b",
                                                           "rational_tails"))


@dataclass(frozen=True)
class TrainConfig:
    """How to train one SAE: optimiser, schedule, regularisers, bookkeeping; one trainer for every family."""

    steps: int = 2000
    """Number of optimiser steps."""

    batch_size: int = 1024
    """Tokens per step."""

    lr: float = 1e-3
    """Peak Adam learning rate."""

    coefficient_lr_scale: float = 1.0
    """Learning rate of a rational activation's coefficients (a, b, b_0) as a multiple of ``lr`` (0 freezes them;
    its scales C_in, C_out and every other parameter keep ``lr``). Adam moves each parameter by about the learning
    rate per step whatever its size, and the (9, 8) gate fits have monomial coefficients up to ~1e7 that cancel to
    a sup error of 6e-5, so steps of 1e-3 on them undo the fit within a few steps (docs/results.md)."""

    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam (β₁, β₂)."""

    adam_eps: float = 1e-8
    """Adam ε."""

    warmup_steps: int = 100
    """Linear learning-rate warm-up from 0 to ``lr`` over this many steps."""

    decay_fraction: float = 0.2
    """Linear decay to 0 over the last ``decay_fraction · steps`` steps (0 keeps the rate constant)."""

    sparsity_warmup_steps: int = 0
    """Ramp the sparsity penalty's coefficient linearly from 0 to its value over this many steps."""

    l0_target: float | None = None
    """Keep the training L0 at or below this: after every step the sparsity penalty's multiplier μ ≥ 1 is
    updated by dual ascent, μ ← clip(μ · exp(η (L0_batch / l0_target − 1)), 1, 10⁴) (``None``: μ = 1).
    Used by the upgrade to hold the student at the teacher's L0."""

    l0_target_rate: float = 0.01
    """Step size η of the multiplier update of ``l0_target``."""

    grad_clip: float | None = 1.0
    """Clip the global gradient norm to this value (``None`` disables clipping)."""

    seed: int = 0
    """Seed for the model's initialisation, the data order and every random draw of the trainer."""

    dead_window_tokens: int = 200_000
    """A latent is dead when it has not fired on any of the last ``dead_window_tokens`` training tokens."""

    auxk_coefficient: float = 1 / 32
    """Weight α of the AuxK loss for the top-k style gates (Gao et al. 2024); 0 disables it."""

    auxk_k: int | None = None
    """Number of dead latents k_aux used by the AuxK loss; ``None`` means d_in // 2."""

    init_b_dec_geometric_median: bool = True
    """Initialise b_dec to the geometric median of ``init_sample_tokens`` training tokens (Weiszfeld)."""

    init_rational_scale_from_data: bool = True
    """For rational SAEs trained from scratch, set C_in so a sample's pre-activations map into [−1, 1]."""

    init_sample_tokens: int = 4096
    """Tokens drawn for the data-dependent initialisations."""

    chunk_tokens: int = 65536
    """Shuffle-buffer size: tokens read (memory-mapped) and shuffled together; bounds the data memory."""

    autocast_bf16: bool = False
    """Run the forward pass under ``torch.autocast(dtype=bfloat16)`` (GPU only; parameters stay float32)."""

    checkpoint_every: int = 0
    """Write a checkpoint every this many steps (0: only at the end when a checkpoint folder is given)."""

    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep on disk."""

    log_every: int = 10
    """Refresh the progress bar's loss / L0 / FVU every this many steps."""

    def __post_init__(self) -> None:
        _check_real_fields(self)
        for name in (
            "steps",
            "batch_size",
            "dead_window_tokens",
            "init_sample_tokens",
            "chunk_tokens",
            "keep_checkpoints",
            "log_every",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        for name in ("warmup_steps", "sparsity_warmup_steps", "checkpoint_every", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"TrainConfig.{name} must be a non-negative integer, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"TrainConfig.lr must be > 0, got {self.lr!r}")
        if not (0 <= self.coefficient_lr_scale < float("inf")):
            raise ConfigError(f"TrainConfig.coefficient_lr_scale must be finite and >= 0, got "
                              f"{self.coefficient_lr_scale!r}")
        if not 0 <= self.decay_fraction <= 1:
            raise ConfigError(f"TrainConfig.decay_fraction must lie in [0, 1], got {self.decay_fraction!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"TrainConfig.grad_clip must be > 0 or None, got {self.grad_clip!r}")
        if self.l0_target is not None and not self.l0_target > 0:
            raise ConfigError(f"TrainConfig.l0_target must be > 0 or None, got {self.l0_target!r}")
        if not self.l0_target_rate > 0:
            raise ConfigError(f"TrainConfig.l0_target_rate must be > 0, got {self.l0_target_rate!r}")
        if not self.auxk_coefficient >= 0:
            raise ConfigError(f"TrainConfig.auxk_coefficient must be >= 0, got {self.auxk_coefficient!r}")
        if self.auxk_k is not None and (not isinstance(self.auxk_k, int) or self.auxk_k <= 0):
            raise ConfigError(f"TrainConfig.auxk_k must be a positive integer or None, got {self.auxk_k!r}")
        if not self.adam_eps > 0:
            raise ConfigError(f"TrainConfig.adam_eps must be > 0, got {self.adam_eps!r}")
        if len(self.adam_betas) != 2 or not all(0 <= beta < 1 for beta in self.adam_betas):
            raise ConfigError(f"TrainConfig.adam_betas must be two numbers in [0, 1), got {self.adam_betas!r}")

    def replace(self, **changes: Any) -> TrainConfig:
        """Return a copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary of every field."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        return _from_dict(cls, data, tuple_fields=("adam_betas",))


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device` after checking that this machine has it.

    Raises
    ------
    ConfigError
        Not a device name (``"bogus"``), or a CUDA/MPS device this machine or this torch build lacks.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"{device!r} is not a torch device; use cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device {str(device)!r} asked for, but CUDA is not available here; use --device cpu")
        if resolved.index is not None and resolved.index >= count:
            raise ConfigError(f"device {str(device)!r} asked for, but this machine has {count} CUDA device(s)")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {str(device)!r} asked for, but MPS is not available here; use --device cpu")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device type {resolved.type!r} is not supported; use cpu, cuda or cuda:N")
    return resolved


def _check_real_fields(config: Any) -> None:
    """Every field annotated ``float`` (or a tuple of floats) must hold finite real numbers.

    ``inf`` passes comparisons such as ``>= 0`` and NaN fails every comparison in the way the check did not
    expect, so both are refused here, once, for every real-valued field."""
    for f in dataclasses.fields(config):
        annotation = str(f.type)
        if "float" not in annotation:
            continue
        value = getattr(config, f.name)
        values = value if isinstance(value, (tuple, list)) else (value,)
        for item in values:
            if item is None and "None" in annotation:
                continue
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise ConfigError(f"{type(config).__name__}.{f.name} must be a real number, got {value!r}")
            if not math.isfinite(item):
                raise ConfigError(f"{type(config).__name__}.{f.name} must be finite, got {value!r}")


def init_gates() -> tuple[str, ...]:
    """Names accepted as ``rational_init_gate``: the targets of :mod:`rational_approx` and the SAE-family aliases."""
    from rational_approx import TARGET_NAMES
    from rational_approx.fitting.activation import GATE_ALIASES

    return tuple(sorted(set(TARGET_NAMES) | set(GATE_ALIASES)))


def check_init_gate(name: Any) -> str:
    """``name`` if it is one of :func:`init_gates`, else :class:`ConfigError`."""
    if not isinstance(name, str) or name not in init_gates():
        raise ConfigError(f"the rational init gate must be one of {list(init_gates())}, got {name!r}")
    return name


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _from_dict(cls: type, data: dict[str, Any], tuple_fields: tuple[str, ...]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys {unknown}; known keys: {sorted(names)}")
    kwargs = {
        key: (tuple(value) if key in tuple_fields and value is not None else value) for key, value in data.items()
    }
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad {cls.__name__} fields: {exc}") from exc


SPARSITY_DEFAULTS: dict[str, dict[str, float]] = {
    "relu": {"l1_coefficient": 0.5},
    "jumprelu": {"l0_coefficient": 0.1, "threshold_init": 0.1},
    "cutoff": {"l0_coefficient": 0.1, "threshold_init": 0.1},
}
"""The one table of default sparsity settings per gate (the family, or a rational SAE's support gate), used when
none is given (``rsae train``, the synthetic study); chosen on the default synthetic data (docs/rsae.md). Top-k gates
take ``k`` instead."""
