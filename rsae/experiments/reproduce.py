"""``rsae reproduce``: the whole chain of the paper on the embedded defaults, resumable stage by stage.

Stages (each writes ``<out>/<stage>/stage.json`` with a hash of its configuration and of the stages it reads;
a rerun skips every stage whose marker matches and whose files still exist, so an interrupted run resumes):

1. ``approx``: the error-vs-degree study of :mod:`rational_approx.verification.study` (reduced ``n_max``) and the
safe-Padé
   initial coefficients of the ReLU, JumpReLU and TopK gates (:func:`rational_approx.activation_coefficients`),
   with a figure of each gate against its rational on [−1, 1].
2. ``harvest``: residual-stream activations after block L of the default LM on the default text
   (:func:`rsae.lm.harvest.harvest_splits`; train and held-out documents), and the scale s with
   E‖x/s‖² = d_in on the train split (SAELens' "expected average norm" normalisation; every SAE sees x/s).
3. ``teacher-<name>``: ReLU, JumpReLU and TopK teachers, two sparsity levels each.
4. ``upgrade-<name>``: the two-stage upgrade (:func:`rsae.experiments.upgrade.upgrade`) of each teacher: RSAE-init
   (calibrated on the teacher's support) and the fine-tuned RSAE. ReLU teachers are upgraded with the encoder
   frozen, which keeps the teacher's support and L0 (docs/rsae.md §7: with a ReLU gate the L1 penalty on
   φ(h) does not control L0); JumpReLU and TopK teachers fine-tune everything, JumpReLU under the L0 budget
   1.05 × the teacher's.
5. ``downstream``: on held-out contexts, CE clean / spliced / zero-ablated (ΔCE, loss recovered) and a
   k-sparse probe for every teacher, RSAE-init and RSAE.
6. ``report``: ``<figures>/results.json``, ``<out>/results.md`` (the tables) and the figures
   ``reproduce_tradeoff.png`` (L0–MSE, teacher vs RSAE) and ``reproduce_shapes.png`` (learned φ vs the
   teacher's gate), next to ``reproduce_gate_fits.png`` and ``reproduce_error_vs_degree.png`` of stage 1.

Metrics are those of :func:`rsae.core.metrics.evaluate_sae` on the held-out store, in the normalised units x/s
(MSE = mean over tokens of ‖x/s − x̂/s‖²; L0 = exact non-zeros per token) and :mod:`rsae.lm.downstream`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
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
from rsae.core.sae import SAE
from rsae.core.strict_json import finite, write_json
from rsae.errors import ConfigError
from rsae.lm.model import DEFAULT_DROP_FIRST, DEFAULT_LAYER

__all__ = ["PRESETS", "ReproduceConfig", "TeacherSetting", "reproduce", "results_markdown", "register_reproduce"]

MARKER = "stage.json"
"""Name of the per-stage marker file."""


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
    """Initial JumpReLU threshold θ₀ (x/s units; with few steps it sets much of the final L0)."""

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
    """Sizes of one reproduction run (see :data:`PRESETS`)."""

    study_n_max: int
    """Largest degree of the approximation study."""
    gate_types: tuple[tuple[str, tuple[int, int]], ...]
    """(gate, rational type) of the initial-coefficient fits."""
    train_tokens: int
    """Harvested training tokens."""
    heldout_tokens: int
    """Harvested held-out tokens (SAE metrics)."""
    context_length: int
    """Tokens per context."""
    d_sae: int
    """Latents of every SAE."""
    teacher_steps: int
    """Training steps of each teacher."""
    finetune_steps: int
    """Fine-tuning steps of each upgrade."""
    ce_contexts: int
    """Held-out contexts of the CE splicing."""
    probe_train_contexts: int
    """Training contexts of the sparse probe."""
    probe_heldout_contexts: int
    """Held-out contexts of the sparse probe."""
    teachers: tuple[TeacherSetting, ...]
    """The teachers."""
    batch_size: int = 1024
    """Tokens per step."""
    lr: float = 3e-3
    """Peak learning rate of the teachers."""
    finetune_lr: float = 1e-3
    """Peak learning rate of the fine-tuning."""
    calibration_tokens: int = 8192
    """Tokens of the calibration fit."""
    jumprelu_l0_budget: float = 1.05
    """Fine-tune JumpReLU students under L0 ≤ budget × the teacher's L0."""
    control: bool = True
    """Also fine-tune each teacher with the upgrade's settings: the control that tells whether a gain comes
    from the rational or merely from the extra steps (the default teachers are short runs)."""
    layer: int = DEFAULT_LAYER
    """Block whose output is harvested."""
    drop_first: int = DEFAULT_DROP_FIRST
    """Leading positions of each context skipped (attention sinks)."""
    probe_task: str = "in_parentheses"
    """Probing task of :data:`rsae.lm.downstream.PROBE_TASKS`."""
    probe_k: int = 5
    """Latents of the sparse probe."""
    seed: int = 0
    """Seed of the context order, initialisations and data order."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes recorded in the results."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dictionary."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


# Sparsity settings (x/s units) chosen by 100-step pilots on the default harvest: λ₁ = 5 left 78 % of the
# ReLU latents dead, and JumpReLU with θ₀ = 0.1 stayed at L0 ≈ 480 whatever λ₀.
_TEACHERS = (
    TeacherSetting("relu-l1=1", "relu", 1.0),
    TeacherSetting("relu-l1=2", "relu", 2.0),
    TeacherSetting("jumprelu-l0=0.1", "jumprelu", 0.1, threshold_init=1.0),
    TeacherSetting("jumprelu-l0=1", "jumprelu", 1.0, threshold_init=1.5),
    TeacherSetting("topk-k=16", "topk", 16),
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
        teacher_steps=6,
        finetune_steps=4,
        ce_contexts=2,
        probe_train_contexts=8,
        probe_heldout_contexts=4,
        teachers=(
            TeacherSetting("relu-l1=2", "relu", 2.0),
            TeacherSetting("jumprelu-l0=0.5", "jumprelu", 0.5),
            TeacherSetting("topk-k=4", "topk", 4),
        ),
        batch_size=128,
        calibration_tokens=512,
    ),
    "default": ReproduceConfig(
        study_n_max=40,
        gate_types=(("relu", (3, 2)), ("jumprelu", (9, 8)), ("topk", (9, 8))),
        train_tokens=60_000,
        heldout_tokens=4_000,
        context_length=128,
        d_sae=1152,
        teacher_steps=300,
        finetune_steps=150,
        ce_contexts=16,
        probe_train_contexts=64,
        probe_heldout_contexts=32,
        teachers=_TEACHERS,
    ),
    "full": ReproduceConfig(
        study_n_max=80,
        gate_types=(("relu", (3, 2)), ("jumprelu", (9, 8)), ("topk", (9, 8))),
        train_tokens=100_000,
        heldout_tokens=5_875,
        context_length=128,
        d_sae=4608,
        teacher_steps=2000,
        finetune_steps=1000,
        ce_contexts=47,
        probe_train_contexts=256,
        probe_heldout_contexts=47,
        teachers=_TEACHERS,
    ),
}
"""``tiny`` (the test: a few hundred tokens, tiny SAEs, a handful of steps), ``default`` (≈ 15 min on a
quiet 2-core CPU) and ``full``."""


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rational_approx.representation.safepade import SafePade

    t = np.linspace(-1, 1, 801)
    fig, axes = plt.subplots(1, len(fits), figsize=(3.2 * len(fits), 2.8), squeeze=False)
    for ax, (gate, fit) in zip(axes[0], fits.items()):
        ax.plot(t, _gate_function(gate, fit["params"])(t), "k-", lw=1, label=gate)
        ax.plot(t, SafePade(np.array(fit["a"]), np.array(fit["b"]))(t), "C3-", lw=1.2,
                label=f"safe-Padé {tuple(fit['type'])}")
        ax.set_title(f"{gate}: sup err {fit['error']:.3g}", fontsize=9)
        ax.set_xlabel("t")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


class _LM:
    """The language model, loaded on first use only (a fully skipped rerun never loads it)."""

    def __init__(self, device: str, progress: bool) -> None:
        self.device, self.progress, self._lm = device, progress, None

    def get(self) -> Any:
        if self._lm is None:
            from rsae.lm.model import load_language_model

            self._lm = load_language_model(device=self.device)
        return self._lm


def _contexts(lm: Any, cfg: ReproduceConfig, split: str) -> Any:
    from rsae.lm.model import build_contexts, load_documents

    return build_contexts(lm.tokenizer, load_documents(), context_length=cfg.context_length, split=split,
                          seed=cfg.seed)


def _stage_harvest(cfg: ReproduceConfig, lm: _LM, progress: bool) -> Callable[[Path], dict[str, Any]]:
    def run(folder: Path) -> dict[str, Any]:
        from rsae.lm.harvest import harvest_splits

        results = harvest_splits(lm.get(), folder, layer=cfg.layer, n_tokens=cfg.train_tokens,
                                 heldout_tokens=cfg.heldout_tokens, context_length=cfg.context_length,
                                 drop_first=cfg.drop_first, seed=cfg.seed, progress=progress)
        x = _read_store(folder / "train")
        scale = math.sqrt(float(x.double().pow(2).sum(-1).mean()) / x.shape[1])
        return {
            "scale": scale,
            "d_in": int(x.shape[1]),
            "splits": {s: {"n_tokens": r.n_tokens, "seconds": r.seconds, "tokens_per_second": r.tokens_per_second,
                           "n_outliers": r.n_outliers} for s, r in results.items()},
            "files": [str(folder / "train" / "meta.json"), str(folder / "heldout" / "meta.json")],
        }

    return run


def _read_store(path: Path) -> Tensor:
    store = ActivationStore.open(path)
    return torch.cat(list(store.iter_batches(65536, shuffle=False)))


def _train_config(cfg: ReproduceConfig, steps: int, lr: float) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=cfg.batch_size, lr=lr, warmup_steps=max(1, steps // 10),
                       seed=cfg.seed, init_sample_tokens=min(4096, cfg.train_tokens))


def _stage_teacher(cfg: ReproduceConfig, setting: TeacherSetting, data: Callable[[], dict[str, Tensor]],
                   device: str, progress: bool) -> Callable[[Path], dict[str, Any]]:
    def run(folder: Path) -> dict[str, Any]:
        from rsae.core.trainer import Trainer

        x = data()["train"].to(device)
        sae_cfg = dataclasses.replace(setting.sae_config(x.shape[1], cfg.d_sae), device=device)
        sae = SAE.from_config(sae_cfg, seed=cfg.seed).to(device)
        t0 = time.perf_counter()
        result = Trainer(sae, _train_config(cfg, cfg.teacher_steps, cfg.lr), x, progress=progress).train()
        seconds = time.perf_counter() - t0
        save_sae(result.sae.eval(), folder / "sae")
        return {"train_seconds": seconds, "final": result.final, "files": [str(folder / "sae" / "cfg.json")]}

    return run


def _stage_upgrade(cfg: ReproduceConfig, setting: TeacherSetting, teacher_dir: Path, coefficients: Any,
                   data: Callable[[], dict[str, Tensor]], device: str,
                   progress: bool) -> Callable[[Path], dict[str, Any]]:
    def run(folder: Path) -> dict[str, Any]:
        from rsae.experiments.upgrade import upgrade

        tensors = data()
        teacher = load_sae(teacher_dir, device=device)
        frozen = setting.family == "relu"
        t0 = time.perf_counter()
        result = upgrade(
            teacher, tensors["train"].to(device), tensors["heldout"].to(device),
            _train_config(cfg, cfg.finetune_steps, cfg.finetune_lr),
            coefficients=coefficients, train_encoder=not frozen, calibration_tokens=cfg.calibration_tokens,
            l0_budget=cfg.jumprelu_l0_budget if setting.family == "jumprelu" else None,
            control=cfg.control, progress=progress,
        )
        seconds = time.perf_counter() - t0
        save_sae(result.student_init, folder / "init")
        save_sae(result.student, folder / "rsae")
        return {
            "seconds": seconds,
            "encoder_frozen": frozen,
            "calibration": result.calibration._asdict(),
            "metrics": {"teacher": result.teacher_metrics, "init": result.init_metrics,
                        "rsae": result.student_metrics, "control": result.control_metrics},
            "files": [str(folder / "init" / "cfg.json"), str(folder / "rsae" / "cfg.json")],
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


def _stage_downstream(cfg: ReproduceConfig, models: dict[str, Path], scale: float, lm: _LM, device: str,
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
        rows: dict[str, Any] = {}
        raw = None
        for name, path in tqdm(models.items(), desc="downstream", disable=not progress, file=sys.stderr):
            sae = _Scaled(load_sae(path, device=device), scale)
            with torch.no_grad():
                ce = mean_ce(lambda h, sae=sae: reconstruct(sae, h))
            probe = sparse_probe(sae, probe_train, probe_test, ks=(cfg.probe_k,), seed=cfg.seed)
            raw = probe
            denominator = ce_zero - ce_clean
            rows[name] = {
                "ce_spliced": ce,
                "delta_ce": ce - ce_clean,
                "loss_recovered": (ce_zero - ce) / denominator if denominator else float("nan"),
                "probe_accuracy": probe.sae_accuracy[cfg.probe_k],
            }
        return {
            "ce_clean": ce_clean,
            "ce_zero": ce_zero,
            "n_predictions": int(len(ids) * (cfg.context_length - cfg.drop_first - 1)),
            "probe": {"task": cfg.probe_task, "k": cfg.probe_k, "n_train": raw.n_train, "n_test": raw.n_test,
                      "raw_accuracy": raw.raw_accuracy[cfg.probe_k], "raw_all_accuracy": raw.raw_all_accuracy},
            "models": rows,
            "files": [],
        }

    return run


# ---------------------------------------------------------------------------------------------- report

_METRIC_KEYS = ("mse", "l0", "alive_fraction", "fvu")
_STAGES = ("teacher", "init", "rsae")


def results_markdown(results: dict[str, Any]) -> str:
    """The markdown tables of a results dict (as written to ``results.json``)."""
    lines = [
        "| teacher | model | MSE | L0 | alive | FVU | ΔCE | loss rec. | probe acc (k={k}) |".format(
            k=results["downstream"]["probe"]["k"]),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in results["models"].items():
        for stage in _STAGES:
            m = row[stage]
            lines.append(
                f"| {name} | {stage} | {m['mse']:.4f} | {m['l0']:.2f} | {m['alive_fraction']:.3f} | {m['fvu']:.4f} "
                f"| {m['delta_ce']:.4f} | {m['loss_recovered']:.4f} | {m['probe_accuracy']:.3f} |"
            )
    d = results["downstream"]
    lines += [
        "",
        f"CE clean {d['ce_clean']:.4f}, zero-ablated {d['ce_zero']:.4f} nats ({d['n_predictions']} predictions); "
        f"probe task `{d['probe']['task']}`: raw top-{d['probe']['k']} dims {d['probe']['raw_accuracy']:.3f}, "
        f"all raw dims {d['probe']['raw_all_accuracy']:.3f} ({d['probe']['n_train']} / {d['probe']['n_test']} "
        "balanced train / test tokens).",
        "",
        "| teacher | RSAE vs teacher MSE | L0 teacher → RSAE | control MSE / L0 (RSAE vs control MSE) "
        "| calibration loss before → after |",
        "|---|---|---|---|---|",
    ]
    for name, row in results["models"].items():
        t, r, c, k = row["teacher"], row["rsae"], row["calibration"], row["control"]
        control = "not run" if k is None else (
            f"{k['mse']:.4f} / {k['l0']:.2f} ({100 * (r['mse'] / k['mse'] - 1):+.2f} %)")
        lines.append(f"| {name} | {100 * (r['mse'] / t['mse'] - 1):+.2f} % | {t['l0']:.2f} → {r['l0']:.2f} "
                     f"| {control} | {c['loss_before']:.3g} → {c['loss_after']:.3g} |")
    return "\n".join(lines) + "\n"


def _plot_tradeoff(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.3))
    for i, family in enumerate(("relu", "jumprelu", "topk")):
        rows = [r for r in results["models"].values() if r["family"] == family]
        if not rows:
            continue
        for stage, marker in (("teacher", "o"), ("rsae", "^")):
            ax.plot([r[stage]["l0"] for r in rows], [r[stage]["mse"] for r in rows], marker=marker, ls="-",
                    color=f"C{i}", mfc="none" if stage == "teacher" else f"C{i}", label=f"{family} {stage}")
        controls = [r["control"] for r in rows if r["control"] is not None]
        if controls:
            ax.plot([c["l0"] for c in controls], [c["mse"] for c in controls], marker="x", ls=":", color=f"C{i}",
                    label=f"{family} control")
    ax.set_xlabel("L0 (held-out)")
    ax.set_ylabel("MSE (held-out, x/s units)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _plot_shapes(results: dict[str, Any], rsae_paths: dict[str, Path], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rsae_paths)
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 2.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        student = load_sae(rsae_paths[name])
        phi = student.activation.phi
        with torch.no_grad():
            c_in = float(phi.log_c_in.detach().exp().max())
            h = torch.linspace(-c_in, c_in, 401, dtype=torch.float32)
            y = student.activation.magnitude(h, torch.zeros(h.shape, dtype=torch.long)).numpy()
        hn = h.numpy()
        family = results["models"][name]["family"]
        if family == "jumprelu":
            cut = float(student.activation.log_threshold.detach().exp().median())
            ax.plot(hn, np.where(hn > cut, hn, 0), "k-", lw=1, label=f"teacher (median θ {cut:.2f})")
        else:
            cut = 0.0
            ax.plot(hn, np.maximum(hn, 0), "k-", lw=1, label="teacher (h on its support)")
        open_ = hn > cut
        ax.plot(hn[open_], y[open_], "C3-", lw=1.2, label="RSAE φ(h), gate open")
        ax.plot(hn[~open_], y[~open_], "C3:", lw=1, label="φ(h), gated to 0")
        deviation = float(np.max(np.abs(y[open_] - hn[open_])))
        ax.set_title(f"{name}: max|φ(h) − h| {deviation:.2f}", fontsize=8)
        ax.set_xlabel("h")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ driver


def reproduce(
    cfg: ReproduceConfig,
    out: str | os.PathLike[str] = "runs/reproduce",
    figures: str | os.PathLike[str] = "figures",
    *,
    device: str = "cpu",
    progress: bool = True,
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
    """
    out, figures = Path(out), Path(figures)
    figures.mkdir(parents=True, exist_ok=True)
    stages = _Stages(out)
    lm = _LM(device, progress)
    t_start = time.perf_counter()

    approx = stages.run("approx", {"n_max": cfg.study_n_max, "gates": cfg.gate_types, "figures": str(figures)},
                        _stage_approx(cfg, figures, progress))
    harvest_key = {k: getattr(cfg, k) for k in ("train_tokens", "heldout_tokens", "context_length", "layer",
                                                "drop_first", "seed")}
    harvested = stages.run("harvest", harvest_key, _stage_harvest(cfg, lm, progress))
    cache: dict[str, Tensor] = {}

    def data() -> dict[str, Tensor]:
        if not cache:
            for split in ("train", "heldout"):
                cache[split] = _read_store(out / "harvest" / split) / harvested["scale"]
        return cache

    relu_fit = approx["fits"]["relu"]
    coefficients = (relu_fit["a"], relu_fit["b"])
    train_key = {k: getattr(cfg, k) for k in ("d_sae", "teacher_steps", "batch_size", "lr", "seed")}
    upgrade_key = {k: getattr(cfg, k) for k in ("finetune_steps", "finetune_lr", "calibration_tokens",
                                                "jumprelu_l0_budget", "control", "batch_size", "seed")}
    models: dict[str, Any] = {}
    sae_paths: dict[str, Path] = {}
    rsae_paths: dict[str, Path] = {}
    for setting in cfg.teachers:
        t_key = {"harvest": stages.log["harvest"]["config_hash"], "setting": dataclasses.asdict(setting), **train_key}
        teacher = stages.run(f"teacher-{setting.name}", t_key, _stage_teacher(cfg, setting, data, device, progress))
        teacher_dir = out / f"teacher-{setting.name}" / "sae"
        u_key = {"teacher": stages.log[f"teacher-{setting.name}"]["config_hash"], "coefficients": coefficients,
                 **upgrade_key}
        up = stages.run(f"upgrade-{setting.name}", u_key,
                        _stage_upgrade(cfg, setting, teacher_dir, coefficients, data, device, progress))
        models[setting.name] = {"family": setting.family, "sparsity": setting.sparsity,
                                "teacher_train_seconds": teacher["train_seconds"], "upgrade_seconds": up["seconds"],
                                "encoder_frozen": up["encoder_frozen"], "calibration": up["calibration"],
                                "control": up["metrics"]["control"],
                                **{s: dict(up["metrics"][s]) for s in _STAGES}}
        sae_paths[f"{setting.name}/teacher"] = teacher_dir
        sae_paths[f"{setting.name}/init"] = out / f"upgrade-{setting.name}" / "init"
        sae_paths[f"{setting.name}/rsae"] = out / f"upgrade-{setting.name}" / "rsae"
        rsae_paths[setting.name] = out / f"upgrade-{setting.name}" / "rsae"

    d_key = {"models": {n: stages.log[f"upgrade-{n.split('/')[0]}"]["config_hash"] for n in sae_paths},
             "ce_contexts": cfg.ce_contexts, "probe": [cfg.probe_task, cfg.probe_k, cfg.probe_train_contexts,
                                                        cfg.probe_heldout_contexts]}
    downstream = stages.run("downstream", d_key,
                            _stage_downstream(cfg, sae_paths, harvested["scale"], lm, device, progress))
    for name, row in models.items():
        for stage in _STAGES:
            row[stage].update(downstream["models"][f"{name}/{stage}"])

    results = {
        "config": cfg.to_dict(),
        "device": device,
        "approx": {k: v for k, v in approx.items() if k != "files"},
        "harvest": {k: v for k, v in harvested.items() if k != "files"},
        "downstream": {k: v for k, v in downstream.items() if k not in ("models", "files")},
        "models": models,
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__},
    }
    report_files = [figures / "results.json", out / "results.md", figures / "reproduce_tradeoff.png",
                    figures / "reproduce_shapes.png"]

    def report(folder: Path) -> dict[str, Any]:
        _plot_tradeoff(results, report_files[2])
        _plot_shapes(results, rsae_paths, report_files[3])
        (out / "results.md").write_text(results_markdown(finite(results)))
        return {"files": [str(f) for f in report_files]}

    r_key = {"downstream": stages.log["downstream"]["config_hash"],
             "upgrades": [stages.log[f"upgrade-{s.name}"]["config_hash"] for s in cfg.teachers],
             "figures": str(figures)}
    results["stages"] = stages.log
    _write_json(report_files[0], results)
    stages.run("report", r_key, report)
    results["stages"] = stages.log
    results["seconds"] = time.perf_counter() - t_start
    if not stages.log["report"]["skipped"]:
        _write_json(report_files[0], results)
    return finite(results)


