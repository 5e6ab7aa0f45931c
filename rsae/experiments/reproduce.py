"""``rsae reproduce`` / ``rsae study``: teachers, upgrades, controls, seeds and the scoreboard, resumable by stage.

Stages (each writes ``<out>/<stage>/stage.json`` with a hash of its configuration and of the stages it reads;
a rerun skips every stage whose marker matches and whose files still exist, so an interrupted run resumes):

1. ``approx``: the error-vs-degree study of :mod:`rational_approx.verification.study` (reduced ``n_max``) and
   the safe-Padé initial coefficients of the ReLU, JumpReLU and TopK gates
   (:func:`rational_approx.activation_coefficients`), with a figure of each gate against its rational on
   [−1, 1]. Skipped when ``study_n_max`` is 0.
2. ``harvest``: residual-stream activations after block L of the default LM on the embedded text ``corpus``
   (:func:`rsae.lm.harvest.harvest_splits`; train and held-out documents), and the scale s with
   E‖x/s‖² = d_in on the train split (SAELens' "expected average norm" normalisation; every SAE sees x/s).
   With ``data=`` (``--data``) an existing folder with ``train/`` and ``heldout/`` stores is used instead, in its
   own units (s = 1), and there is no language model (the downstream cells are ``n/a``).
3. ``teacher-<name>``: ReLU, JumpReLU and TopK teachers, trained until *converged*: with held-out MSE m(T)
   measured every ``teacher_eval_every`` steps at a constant learning rate (after warm-up), training stops at
   the first T = 4j·``teacher_eval_every`` with (m(3T/4) − m(T)) / m(3T/4) < ``convergence_tol`` (1 %: less
   than 1 % improvement over the last quarter of training), or at ``teacher_max_steps`` with the flag false; the
   check and its numbers are printed and stored. ``teacher-<name>-dead``: the same setting with a fraction
   ``dead_fraction`` of latents (a seeded random choice) started with b_enc = −``dead_shift`` — far below every
   pre-activation, so they never fire and get no gradient (ReLU, JumpReLU) or too little to recover (TopK's
   AuxK, Adam steps ≈ lr) — then trained to convergence the same way: a converged teacher with ≥ 20 % dead
   latents, the situation the paper credits for its largest gains. Teachers in SAELens format from disk
   (``teachers=``, ``--teacher DIR``) are used as they are (kind ``saelens``, convergence unknown).
4. ``upgrade-<teacher>-<variant>-s<seed>``: the two-stage upgrade (:func:`rsae.experiments.upgrade.upgrade`)
   of each teacher, per variant and seed (the seed sets the calibration sample and the fine-tune's data order),
   and the *control*: the teacher fine-tuned with the same steps, optimiser, schedule, L0 target and data.
5. ``downstream``: on held-out contexts, CE clean / spliced / zero-ablated (ΔCE, loss recovered) and a
   k-sparse probe for every teacher, RSAE-init, RSAE and control (each model's numbers are cached in the stage
   folder, so a changed row does not recompute the others).
6. ``report``: ``<figures>/results.json`` (with the scoreboard of :mod:`rsae.experiments.scoreboard`),
   ``<out>/results.md`` (its tables) and the figures ``reproduce_tradeoff.png`` (L0–MSE with error bars, one
   panel per family) and ``reproduce_shapes.png`` (learned φ vs the teacher's gate).

Metrics are those of :func:`rsae.core.metrics.evaluate_sae` on the held-out store, in the normalised units x/s
(MSE = mean over tokens of ‖x/s − x̂/s‖²; L0 = exact non-zeros per token) and :mod:`rsae.lm.downstream`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from rsae.core.config import SAEConfig, TrainConfig
from rsae.core.data import ActivationStore
from rsae.core.io import load_sae, save_sae
from rsae.core.metrics import evaluate_sae
from rsae.core.sae import SAE
from rsae.core.strict_json import finite, write_json
from rsae.errors import ConfigError, DataError
from rsae.experiments.scoreboard import SIGMAS, plot_tradeoff, score_row, scoreboard_markdown, totals
from rsae.lm.corpus import DEFAULT_DROP_FIRST, corpus_description
from rsae.lm.hooks import DEFAULT_LAYER

__all__ = ["PRESETS", "VARIANTS", "ReproduceConfig", "TeacherSetting", "reproduce", "results_markdown"]

MARKER = "stage.json"
"""Name of the per-stage marker file."""
VARIANTS = ("magnitude", "paper")
"""Upgrade variants :func:`reproduce` can run (see :func:`_upgrade_options`)."""


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
        # the paper variant's calibration over all (token, latent) entries costs minutes per JumpReLU/TopK stage on
        # 2 cores; the default main job runs the magnitude variant, the study presets run both
        variants=("magnitude",),
    ),
    "study": ReproduceConfig(
        study_n_max=40,
        gate_types=(("relu", (3, 2)), ("jumprelu", (9, 8)), ("topk", (9, 8))),
        train_tokens=500_000,
        heldout_tokens=20_000,
        context_length=128,
        d_sae=2304,
        teacher_max_steps=1600,
        teacher_eval_every=100,
        finetune_steps=200,
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
        teachers=_STUDY_TEACHERS,
        corpus="stdlib",
        seeds=(0, 1, 2, 3, 4),
        batch_size=4096,
    ),
}
"""``tiny`` (the slow test: a few hundred tokens, tiny SAEs), ``default`` (the main job, ``make reproduce``:
≈ 15 min on a quiet 2-core CPU), ``study`` (``rsae study``: 500k stdlib-source tokens, d_sae = 4 × d_in, nine
rows) and ``full`` (``rsae study --device cuda``: 2M tokens, d_sae = 8 × d_in, five seeds)."""


# ----------------------------------------------------------------------------------------------- stages


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_json(path: Path, value: Any) -> None:
    """Write strict JSON atomically (:func:`rsae.core.strict_json.write_json`), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, value, indent=1)


