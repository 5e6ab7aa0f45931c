"""The stages of :func:`rsae.experiments.reproduce.reproduce`: the approximation study and gate fits, the
harvest, the teachers (trained until converged), the upgrades with their controls and the downstream metrics. Each
``_stage_<name>(...)`` returns the function of the stage folder that :class:`rsae.experiments.stages._Stages`
runs."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from rsae.core.config import TrainConfig
from rsae.core.data import ActivationStore
from rsae.core.io import load_sae, save_sae
from rsae.core.metrics import evaluate_sae
from rsae.core.sae import SAE
from rsae.errors import ConfigError
from rsae.experiments.figures import _plot_gate_fits
from rsae.experiments.presets import VARIANTS, ReproduceConfig, TeacherSetting
from rsae.experiments.stages import _hash, _write_json
from rsae.lm.corpus import corpus_description

__all__ = ["train_until_converged"]


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
    return ActivationStore.open(path).read_all()


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
    ``mse_end``, ``improvement``, ``tol``, the held-out L0 at both ends (``l0_three_quarters``, ``l0_end``: a
    JumpReLU or ReLU teacher whose MSE keeps falling while its L0 rises is moving along its trade-off curve, not
    converging) and the whole ``curve`` [[step, mse, l0], ...].
    """
    from rsae.core.trainer import Trainer

    trainer = Trainer(sae, cfg, train, progress=progress)
    curve: list[list[float]] = []
    check: dict[str, Any] = {}
    while trainer.step < cfg.steps:
        trainer.train(until=trainer.step + eval_every)
        sae.eval()
        measured = evaluate_sae(sae, heldout)
        curve.append([trainer.step, float(measured["mse"]), float(measured["l0"])])
        sae.train()
        n = len(curve)
        if n % 4 == 0:
            (t3, m3, l3), (t, m, l_end) = curve[3 * n // 4 - 1], curve[-1]
            improvement = (m3 - m) / m3 if m3 > 0 else 0.0
            check = {"converged": improvement < tol, "steps": int(t), "step_three_quarters": int(t3),
                     "mse_three_quarters": m3, "mse_end": m, "improvement": improvement, "tol": tol,
                     "l0_three_quarters": l3, "l0_end": l_end}
            if check["converged"]:
                break
    sae.eval()
    if not check:
        raise ConfigError("no convergence check ran: steps must be at least 4 × eval_every")
    sys.stderr.write(f"{label}: held-out MSE {check['mse_three_quarters']:.4g} at step {check['step_three_quarters']}"
                     f" -> {check['mse_end']:.4g} at step {check['steps']}: {100 * check['improvement']:+.2f} % over "
                     f"the last quarter (L0 {check['l0_three_quarters']:.4g} -> {check['l0_end']:.4g}); converged "
                     f"(< {100 * tol:g} %): {check['converged']}\n")
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
        tcfg = _train_config(cfg, cfg.teacher_max_steps, cfg.lr, cfg.seed, decay_fraction=0.0).replace(
            l0_target=setting.l0_target)
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
                   progress: bool, measured: dict[str, Any] | None = None) -> Callable[[Path], dict[str, Any]]:
    """``measured``: a dict shared by the upgrades of one run; the teacher's held-out metrics are kept in it by
    teacher folder, so the six upgrades of a teacher measure it once."""
    measured = {} if measured is None else measured

    def run(folder: Path) -> dict[str, Any]:
        from rsae.experiments.upgrade import copy_sae, upgrade

        tensors = data()
        train, held = tensors["train"].to(device), tensors["heldout"].to(device)
        teacher = load_sae(teacher_dir, device=device)
        frozen = family == "relu" and variant == "magnitude"
        budget = cfg.l0_budget if family == "jumprelu" else None
        finetune = _train_config(cfg, cfg.finetune_steps, cfg.finetune_lr, seed).replace(
            coefficient_lr_scale=cfg.coefficient_lr_scale)
        t0 = time.perf_counter()
        result = upgrade(teacher, train, held, finetune, coefficients=coefficients, train_encoder=not frozen,
                         calibration_tokens=cfg.calibration_tokens, l0_budget=budget, control=True,
                         progress=progress, teacher_metrics=measured.get(str(teacher_dir)),
                         **_upgrade_options(variant, seed))
        measured[str(teacher_dir)] = result.teacher_metrics
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
        from rsae.lm.hooks import residual_prefix

        model = lm.get()
        heldout = _contexts(model, cfg, "heldout")
        ids = heldout.input_ids[: cfg.ce_contexts]
        # blocks 0..layer run once per batch; every model's pass runs only the blocks after it (same logits)
        prefixes = [residual_prefix(model, ids[s : s + 8], cfg.layer) for s in range(0, len(ids), 8)]

        def mean_ce(edit: Any) -> float:
            losses = [next_token_losses(model, p.input_ids, drop_first=cfg.drop_first,
                                        layer=None if edit is None else cfg.layer, edit=edit, prefix=p)
                      for p in prefixes]
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
