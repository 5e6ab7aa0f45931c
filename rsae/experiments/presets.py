"""Sizes of a ``rsae reproduce`` / ``rsae study`` run: the teachers (:class:`TeacherSetting`), the run's
configuration (:class:`ReproduceConfig`), the upgrade :data:`VARIANTS` and the named :data:`PRESETS`."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from rsae.core.config import SAEConfig
from rsae.errors import ConfigError
from rsae.lm.corpus import DEFAULT_DROP_FIRST
from rsae.lm.hooks import DEFAULT_LAYER

__all__ = ["PRESETS", "VARIANTS", "ReproduceConfig", "TeacherSetting", "sparsity_label"]

VARIANTS = ("magnitude", "paper")
"""Upgrade variants :func:`reproduce` can run (see :func:`_upgrade_options`)."""


def sparsity_label(family: str, sparsity: float, l0_target: float | None = None) -> str:
    """A teacher's sparsity setting as the tables print it, e.g. ``λ₀=0.1`` or ``λ₀=0.1, L0≤16``."""
    symbol = {"relu": "λ₁", "jumprelu": "λ₀", "topk": "k", "batchtopk": "k"}.get(family, "s")
    target = "" if l0_target is None else f", L0≤{l0_target:g}"
    return f"{symbol}={sparsity:g}{target}"


@dataclass(frozen=True)
class TeacherSetting:
    """One teacher: a name, a family and its sparsity setting."""

    name: str
    """Folder and table name, e.g. ``topk-k32``."""
    family: str
    """``relu``, ``jumprelu`` or ``topk``."""
    sparsity: float
    """λ₁ (relu), λ₀ (jumprelu) or k (topk)."""
    threshold_init: float = 1.0
    """Initial JumpReLU threshold θ₀ (x/s units)."""
    dead: bool = False
    """Also train a copy with ``ReproduceConfig.dead_fraction`` of its latents dead (kind ``dead``)."""
    l0_target: float | None = None
    """Hold the teacher's training L0 at most this (``TrainConfig.l0_target``: a dual-ascent multiplier μ ≥ 1 on
    its sparsity penalty). A JumpReLU teacher at a fixed λ₀ keeps trading L0 for MSE (the study's L0 rose from 12
    to 35 over 2,400 steps) and so never meets the convergence check; with its L0 held it can."""

    def __post_init__(self) -> None:
        if self.l0_target is not None and not self.l0_target > 0:
            raise ConfigError(f"TeacherSetting.l0_target must be > 0 or None, got {self.l0_target!r}")

    def key(self) -> dict[str, Any]:
        """The setting as a stage key (``l0_target`` only when set, so older stage markers keep matching)."""
        out = dataclasses.asdict(self)
        if self.l0_target is None:
            out.pop("l0_target")
        return out

    @property
    def label(self) -> str:
        """The sparsity setting as the tables print it (:func:`sparsity_label`)."""
        return sparsity_label(self.family, self.sparsity, self.l0_target)

    def sae_config(self, d_in: int, d_sae: int) -> SAEConfig:
        """The teacher's :class:`SAEConfig`."""
        if self.family == "relu":
            return SAEConfig(d_in=d_in, d_sae=d_sae, family="relu", l1_coefficient=self.sparsity)
        if self.family == "jumprelu":
            return SAEConfig(d_in=d_in, d_sae=d_sae, family="jumprelu", l0_coefficient=self.sparsity,
                             threshold_init=self.threshold_init, jumprelu_bandwidth=0.1)
        if self.family == "topk":
            return SAEConfig(d_in=d_in, d_sae=d_sae, family="topk", k=int(self.sparsity))
        raise ConfigError(f"teacher family must be relu, jumprelu or topk, got {self.family!r}")