class _Stages:
    """Runs stages, skipping those whose marker matches (same config hash, files present)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.log: dict[str, dict[str, Any]] = {}

    def run(self, name: str, config: Any, fn: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        """Result of stage ``name``: read from its marker if valid, else ``fn(stage_folder)`` (which returns a
        JSON-able dict; its ``files`` entry lists the paths whose existence makes the stage valid)."""
        folder = self.out / name
        digest = _hash(config)
        marker = folder / MARKER
        if marker.is_file():
            try:
                saved = json.loads(marker.read_text())
            except json.JSONDecodeError:
                saved = {}
            if saved.get("config_hash") == digest and all(Path(f).exists() for f in saved["result"].get("files", [])):
                self.log[name] = {"skipped": True, "seconds": saved["seconds"], "config_hash": digest}
                return saved["result"]
        sys.stderr.write(f"rsae reproduce: stage {name}\n")
        t0 = time.perf_counter()
        folder.mkdir(parents=True, exist_ok=True)
        result = fn(folder)
        seconds = time.perf_counter() - t0
        _write_json(marker, {"stage": name, "config_hash": digest, "seconds": seconds, "result": result})
        self.log[name] = {"skipped": False, "seconds": seconds, "config_hash": digest}
        return json.loads(marker.read_text())["result"]


def _gate_function(gate: str, params: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    """The gate on t ∈ [−1, 1] (design units of :func:`rational_approx.activation_coefficients`)."""
    if gate == "relu":
        return lambda t: np.maximum(t, 0.0)
    threshold = params.get("theta", params.get("tau"))
    return lambda t: np.where(t > threshold, t, 0.0)


def _stage_approx(cfg: ReproduceConfig, figures: Path, progress: bool) -> Callable[[Path], dict[str, Any]]:
    def run(folder: Path) -> dict[str, Any]:
        from rational_approx import activation_coefficients
        from rational_approx.verification.study import run_study

        figures.mkdir(parents=True, exist_ok=True)
        study_json, study_png = folder / "error_vs_degree.json", figures / "reproduce_error_vs_degree.png"
        rows, seconds = run_study(cfg.study_n_max, json_out=study_json, figure=study_png, progress=progress)
        fits = {}
        for gate, rtype in tqdm(cfg.gate_types, desc="gate fits", disable=not progress, file=sys.stderr):
            t0 = time.perf_counter()
            fit = activation_coefficients(gate, tuple(rtype))
            fits[gate] = {**fit.to_dict(), "seconds": time.perf_counter() - t0}
        gate_png = figures / "reproduce_gate_fits.png"
        _plot_gate_fits(fits, gate_png)
        return {"study_seconds": seconds, "study_rows": len(rows), "fits": fits,
                "files": [str(study_json), str(study_png), str(gate_png)]}

    return run


def _plot_gate_fits(fits: dict[str, dict[str, Any]], path: Path) -> None:
    """Each gate (black) and its safe-Padé fit (red) on the design interval, the gap around a jump shaded; below,
    the error r(t) − g(t) on the design set (log scale), so that a sup error of 1e-4 is visible at all."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rational_approx.representation.safepade import SafePade

    t = np.linspace(-1, 1, 2001)
    fig, axes = plt.subplots(2, len(fits), figsize=(4.0 * len(fits), 5.6), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 2]})
    titles = {"relu": "ReLU: max(t, 0)", "jumprelu": "JumpReLU: t·H(t − θ)", "topk": "TopK gate: t·H(t − τ)"}
    for col, (gate, fit) in enumerate(fits.items()):
        top, bottom = axes[0][col], axes[1][col]
        g = _gate_function(gate, fit["params"])(t)
        r = SafePade(np.array(fit["a"]), np.array(fit["b"]), b0=float(fit.get("b0", 0.0)))(t)
        inside = np.zeros_like(t, dtype=bool)
        for lo, hi in fit["domain"]:
            inside |= (t >= lo) & (t <= hi)
        for (_, hi), (lo, _) in zip(fit["domain"][:-1], fit["domain"][1:]):
            for ax in (top, bottom):
                ax.axvspan(hi, lo, color="0.85", lw=0, label="gap (excluded)" if ax is top else None)
        top.plot(t, g, "k-", lw=1.2, label="gate g(t)")
        top.plot(t, r, "C3--", lw=1.2, label=f"safe-Padé r(t), type {tuple(fit['type'])}")
        params = ", ".join(f"{k} = {v:g}" for k, v in fit["params"].items())
        top.set_title(f"{titles.get(gate, gate)}{' (' + params + ')' if params else ''}", fontsize=10)
        top.set_ylabel("output (design units)")
        top.legend(fontsize=8, loc="upper left")
        err = np.where(inside, np.abs(r - g), np.nan)
        bottom.semilogy(t, err, "C3-", lw=0.8)
        bottom.axhline(fit["error"], color="k", lw=0.6, ls=":")
        bottom.set_ylabel("|r(t) − g(t)| on the design set")
        bottom.set_xlabel("t (design units: h / C_in)")
        bottom.set_title(f"sup error {fit['error']:.3g}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class _LM:
    """The language model, loaded on first use only (a fully skipped rerun never loads it)."""

    def __init__(self, device: str, progress: bool) -> None:
        self.device, self.progress, self._lm = device, progress, None

    def get(self) -> Any:
        if self._lm is None:
            from rsae.lm.loading import load_language_model

            self._lm = load_language_model(device=self.device)
        return self._lm


def _contexts(lm: Any, cfg: ReproduceConfig, split: str) -> Any:
    from rsae.lm.corpus import build_contexts, load_documents

    return build_contexts(lm.tokenizer, load_documents(corpus=cfg.corpus), context_length=cfg.context_length,
                          split=split, seed=cfg.seed)


def _stage_harvest(cfg: ReproduceConfig, lm: _LM, progress: bool) -> Callable[[Path], dict[str, Any]]:
    def run(folder: Path) -> dict[str, Any]:
        from rsae.lm.harvest import harvest_splits

        results = harvest_splits(lm.get(), folder, layer=cfg.layer, n_tokens=cfg.train_tokens,
                                 heldout_tokens=cfg.heldout_tokens, context_length=cfg.context_length,
                                 drop_first=cfg.drop_first, corpus=cfg.corpus, seed=cfg.seed, progress=progress)
        x = _read_store(folder / "train")
        scale = math.sqrt(float(x.double().pow(2).sum(-1).mean()) / x.shape[1])
        return {
            "scale": scale,
            "text": corpus_description(None, cfg.corpus),
            "d_in": int(x.shape[1]),
            "splits": {s: {"n_tokens": r.n_tokens, "seconds": r.seconds, "tokens_per_second": r.tokens_per_second,
                           "n_outliers": r.n_outliers} for s, r in results.items()},
            "files": [str(folder / "train" / "meta.json"), str(folder / "heldout" / "meta.json")],
        }

    return run


def _read_store(path: Path) -> Tensor:
    store = ActivationStore.open(path)
    return torch.cat(list(store.iter_batches(65536, shuffle=False)))


def _train_config(cfg: ReproduceConfig, steps: int, lr: float, seed: int, decay_fraction: float = 0.2) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=cfg.batch_size, lr=lr, warmup_steps=max(1, steps // 10),
                       decay_fraction=decay_fraction, seed=seed, init_sample_tokens=min(4096, cfg.train_tokens))


def train_until_converged(sae: SAE, cfg: TrainConfig, train: Any, heldout: Any, *, eval_every: int,
                          tol: float = 0.01, progress: bool = False, label: str = "teacher") -> dict[str, Any]:
    r"""Train ``sae`` until held-out MSE improves by less than ``tol`` over the last quarter of training.

    Held-out MSE m(T) is measured every ``eval_every`` steps; at every T = 4j·``eval_every`` the relative
    improvement over the last quarter, (m(3T/4) − m(T)) / m(3T/4), is checked, and training stops at the first
    T where it is below ``tol`` (or at ``cfg.steps``, unconverged). Use a schedule without decay
    (``decay_fraction = 0``) so that stopping early is not stopping mid-decay. The check and its numbers are
    printed on stderr and returned: ``converged``, ``steps``, ``step_three_quarters``, ``mse_three_quarters``,
    ``mse_end``, ``improvement``, ``tol`` and the whole ``curve`` [[step, mse], ...].
    """
    from rsae.core.trainer import Trainer

    trainer = Trainer(sae, cfg, train, progress=progress)
    curve: list[list[float]] = []
    check: dict[str, Any] = {}
    while trainer.step < cfg.steps:
        trainer.train(until=trainer.step + eval_every)
        sae.eval()
        curve.append([trainer.step, float(evaluate_sae(sae, heldout)["mse"])])
        sae.train()
        n = len(curve)
        if n % 4 == 0:
            (t3, m3), (t, m) = curve[3 * n // 4 - 1], curve[-1]
            improvement = (m3 - m) / m3 if m3 > 0 else 0.0
            check = {"converged": improvement < tol, "steps": int(t), "step_three_quarters": int(t3),
                     "mse_three_quarters": m3, "mse_end": m, "improvement": improvement, "tol": tol}
            if check["converged"]:
                break
    sae.eval()
    if not check:
        raise ConfigError("no convergence check ran: steps must be at least 4 × eval_every")
    sys.stderr.write(f"{label}: held-out MSE {check['mse_three_quarters']:.4g} at step {check['step_three_quarters']}"
                     f" -> {check['mse_end']:.4g} at step {check['steps']}: {100 * check['improvement']:+.2f} % over "
                     f"the last quarter; converged (< {100 * tol:g} %): {check['converged']}\n")
    return {**check, "curve": curve}


def _stage_teacher(cfg: ReproduceConfig, setting: TeacherSetting, dead: bool, data: Callable[[], dict[str, Tensor]],
                   device: str, progress: bool) -> Callable[[Path], dict[str, Any]]:
    def run(folder: Path) -> dict[str, Any]:
        tensors = data()
        x, held = tensors["train"].to(device), tensors["heldout"].to(device)
        sae_cfg = dataclasses.replace(setting.sae_config(x.shape[1], cfg.d_sae), device=device)
        sae = SAE.from_config(sae_cfg, seed=cfg.seed).to(device)
        killed: list[int] = []
        if dead:
            rng = np.random.default_rng(cfg.seed)
            killed = sorted(rng.choice(cfg.d_sae, round(cfg.dead_fraction * cfg.d_sae), replace=False).tolist())
            with torch.no_grad():
                sae.b_enc[killed] = -cfg.dead_shift
        t0 = time.perf_counter()
        tcfg = _train_config(cfg, cfg.teacher_max_steps, cfg.lr, cfg.seed, decay_fraction=0.0)
        label = f"teacher {setting.name}{'-dead' if dead else ''}"
        convergence = train_until_converged(sae, tcfg, x, held, eval_every=cfg.teacher_eval_every,
                                            tol=cfg.convergence_tol, progress=progress, label=label)
        seconds = time.perf_counter() - t0
        metrics = evaluate_sae(sae, held)
        save_sae(sae, folder / "sae")
        return {"train_seconds": seconds, "convergence": convergence, "killed_latents": len(killed),
                "dead_fraction": 1.0 - metrics["alive_fraction"], "files": [str(folder / "sae" / "cfg.json")]}

    return run


def _upgrade_options(variant: str, seed: int) -> dict[str, Any]:
    """Keyword arguments of :func:`rsae.experiments.upgrade.upgrade` for ``variant`` and ``seed``."""
    if variant not in VARIANTS:
        raise ConfigError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    return {"variant": variant, "seed": seed}


def _stage_upgrade(cfg: ReproduceConfig, family: str, variant: str, seed: int, teacher_dir: Path,
                   coefficients: Any, data: Callable[[], dict[str, Tensor]], device: str,
                   progress: bool) -> Callable[[Path], dict[str, Any]]:
    def run(folder: Path) -> dict[str, Any]:
        from rsae.experiments.upgrade import copy_sae, upgrade

        tensors = data()
        train, held = tensors["train"].to(device), tensors["heldout"].to(device)
        teacher = load_sae(teacher_dir, device=device)
        frozen = family == "relu" and variant == "magnitude"
        budget = cfg.l0_budget if family == "jumprelu" else None
        finetune = _train_config(cfg, cfg.finetune_steps, cfg.finetune_lr, seed)
        t0 = time.perf_counter()
        result = upgrade(teacher, train, held, finetune, coefficients=coefficients, train_encoder=not frozen,
                         calibration_tokens=cfg.calibration_tokens, l0_budget=budget, control=True,
                         progress=progress, **_upgrade_options(variant, seed))
        seconds = time.perf_counter() - t0
        # The control is the teacher fine-tuned by upgrade() itself with the very settings of the student's
        # fine-tune (same steps, optimiser, schedule, seed, data order, L0 target, frozen parameters and final
        # threshold projection). The paper variant's smooth codes are almost never exactly 0: its row reports the
        # model with the inference floor τ chosen for the L0 budget, and the unfloored model beside it.
        rsae_model, rsae_metrics = result.student, result.student_metrics
        over = bool(result.budget["over_budget"])
        if variant == "paper":
            save_sae(result.student, folder / "rsae_unfloored")
            rsae_model = copy_sae(result.student, rational_floor=result.floor)
            rsae_metrics, over = result.floor_metrics, bool(result.budget["floor_over_budget"])
        save_sae(result.student_init, folder / "init")
        save_sae(rsae_model, folder / "rsae")
        save_sae(result.control, folder / "control")
        return {
            "seconds": seconds,
            "encoder_frozen": frozen,
            "over_budget_reported": over,
            "floor": result.floor,
            "calibration": result.calibration._asdict(),
            "report": result.to_dict(),
            "metrics": {"teacher": result.teacher_metrics, "init": result.init_metrics,
                        "rsae": rsae_metrics, "control": result.control_metrics},
            "files": [str(folder / m / "cfg.json") for m in ("init", "rsae", "control")],
        }

    return run


class _Scaled:
    """An SAE trained on x/s seen from the LM's units: encode(x) = sae.encode(x/s), decode(z) = s·sae.decode(z)."""

    def __init__(self, sae: SAE, scale: float) -> None:
        self.sae, self.scale = sae, scale

    def encode(self, x: Tensor) -> Tensor:
        return self.sae.encode(x / self.scale)

    def decode(self, z: Tensor) -> Tensor:
        return self.sae.decode(z) * self.scale


_DOWNSTREAM_KEYS = ("delta_ce", "loss_recovered", "probe_accuracy")


def _stage_downstream(cfg: ReproduceConfig, models: dict[str, tuple[Path, str]], scale: float, lm: _LM, device: str,
                      progress: bool) -> Callable[[Path], dict[str, Any]]:
    def run(folder: Path) -> dict[str, Any]:
        from rsae.lm.downstream import next_token_losses, probe_dataset, reconstruct, sparse_probe

        model = lm.get()
        heldout = _contexts(model, cfg, "heldout")
        ids = heldout.input_ids[: cfg.ce_contexts]
        batches = [ids[s : s + 8] for s in range(0, len(ids), 8)]

        def mean_ce(edit: Any) -> float:
            losses = [next_token_losses(model, b, drop_first=cfg.drop_first, layer=None if edit is None else cfg.layer,
                                        edit=edit) for b in batches]
            return float(torch.cat([loss.reshape(-1) for loss in losses]).double().mean())

        with torch.no_grad():
            ce_clean, ce_zero = mean_ce(None), mean_ce(torch.zeros_like)
        probe_train = probe_dataset(model, _contexts(model, cfg, "train"), cfg.layer, cfg.probe_task,
                                    drop_first=cfg.drop_first, max_contexts=cfg.probe_train_contexts)
        probe_test = probe_dataset(model, heldout, cfg.layer, cfg.probe_task, drop_first=cfg.drop_first,
                                   max_contexts=cfg.probe_heldout_contexts)
        cache = folder / "models"
        cache.mkdir(exist_ok=True)
        rows: dict[str, Any] = {}
        raw = None
        for name, (path, digest) in tqdm(models.items(), desc="downstream", disable=not progress, file=sys.stderr):
            cached = cache / f"{_hash(name)}.json"
            if cached.is_file():
                saved = json.loads(cached.read_text())
                if saved.get("digest") == digest and saved.get("ce_clean") == ce_clean:
                    rows[name] = saved["row"]
                    continue
            sae = _Scaled(load_sae(path, device=device), scale)
            with torch.no_grad():
                ce = mean_ce(lambda h, sae=sae: reconstruct(sae, h))
            probe = sparse_probe(sae, probe_train, probe_test, ks=(cfg.probe_k,), seed=cfg.seed)
            raw = probe
            denominator = ce_zero - ce_clean
            rows[name] = {
                "ce_spliced": ce,
                "delta_ce": ce - ce_clean,
                "loss_recovered": (ce_zero - ce) / denominator if denominator else None,
                "probe_accuracy": probe.sae_accuracy[cfg.probe_k],
                "probe_raw_accuracy": probe.raw_accuracy[cfg.probe_k],
                "probe_raw_all_accuracy": probe.raw_all_accuracy,
                "probe_n": [probe.n_train, probe.n_test],
            }
            _write_json(cached, {"name": name, "digest": digest, "ce_clean": ce_clean, "row": rows[name]})
        first = next(iter(rows.values()))
        return {
            "ce_clean": ce_clean,
            "ce_zero": ce_zero,
            "n_predictions": int(len(ids) * (cfg.context_length - cfg.drop_first - 1)),
            "probe": {"task": cfg.probe_task, "k": cfg.probe_k, "n_train": first["probe_n"][0],
                      "n_test": first["probe_n"][1], "raw_accuracy": first["probe_raw_accuracy"],
                      "raw_all_accuracy": first["probe_raw_all_accuracy"]},
            "models": rows,
            "files": [],
            "recomputed": raw is not None,
        }

    return run


# ---------------------------------------------------------------------------------------------- report


def results_markdown(results: dict[str, Any]) -> str:
    """The markdown of a results dict (as written to ``results.json``): the scoreboard and the CE / probe facts."""
    lines = [scoreboard_markdown(results)]
    d = results["downstream"]
    if d.get("skipped"):
        lines.append(f"Downstream metrics not measured: {d['skipped']}.\n")
    else:
        p = d["probe"]
        lines.append(f"CE clean {d['ce_clean']:.4f}, zero-ablated {d['ce_zero']:.4f} nats ({d['n_predictions']} "
                     f"predictions); probe task `{p['task']}`: raw top-{p['k']} dims {p['raw_accuracy']:.3f}, all raw "
                     f"dims {p['raw_all_accuracy']:.3f} ({p['n_train']} / {p['n_test']} balanced train / test "
                     "tokens).\n")
    return "\n".join(lines)


def _plot_shapes(shapes: list[tuple[str, str, Path]], path: Path) -> None:
    """One panel per fine-tuned RSAE (rows: variants, columns: families): its φ on latent 0 against the teacher's
    map, in the SAE's pre-activation units. The magnitude variant keeps the teacher's hard gate (φ dotted where the
    gate closes); the paper variant's φ is the whole map, jumping at C_in·θ_design for JumpReLU and TopK."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rsae.experiments.upgrade import DESIGN_THRESHOLD

    variants = list(dict.fromkeys(name.rsplit("(", 1)[-1].rstrip(")") for name, _, _ in shapes)) or ["-"]
    families = list(dict.fromkeys(family for _, family, _ in shapes)) or ["-"]
    fig, axes = plt.subplots(len(variants), len(families), figsize=(4.2 * len(families), 3.4 * len(variants)),
                             squeeze=False)
    for name, family, sae_path in shapes:
        ax = axes[variants.index(name.rsplit("(", 1)[-1].rstrip(")"))][families.index(family)]
        act = load_sae(sae_path).activation
        if not hasattr(act, "magnitude"):
            continue
        with torch.no_grad():
            c_in = float(act.phi.log_c_in.detach().reshape(-1)[0].exp())
            h = torch.linspace(-c_in, c_in, 801, dtype=torch.float32)
            y = act.magnitude(h, torch.zeros(h.shape, dtype=torch.long)).numpy()
            smooth = act.gate == "none"
            if smooth:
                cut = 0.0 if family == "relu" else DESIGN_THRESHOLD * c_in
            else:
                cut = float(act.log_threshold.detach().reshape(-1)[0].exp()) if family == "jumprelu" else 0.0
        hn = h.numpy()
        ax.plot(hn, np.where(hn > cut, hn, 0), "k-", lw=1.2, label="teacher's map h·H(h − θ)")
        open_ = hn > cut if not smooth else np.ones_like(hn, dtype=bool)
        ax.plot(hn[open_], y[open_], "C3--", lw=1.4, label="RSAE φ(h)" + ("" if smooth else ", gate open"))
        if not smooth:
            ax.plot(hn[~open_], y[~open_], "C3:", lw=1, label="φ(h) where the gate gives 0")
        target = np.where(hn > cut, hn, 0)
        deviation = float(np.max(np.abs(y[open_] - target[open_]))) if open_.any() else 0.0
        ax.set_title(f"{name}: max |φ(h) − map| = {deviation:.2f}", fontsize=9)
        ax.set_xlabel("pre-activation h of latent 0 (store units)")
        ax.set_ylabel("code z")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _sparsity_label(family: str, sparsity: float) -> str:
    symbol = {"relu": "λ₁", "jumprelu": "λ₀", "topk": "k", "batchtopk": "k"}.get(family, "s")
    return f"{symbol}={sparsity:g}"


def _teacher_sparsity(cfg: SAEConfig) -> float:
    return {"relu": cfg.l1_coefficient, "jumprelu": cfg.l0_coefficient}.get(cfg.family, cfg.k or 0)


# ------------------------------------------------------------------------------------------------ driver


def reproduce(
    cfg: ReproduceConfig,
    out: str | os.PathLike[str] = "runs/reproduce",
    figures: str | os.PathLike[str] = "figures",
    *,
    device: str = "cpu",
    progress: bool = True,
    data: str | os.PathLike[str] | None = None,
    teachers: Sequence[str | os.PathLike[str]] = (),
) -> dict[str, Any]:
    """Run (or resume) every stage; returns the results dict also written to ``<figures>/results.json``.

    Parameters
    ----------
    cfg : ReproduceConfig
        Sizes (:data:`PRESETS`).
    out : path
        Folder of the stage outputs (activation stores, SAEs, markers) and ``results.md``.
    figures : path
        Folder of the figures and ``results.json``.
    device : str
        torch device of the LM and the SAEs.
    progress : bool
        tqdm progress bars on stderr.
    data : path, optional
        A folder with ``train/`` and ``heldout/`` activation stores used instead of the harvest (their own
        units, s = 1; no language model, so no downstream metrics).
    teachers : paths
        SAELens-format SAE folders to upgrade instead of training the preset's teachers (needs ``data``).
    """
    out, figures = Path(out), Path(figures)
    if teachers and data is None:
        raise ConfigError("teachers from disk need --data: the activation store they read (train/ and heldout/)")
    figures.mkdir(parents=True, exist_ok=True)
    stages = _Stages(out)
    lm = _LM(device, progress)
    t_start = time.perf_counter()

    approx: dict[str, Any] = {}
    if cfg.study_n_max:
        approx = stages.run("approx", {"n_max": cfg.study_n_max, "gates": cfg.gate_types, "figures": str(figures)},
                            _stage_approx(cfg, figures, progress))
    if data is None:
        harvest_key = {k: getattr(cfg, k) for k in ("train_tokens", "heldout_tokens", "context_length", "layer",
                                                    "drop_first", "seed", "corpus")}
        if cfg.corpus == "pydoc":  # markers written before the corpus option keep matching
            harvest_key.pop("corpus")
        harvested = stages.run("harvest", harvest_key, _stage_harvest(cfg, lm, progress))
        data_root, data_hash = out / "harvest", stages.log["harvest"]["config_hash"]
    else:
        data_root = Path(data)
        for split in ("train", "heldout"):
            if not (data_root / split / "meta.json").is_file():
                raise DataError(f"--data {data_root} must hold train/ and heldout/ activation stores")
        meta = json.loads((data_root / "train" / "meta.json").read_text())
        harvested = {"scale": 1.0, "text": f"activation store {data_root} ({meta.get('text', 'text unknown')})",
                     "d_in": int(meta["d_in"]), "splits": {}}
        data_hash = _hash([str(data_root.resolve()), meta])
    cache: dict[str, Tensor] = {}

    def tensors() -> dict[str, Tensor]:
        if not cache:
            for split in ("train", "heldout"):
                cache[split] = _read_store(data_root / split) / harvested["scale"]
        return cache

    # Every student starts from its teacher gate's own minimax fit (ReLU (3, 2); JumpReLU and the top-k gates
    # (9, 8) on the gapped design set), which upgrade() takes from rational_approx when no coefficients are given.
    coefficients = None
    train_key = {k: getattr(cfg, k) for k in ("d_sae", "teacher_max_steps", "teacher_eval_every", "batch_size", "lr",
                                              "convergence_tol", "seed")}
    upgrade_key = {k: getattr(cfg, k) for k in ("finetune_steps", "finetune_lr", "calibration_tokens", "l0_budget",
                                                "batch_size")}
    upgrade_key["format"] = 2  # gate-own inits, the control from upgrade(), the paper variant's floored row

    # teachers: (label, family, sparsity, kind, folder, stage result, stage hash)
    teacher_list: list[dict[str, Any]] = []
    for path in teachers:
        path = Path(path)
        tcfg = load_sae(path).cfg
        label = f"saelens-{path.name}"

        def from_disk(folder: Path, path: Path = path) -> dict[str, Any]:
            metrics = evaluate_sae(load_sae(path, device=device), tensors()["heldout"].to(device))
            return {"convergence": {"converged": None, "reason": "supplied teacher: its training is unknown"},
                    "dead_fraction": 1.0 - metrics["alive_fraction"], "killed_latents": 0, "train_seconds": 0.0,
                    "files": [str(path / "cfg.json")]}

        t_key = {"data": data_hash, "path": str(path.resolve()), "cfg": tcfg.to_dict() if hasattr(tcfg, "to_dict")
                 else str(tcfg)}
        result = stages.run(f"teacher-{label}", t_key, from_disk)
        teacher_list.append({"label": label, "family": tcfg.family, "sparsity": float(_teacher_sparsity(tcfg)),
                             "kind": "saelens", "folder": path, "result": result,
                             "hash": stages.log[f"teacher-{label}"]["config_hash"]})
    if not teachers:
        for setting in cfg.teachers:
            for dead in (False, True) if setting.dead else (False,):
                label = setting.name + ("-dead" if dead else "")
                t_key = {"harvest": data_hash, "setting": dataclasses.asdict(setting), "dead": dead, **train_key}
                if dead:
                    t_key.update(dead_fraction=cfg.dead_fraction, dead_shift=cfg.dead_shift)
                result = stages.run(f"teacher-{label}", t_key,
                                    _stage_teacher(cfg, setting, dead, tensors, device, progress))
                teacher_list.append({"label": label, "family": setting.family, "sparsity": float(setting.sparsity),
                                     "kind": "dead" if dead else "trained", "folder": out / f"teacher-{label}" / "sae",
                                     "result": result, "hash": stages.log[f"teacher-{label}"]["config_hash"]})

    rows: list[dict[str, Any]] = []
    sae_paths: dict[str, tuple[Path, str]] = {}
    shapes: list[tuple[str, str, Path]] = []
    for t in teacher_list:
        sae_paths[f"{t['label']}/teacher"] = (t["folder"], t["hash"])
        for variant in cfg.variants:
            key = f"{t['family']}/{_sparsity_label(t['family'], t['sparsity'])}/{t['kind']}/{variant}"
            row: dict[str, Any] = {
                "key": key, "family": t["family"], "sparsity": t["sparsity"],
                "sparsity_label": _sparsity_label(t["family"], t["sparsity"]), "teacher_kind": t["kind"],
                "teacher_name": t["label"], "variant": variant, "text": harvested["text"].split(":")[0],
                "convergence": {k: v for k, v in t["result"]["convergence"].items() if k != "curve"},
                "teacher_dead_fraction": t["result"]["dead_fraction"],
                "teacher_killed_latents": t["result"]["killed_latents"],
                "teacher_train_seconds": t["result"]["train_seconds"], "seeds": list(cfg.seeds),
                "rsae": [], "control": [], "calibration": [], "upgrade_seconds": [],
            }
            for seed in cfg.seeds:
                name = f"upgrade-{t['label']}-{variant}-s{seed}"
                u_key = {"teacher": t["hash"], "coefficients": coefficients, "variant": variant, "seed": seed,
                         **upgrade_key}
                up = stages.run(name, u_key, _stage_upgrade(cfg, t["family"], variant, seed, t["folder"],
                                                            coefficients, tensors, device, progress))
                digest = stages.log[name]["config_hash"]
                if seed == cfg.seeds[0]:
                    row["teacher"] = dict(up["metrics"]["teacher"])
                    row["init"] = dict(up["metrics"]["init"])
                    row["encoder_frozen"] = up["encoder_frozen"]
                    sae_paths[f"{key}/init"] = (out / name / "init", digest)
                    if t["kind"] == "trained":
                        shapes.append((f"{t['label']} ({variant})", t["family"], out / name / "rsae"))
                row["rsae"].append(dict(up["metrics"]["rsae"]))
                row["control"].append(dict(up["metrics"]["control"]))
                row["calibration"].append(up["calibration"])
                row["upgrade_seconds"].append(up["seconds"])
                row["over_budget_reported"] = row.get("over_budget_reported", False) or up["over_budget_reported"]
                sae_paths[f"{key}/rsae-s{seed}"] = (out / name / "rsae", digest)
                sae_paths[f"{key}/control-s{seed}"] = (out / name / "control", digest)
            row["control_present"] = len(row["control"]) == len(cfg.seeds)
            rows.append(row)

    if data is None:
        d_key = {"models": {n: h for n, (_p, h) in sae_paths.items()}, "ce_contexts": cfg.ce_contexts,
                 "probe": [cfg.probe_task, cfg.probe_k, cfg.probe_train_contexts, cfg.probe_heldout_contexts]}
        downstream = stages.run("downstream", d_key,
                                _stage_downstream(cfg, sae_paths, harvested["scale"], lm, device, progress))
        measured = downstream["models"]
    else:
        downstream = {"skipped": "no language model: the activations come from --data", "models": {}}
        measured = {}
    blank = dict.fromkeys(_DOWNSTREAM_KEYS)
    for row in rows:
        teacher_label, key = row["teacher_name"], row["key"]
        row["teacher"].update({k: measured.get(f"{teacher_label}/teacher", blank)[k] for k in _DOWNSTREAM_KEYS})
        row["init"].update({k: measured.get(f"{key}/init", blank)[k] for k in _DOWNSTREAM_KEYS})
        for seed, m in zip(cfg.seeds, row["rsae"]):
            m.update({k: measured.get(f"{key}/rsae-s{seed}", blank)[k] for k in _DOWNSTREAM_KEYS})
        for seed, m in zip(cfg.seeds, row["control"]):
            m.update({k: measured.get(f"{key}/control-s{seed}", blank)[k] for k in _DOWNSTREAM_KEYS})
        score_row(row, cfg.l0_budget)

    board = {"seeds": list(cfg.seeds), "sigmas": SIGMAS, "l0_budget": cfg.l0_budget, "rows": rows,
             "totals": totals(rows),
             "totals_by_variant": {v: totals([r for r in rows if r["variant"] == v]) for v in cfg.variants}}
    results = {
        "config": cfg.to_dict(),
        "device": device,
        "text": harvested["text"],
        "approx": {k: v for k, v in approx.items() if k != "files"},
        "harvest": {k: v for k, v in harvested.items() if k != "files"},
        "downstream": {k: v for k, v in downstream.items() if k not in ("models", "files")},
        "teachers": {t["label"]: {"family": t["family"], "kind": t["kind"],
                                  **{k: v for k, v in t["result"].items() if k != "files"}} for t in teacher_list},
        "scoreboard": board,
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__},
    }
    report_files = [figures / "results.json", out / "results.md", figures / "reproduce_tradeoff.png",
                    figures / "reproduce_shapes.png"]

    def report(folder: Path) -> dict[str, Any]:
        plot_tradeoff(finite(results), report_files[2])
        _plot_shapes(shapes, report_files[3])
        (out / "results.md").write_text(results_markdown(finite(results)))
        return {"files": [str(f) for f in report_files]}

    r_key = {"downstream": stages.log.get("downstream", {}).get("config_hash"),
             "upgrades": sorted(v["config_hash"] for k, v in stages.log.items() if k.startswith("upgrade-")),
             "figures": str(figures), "format": 3}
    results["stages"] = stages.log
    _write_json(report_files[0], results)
    stages.run("report", r_key, report)
    results["stages"] = stages.log
    results["seconds"] = time.perf_counter() - t_start
    if not stages.log["report"]["skipped"]:
        _write_json(report_files[0], results)
    return finite(results)
