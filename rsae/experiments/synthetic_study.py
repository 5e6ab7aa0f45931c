"""The synthetic-data study of docs/rsae.md: feature recovery per family, the rational gates, the upgrade.

Run ``python -m rsae.experiments.synthetic_study --markdown`` (or ``rsae synthetic-study --markdown``); ``--part``
selects
one table. Everything is seeded; on a shared 2-core CPU the whole study takes roughly 20–30 minutes.

Tables
------
1. ``families``: every family trained from scratch on the default :class:`rsae.experiments.synthetic.SyntheticConfig`
   (d_in 64, 512 features, true L0 5, Zipf exponent 0.5) with d_sae 512: MMCS, matched recovery, L0, FVU,
   dead latents, training time. The target is MMCS ≥ 0.9 at an L0 near the true L0.
2. ``gates``: the rational family with each support gate (``relu``, ``jumprelu``, ``topk``,
   ``batchtopk``, ``cutoff``) — how the exact zeros of an RSAE are best obtained — plus the L0 the same
   trained rational would have with no gate at all (φ(h) ≠ 0 almost everywhere).
3. ``upgrade``: a ReLU, a JumpReLU and a TopK teacher, each upgraded in two stages
   (:func:`rsae.experiments.upgrade.upgrade`): held-out MSE and L0 of teacher, RSAE-init, fine-tuned RSAE, and of
   the teacher fine-tuned with the same settings (control).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch

from rsae.core.config import SPARSITY_DEFAULTS, SAEConfig, TrainConfig
from rsae.core.data import TensorSource
from rsae.core.metrics import evaluate_sae
from rsae.core.sae import SAE
from rsae.core.strict_json import dumps
from rsae.core.trainer import Trainer
from rsae.experiments.synthetic import SyntheticConfig, SyntheticSource, feature_recovery
from rsae.experiments.upgrade import upgrade

__all__ = [
    "FAMILY_SETTINGS",
    "GATE_SETTINGS",
    "StudyData",
    "study_data",
    "train_model",
    "run_study",
    "markdown_tables",
]

FAMILY_SETTINGS: dict[str, dict[str, Any]] = {
    "relu": {"family": "relu", **SPARSITY_DEFAULTS["relu"]},
    "jumprelu": {"family": "jumprelu", **SPARSITY_DEFAULTS["jumprelu"]},
    "topk": {"family": "topk", "k": 5},
    "batchtopk": {"family": "batchtopk", "k": 5},
    "rational": {"family": "rational", "rational_gate": "topk", "k": 5},
}
"""SAEConfig settings of the family table (sparsity coefficients chosen on this data; see docs/rsae.md)."""

GATE_SETTINGS: dict[str, dict[str, Any]] = {
    "relu": {"rational_gate": "relu", **SPARSITY_DEFAULTS["relu"]},
    "relu, L1 on max(h, 0)": {"rational_gate": "relu", "rational_l1_on": "pre_acts", **SPARSITY_DEFAULTS["relu"]},
    "jumprelu": {"rational_gate": "jumprelu", **SPARSITY_DEFAULTS["jumprelu"]},
    "topk": {"rational_gate": "topk", "k": 5},
    "batchtopk": {"rational_gate": "batchtopk", "k": 5},
    "cutoff": {"rational_gate": "cutoff", **SPARSITY_DEFAULTS["cutoff"]},
}
"""Rational-family settings per support gate."""


class StudyData:
    """Synthetic ground truth with a training split and a held-out split (disjoint token ranges)."""

    def __init__(self, synthetic: SyntheticSource, train: TensorSource, held_out: TensorSource) -> None:
        self.synthetic = synthetic
        self.train = train
        self.held_out = held_out


def study_data(n_train: int = 1 << 18, n_eval: int = 1 << 15, cfg: SyntheticConfig | None = None) -> StudyData:
    """Generate ``n_train + n_eval`` tokens once and split them."""
    synthetic = SyntheticSource(cfg or SyntheticConfig(), n_tokens=n_train + n_eval)
    tokens = synthetic.materialize().data
    return StudyData(synthetic, TensorSource(tokens[:n_train]), TensorSource(tokens[n_train:]))


def train_config(steps: int, seed: int = 0) -> TrainConfig:
    """The training settings shared by every model of the study."""
    return TrainConfig(
        steps=steps,
        batch_size=1024,
        lr=3e-3,
        warmup_steps=min(100, steps // 10),
        seed=seed,
        dead_window_tokens=100_000,
        log_every=50,
    )


def train_model(settings: dict[str, Any], data: StudyData, steps: int, seed: int = 0) -> tuple[SAE, dict[str, Any]]:
    """Train one SAE of ``settings`` (SAEConfig keywords); return it with held-out and truth metrics."""
    cfg = SAEConfig(d_in=data.synthetic.d_in, d_sae=data.synthetic.cfg.n_features, **settings)
    started = time.perf_counter()
    sae = Trainer(SAE.from_config(cfg, seed=seed), train_config(steps, seed), data.train, progress=False).train().sae
    seconds = time.perf_counter() - started
    sae.eval()
    metrics = evaluate_sae(sae, data.held_out)
    truth = feature_recovery(data.synthetic.features, sae.W_dec)
    row = {
        "family": cfg.family,
        "gate": cfg.gate,
        "train_seconds": seconds,
        "mmcs": truth["mmcs"],
        "matched_cosine": truth["matched_cosine"],
        "recovered_fraction": truth["recovered_fraction"],
        "l0": metrics["l0"],
        "true_l0": data.synthetic.true_l0,
        "fvu": metrics["fvu"],
        "mse": metrics["mse"],
        "dead_latents": metrics["dead_latents"],
    }
    return sae, row


@torch.no_grad()
def ungated_l0(sae: SAE, x: torch.Tensor) -> float:
    """Mean number of non-zero φ(h) per token if a rational SAE had no gate (exact count)."""
    return float((sae.activation.phi(sae.pre_acts(x)) != 0).sum(-1).float().mean())


def run_study(part: str = "all", steps: int = 2000, finetune_steps: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Run the selected tables (``families``, ``gates``, ``upgrade`` or ``all``) and return their rows."""
    data = study_data()
    out: dict[str, Any] = {
        "synthetic": {**data.synthetic.cfg.__dict__, "true_l0": data.synthetic.true_l0},
        "steps": steps,
        "finetune_steps": finetune_steps,
        "torch_threads": torch.get_num_threads(),
    }
    if part in ("families", "all"):
        out["families"] = {name: train_model(s, data, steps, seed)[1] for name, s in FAMILY_SETTINGS.items()}
    if part in ("gates", "all"):
        rows = {}
        for name, settings in GATE_SETTINGS.items():
            sae, row = train_model({"family": "rational", **settings}, data, steps, seed)
            row["ungated_l0"] = ungated_l0(sae, data.held_out.data[:4096])
            rows[name] = row
        out["gates"] = rows
    if part in ("upgrade", "all"):
        rows = {}
        variants = [
            ("relu", "relu", True),
            ("relu, encoder frozen", "relu", False),
            ("jumprelu", "jumprelu", True),
            ("topk", "topk", True),
        ]
        teachers: dict[str, SAE] = {}
        for label, name, train_encoder in variants:
            if name not in teachers:
                teachers[name] = train_model(FAMILY_SETTINGS[name], data, steps, seed)[0]
            finetune = train_config(finetune_steps, seed).replace(lr=1e-3)
            result = upgrade(teachers[name], data.train, data.held_out, finetune, train_encoder=train_encoder)
            rows[label] = {
                "teacher": _pick(result.teacher_metrics),
                "rsae_init": _pick(result.init_metrics),
                "rsae": _pick(result.student_metrics),
                "teacher_finetuned": _pick(result.control_metrics),
                "calibration": result.calibration._asdict(),
            }
        out["upgrade"] = rows
    return out