@dataclass(frozen=True)
class ReproduceConfig:
    """Sizes of one run (see :data:`PRESETS`)."""

    study_n_max: int
    """Largest degree of the approximation study (0: no ``approx`` stage; the upgrade's default coefficients)."""
    gate_types: tuple[tuple[str, tuple[int, int]], ...]
    """(gate, rational type) of the initial-coefficient fits."""
    train_tokens: int
    """Harvested training tokens."""
    heldout_tokens: int
    """Harvested held-out tokens (SAE metrics and the convergence check)."""
    context_length: int
    """Tokens per context."""
    d_sae: int
    """Latents of every SAE."""
    teacher_max_steps: int
    """Most training steps of a teacher (the convergence check stops it earlier)."""
    teacher_eval_every: int
    """Held-out MSE is measured every this many teacher steps; the check runs at multiples of 4 × this."""
    finetune_steps: int
    """Fine-tuning steps of each upgrade and each control."""
    ce_contexts: int
    """Held-out contexts of the CE splicing."""
    probe_train_contexts: int
    """Training contexts of the sparse probe."""
    probe_heldout_contexts: int
    """Held-out contexts of the sparse probe."""
    teachers: tuple[TeacherSetting, ...]
    """The teachers."""
    corpus: str = "pydoc"
    """Embedded text of the harvest (:data:`rsae.lm.corpus.CORPORA`)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds of every upgrade and control (≥ 3 for a verdict with a spread)."""
    variants: tuple[str, ...] = VARIANTS
    """Upgrade variants (:data:`VARIANTS`)."""
    batch_size: int = 1024
    """Tokens per step."""
    lr: float = 3e-3
    """Learning rate of the teachers (constant after warm-up)."""
    finetune_lr: float = 1e-3
    """Peak learning rate of the fine-tuning (warm-up 10 %, linear decay over the last 20 %)."""
    coefficient_lr_scale: float = 1.0
    """``TrainConfig.coefficient_lr_scale`` of the students' fine-tune (0: the rational's coefficients stay at their
    calibrated values; the scales and the SAE weights train)."""
    convergence_tol: float = 0.01
    """A teacher is converged when held-out MSE improved by less than this fraction over the last quarter."""
    dead_fraction: float = 0.25
    """Fraction of latents killed at initialisation in the ``dead`` teachers."""
    dead_shift: float = 100.0
    """b_enc of the killed latents (x/s units, negated)."""
    calibration_tokens: int = 8192
    """Tokens of the calibration fit."""
    l0_budget: float = 1.05
    """A row is over budget when an RSAE's L0 exceeds this × the teacher's; JumpReLU students fine-tune under
    it (the trainer's dual-ascent multiplier)."""
    layer: int = DEFAULT_LAYER
    """Block whose output is harvested."""
    drop_first: int = DEFAULT_DROP_FIRST
    """Leading positions of each context skipped (attention sinks)."""
    probe_task: str = "in_parentheses"
    """Probing task of :data:`rsae.lm.downstream.PROBE_TASKS`."""
    probe_k: int = 5
    """Latents of the sparse probe."""
    seed: int = 0
    """Seed of the context order and of the teachers' initialisation and data order."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes recorded in the results."""

    def __post_init__(self) -> None:
        if len(self.seeds) < 1 or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds must be distinct and at least one, got {self.seeds}")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise ConfigError(f"variants must be among {', '.join(VARIANTS)}, got {self.variants}")
        if self.teacher_max_steps < 4 * self.teacher_eval_every:
            raise ConfigError("teacher_max_steps must allow one convergence check (≥ 4 × teacher_eval_every)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dictionary."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


# Sparsity settings (x/s units). λ₁ = 5 left 78 % of the ReLU latents dead in 100-step pilots (d_sae 1152), and
# JumpReLU's θ₀ sets much of the final L0 when the threshold moves slowly.
_STUDY_TEACHERS = (
    TeacherSetting("relu-l1=1", "relu", 1.0, dead=True),
    TeacherSetting("jumprelu-l0=0.1-L0=16", "jumprelu", 0.1, threshold_init=1.0, dead=True, l0_target=16),
    TeacherSetting("topk-k=16", "topk", 16, dead=True),
)
"""The ``study`` preset's teachers: the main job's three settings (one sparsity level per family, each also with
dead latents), so that the two runs differ only in data, convergence and fine-tuning length — except that the
JumpReLU teachers train with their L0 held at most 16 (the TopK teachers' k), without which they do not converge."""
_FULL_TEACHERS = (
    TeacherSetting("relu-l1=1", "relu", 1.0, dead=True),
    TeacherSetting("relu-l1=2", "relu", 2.0),
    TeacherSetting("jumprelu-l0=0.1", "jumprelu", 0.1, threshold_init=1.0, dead=True),
    TeacherSetting("jumprelu-l0=1", "jumprelu", 1.0, threshold_init=1.5),
    TeacherSetting("topk-k=16", "topk", 16, dead=True),
    TeacherSetting("topk-k=32", "topk", 32),
)

PRESETS: dict[str, ReproduceConfig] = {
    "tiny": ReproduceConfig(
        study_n_max=6,
        gate_types=(("relu", (3, 2)), ("jumprelu", (3, 2)), ("topk", (3, 2))),
        train_tokens=600,
        heldout_tokens=200,
        context_length=32,
        d_sae=64,
        teacher_max_steps=8,
        teacher_eval_every=2,
        finetune_steps=4,
        ce_contexts=2,
        probe_train_contexts=8,
        probe_heldout_contexts=4,
        teachers=(
            TeacherSetting("relu-l1=2", "relu", 2.0, dead=True),
            TeacherSetting("jumprelu-l0=0.5", "jumprelu", 0.5),
            TeacherSetting("topk-k=4", "topk", 4),
        ),
        batch_size=128,
        calibration_tokens=512,
    ),
    "default": ReproduceConfig(
        study_n_max=40,
        gate_types=(("relu", (3, 2)), ("jumprelu", (9, 8)), ("topk", (9, 8))),
        train_tokens=40_000,
        heldout_tokens=4_000,
        context_length=128,
        d_sae=2304,
        teacher_max_steps=240,
        teacher_eval_every=15,
        finetune_steps=40,
        ce_contexts=8,
        probe_train_contexts=48,
        probe_heldout_contexts=24,
        teachers=(
            TeacherSetting("relu-l1=1", "relu", 1.0, dead=True),
            TeacherSetting("jumprelu-l0=0.1", "jumprelu", 0.1, threshold_init=1.0, dead=True),
            TeacherSetting("topk-k=16", "topk", 16, dead=True),
        ),
        batch_size=512,
    ),
    "study": ReproduceConfig(
        study_n_max=40,
        gate_types=(("relu", (3, 2)), ("jumprelu", (9, 8)), ("topk", (9, 8))),
        train_tokens=500_000,
        heldout_tokens=20_000,
        context_length=128,
        d_sae=2304,
        teacher_max_steps=2400,
        teacher_eval_every=50,
        finetune_steps=100,
        ce_contexts=32,
        probe_train_contexts=128,
        probe_heldout_contexts=64,
        teachers=_STUDY_TEACHERS,
        corpus="stdlib",
    ),
    "full": ReproduceConfig(
        study_n_max=80,
        gate_types=(("relu", (3, 2)), ("jumprelu", (9, 8)), ("topk", (9, 8))),
        train_tokens=2_000_000,
        heldout_tokens=50_000,
        context_length=128,
        d_sae=4608,
        teacher_max_steps=20_000,
        teacher_eval_every=500,
        finetune_steps=2000,
        ce_contexts=128,
        probe_train_contexts=512,
        probe_heldout_contexts=128,
        teachers=_FULL_TEACHERS,
        corpus="stdlib",
        seeds=(0, 1, 2, 3, 4),
        batch_size=4096,
    ),
}
"""``tiny`` (the slow test: a few hundred tokens, tiny SAEs), ``default`` (the main job, ``make reproduce``:
≈ 8.5 min from scratch on an idle 2-core CPU, docs/results.md), ``study`` (``rsae study``: 500k stdlib-source tokens,
d_sae = 4 × d_in, the main job's six teachers trained to convergence, 100 fine-tuning steps) and ``full``
(``rsae study --device cuda``: 2M tokens, d_sae = 8 × d_in, two sparsity levels per family, five seeds)."""