# ---------------------------------------------------------------------------------------------------- CLI


def _run(args: argparse.Namespace) -> dict[str, Any] | str:
    if args.tiny and args.full:
        raise ConfigError("choose at most one of --tiny and --full")
    preset = "tiny" if args.tiny else "full" if args.full else "default"
    results = reproduce(PRESETS[preset], args.out, args.figures, device=args.device, progress=not args.no_progress)
    if args.json:
        return {"preset": preset, **results}
    summary = {name: {"seconds": round(s["seconds"], 1), "skipped": s["skipped"]} for name, s in
               results["stages"].items()}
    return f"preset {preset}; stages: {json.dumps(summary)}\n" + results_markdown(results)


def register_reproduce(subparsers: Any) -> argparse.ArgumentParser:
    """``rsae reproduce``: the whole chain (study, harvest, teachers, upgrades, downstream, tables, figures)."""
    parser = subparsers.add_parser(
        "reproduce", help="run the whole RSAE chain on the embedded defaults (resumable)",
        description="Approximation study, harvest, teachers, two-stage upgrades, held-out and downstream "
        "metrics, tables and figures. Stages whose outputs exist are skipped.")
    parser.add_argument("--out", default="runs/reproduce", help="stage outputs (default runs/reproduce)")
    parser.add_argument("--figures", default="figures", help="figures and results.json (default figures)")
    parser.add_argument("--full", action="store_true", help="the larger preset")
    parser.add_argument("--tiny", action="store_true", help="a few hundred tokens, tiny SAEs (tests)")
    parser.add_argument("--device", default="cpu", help="torch device, cpu or cuda (default cpu)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    parser.set_defaults(handler=_run)
    return parser