def _pick(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    keys = ("mse", "fvu", "l0", "alive_fraction")
    return None if metrics is None else {k: metrics[k] for k in keys}


def markdown_tables(result: dict[str, Any]) -> str:
    """The study's tables as markdown."""
    lines: list[str] = []
    if "families" in result:
        lines += [
            "| family | gate | MMCS | matched cos | recovered ≥0.9 | L0 (true) | FVU | dead | train s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, r in result["families"].items():
            lines.append(
                f"| {name} | {r['gate']} | {r['mmcs']:.3f} | {r['matched_cosine']:.3f} | "
                f"{r['recovered_fraction']:.3f} | {r['l0']:.2f} ({r['true_l0']:.2f}) | {r['fvu']:.4f} | "
                f"{r['dead_latents']} | {r['train_seconds']:.0f} |"
            )
        lines.append("")
    if "gates" in result:
        lines += [
            "| rational gate | MMCS | L0 | L0 without gate | FVU | dead | train s |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in result["gates"].items():
            lines.append(
                f"| {name} | {r['mmcs']:.3f} | {r['l0']:.2f} | {r['ungated_l0']:.1f} | {r['fvu']:.4f} | "
                f"{r['dead_latents']} | {r['train_seconds']:.0f} |"
            )
        lines.append("")
    if "upgrade" in result:
        lines += [
            "| teacher | teacher MSE / L0 | RSAE-init MSE / L0 (ratio) | RSAE MSE / L0 | teacher fine-tuned MSE / L0 |",
            "|---|---|---|---|---|",
        ]
        for name, r in result["upgrade"].items():
            t, i, s, c = r["teacher"], r["rsae_init"], r["rsae"], r["teacher_finetuned"]
            lines.append(
                f"| {name} | {t['mse']:.4f} / {t['l0']:.2f} | {i['mse']:.4f} / {i['l0']:.2f} "
                f"({i['mse'] / t['mse']:.4f}) | {s['mse']:.4f} / {s['l0']:.2f} | "
                f"{c['mse']:.4f} / {c['l0']:.2f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m rsae.experiments.synthetic_study [--part P] [--steps N] [--finetune-steps N] [--markdown]``."""
    parser = argparse.ArgumentParser(prog="python -m rsae.experiments.synthetic_study",
    description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("families", "gates", "upgrade", "all"), default="all")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--finetune-steps", type=int, default=1000)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    result = run_study(args.part, args.steps, args.finetune_steps)
    sys.stdout.write((markdown_tables(result) if args.markdown else dumps(result)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
