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

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rsae.core.config import SAEConfig
from rsae.core.io import load_sae
from rsae.core.metrics import evaluate_sae
from rsae.core.strict_json import finite
from rsae.errors import ConfigError, DataError
from rsae.experiments.figures import _plot_shapes
from rsae.experiments.presets import PRESETS, VARIANTS, ReproduceConfig, TeacherSetting, sparsity_label
from rsae.experiments.report import results_markdown
from rsae.experiments.reproduce_stages import (
    _DOWNSTREAM_KEYS,
    _LM,
    _read_store,
    _stage_approx,
    _stage_downstream,
    _stage_harvest,
    _stage_teacher,
    _stage_upgrade,
    train_until_converged,
)
from rsae.experiments.scoreboard import build_board, plot_tradeoff
from rsae.experiments.stages import _hash, _Stages, _write_json

__all__ = ["PRESETS", "VARIANTS", "ReproduceConfig", "TeacherSetting", "reproduce", "results_markdown",
           "train_until_converged"]


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
    if cfg.coefficient_lr_scale != 1.0:  # markers of runs before the option keep matching
        upgrade_key["coefficient_lr_scale"] = cfg.coefficient_lr_scale
    upgrade_key["format"] = 4  # gate-own inits, the control from upgrade(), the floored paper row, sampled calibration,
    # the primitive's tails (SAEConfig.rational_tails)

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
                             "sparsity_label": sparsity_label(tcfg.family, float(_teacher_sparsity(tcfg))),
                             "kind": "saelens", "folder": path, "result": result,
                             "hash": stages.log[f"teacher-{label}"]["config_hash"]})
    if not teachers:
        for setting in cfg.teachers:
            for dead in (False, True) if setting.dead else (False,):
                label = setting.name + ("-dead" if dead else "")
                t_key = {"harvest": data_hash, "setting": setting.key(), "dead": dead, **train_key}
                if dead:
                    t_key.update(dead_fraction=cfg.dead_fraction, dead_shift=cfg.dead_shift)
                result = stages.run(f"teacher-{label}", t_key,
                                    _stage_teacher(cfg, setting, dead, tensors, device, progress))
                teacher_list.append({"label": label, "family": setting.family, "sparsity": float(setting.sparsity),
                                     "sparsity_label": setting.label,
                                     "kind": "dead" if dead else "trained", "folder": out / f"teacher-{label}" / "sae",
                                     "result": result, "hash": stages.log[f"teacher-{label}"]["config_hash"]})

    rows: list[dict[str, Any]] = []
    measured: dict[str, Any] = {}  # each teacher's held-out metrics, measured by its first upgrade
    sae_paths: dict[str, tuple[Path, str]] = {}
    shapes: list[tuple[str, str, Path]] = []
    for t in teacher_list:
        sae_paths[f"{t['label']}/teacher"] = (t["folder"], t["hash"])
        for variant in cfg.variants:
            key = f"{t['family']}/{t['sparsity_label']}/{t['kind']}/{variant}"
            row: dict[str, Any] = {
                "key": key, "family": t["family"], "sparsity": t["sparsity"],
                "sparsity_label": t["sparsity_label"], "teacher_kind": t["kind"],
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
                if t["family"] in ("topk", "batchtopk"):  # τ_k over all entries, not a global-RNG subsample
                    u_key["design_scale"] = "exact"
                up = stages.run(name, u_key, _stage_upgrade(cfg, t["family"], variant, seed, t["folder"],
                                                            coefficients, tensors, device, progress, measured))
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

    board = build_board(rows, cfg.seeds, cfg.l0_budget, cfg.variants)
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
