"""One trainer for every SAE family.

Each step: take a batch, compute :meth:`rsae.core.sae.SAE.forward`'s loss (reconstruction + warmed-up sparsity
penalty + AuxK on dead latents for top-k style gates), back-propagate, remove the decoder-row-parallel
gradient component, clip the global gradient norm, take an Adam step, renormalise the decoder rows (the
last two only when ``SAEConfig.normalize_decoder``), and update the dead-latent counters.

* Learning rate: linear warm-up over ``warmup_steps``, constant, then linear decay to 0 over the last
  ``decay_fraction · steps`` steps — a pure function of the step (:func:`learning_rate`), so resuming needs
  only the step number.
* Initialisation from data (fresh runs only): b_dec ← geometric median of ``init_sample_tokens`` tokens
  (:func:`geometric_median`, Weiszfeld's algorithm), then the family's ``initialise_from_data`` on the
  pre-activations of the same sample (the rational family sets C_in there).
* Sparsity multiplier: with ``l0_target`` the penalty is scaled by μ ≥ 1, raised by dual ascent while the
  batch L0 exceeds the target (``TrainConfig.l0_target``); μ is part of the checkpoint.
* Dead latents: a latent is dead once it has not fired on any of the last ``dead_window_tokens`` tokens.
* Checkpoints: ``<dir>/step_XXXXXXX/`` with ``model.safetensors`` (state dict and RNG states),
  ``optimizer.safetensors`` (Adam moments) and ``trainer_state.json`` (configs, step, data position, counters'
  file, and the sha256 of both tensor files); written under a temporary name and renamed, then
  ``<dir>/latest.json`` is replaced atomically. A killed run resumed with :meth:`Trainer.resume` continues to
  bit-identical weights on CPU (the data order is a function of (seed, epoch) and the position within the
  epoch is saved). Resuming validates everything it reads (checksums, keys, shapes, dtypes, finite values,
  ``latest.json`` naming a ``step_XXXXXXX`` folder of this run) and raises :class:`rsae.errors.SAEFileError`
  naming the damaged file. A fresh run refuses a folder that already holds another run's checkpoints.
* Divergence: the loss is checked before every update and the weights after it; at the first NaN or inf
  the trainer stops with :class:`rsae.errors.TrainingError` naming the step. Nothing non-finite is ever
  checkpointed, so the last checkpoint on disk is the last good state.
* Data parallel under ``torchrun`` (:mod:`rsae.core.distributed`): ``batch_size`` is the global batch, split
  into equal row blocks over the ranks; gradients are averaged and the data-dependent state agrees on all
  ranks, so 1 and N processes train the same model; rank 0 writes the checkpoints.

Example
-------
>>> import torch
>>> from rsae.core.config import SAEConfig, TrainConfig
>>> from rsae.core.sae import SAE
>>> from rsae.core.trainer import Trainer
>>> x = torch.randn(2048, 8)
>>> sae = SAE.from_config(SAEConfig(d_in=8, d_sae=16, family="topk", k=2), seed=0)
>>> result = Trainer(sae, TrainConfig(steps=20, batch_size=256, warmup_steps=2), x, progress=False).train()
>>> result.final["step"]
20
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from rsae.core import distributed
from rsae.core.activations import BatchTopK
from rsae.core.config import SAEConfig, TrainConfig
from rsae.core.data import as_source, atomic_write_text
from rsae.core.sae import SAE
from rsae.core.strict_json import dumps
from rsae.errors import ConfigError, DataError, SAEFileError, TrainingError

__all__ = ["TrainResult", "Trainer", "check_checkpoint_dir", "geometric_median", "learning_rate"]

_LATEST = "latest.json"
_CHECKPOINT_NAME = re.compile(r"step_\d{7}")
_CHECKPOINT_FORMATS = ("rsae-checkpoint/1", "rsae-checkpoint/2")
_CHECKSUMMED = ("model.safetensors", "optimizer.safetensors")


class TrainResult(NamedTuple):
    """What :meth:`Trainer.train` returns."""

    sae: SAE
    """The trained model (in ``train()`` mode; call ``eval()`` before inference)."""
    history: list[dict[str, float]]
    """One record every ``log_every`` steps: step, lr, loss, mse, sparsity, auxk, l0, fvu, dead_fraction."""
    final: dict[str, float]
    """The record of the last step."""


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up, constant, linear decay to 0."""
    lr = cfg.lr
    if cfg.warmup_steps and step < cfg.warmup_steps:
        lr *= (step + 1) / cfg.warmup_steps
    decay_steps = int(round(cfg.decay_fraction * cfg.steps))
    if decay_steps and step >= cfg.steps - decay_steps:
        lr *= max(cfg.steps - step, 0) / decay_steps
    return lr


@torch.no_grad()
def geometric_median(points: Tensor, max_iter: int = 200, tol: float = 1e-7) -> Tensor:
    r"""Geometric median argmin_y Σ_i ‖p_i − y‖ of the rows of ``points`` by Weiszfeld's iteration.

    .. math:: y_{t+1} = \frac{\sum_i p_i / \lVert p_i - y_t\rVert}{\sum_i 1 / \lVert p_i - y_t\rVert}

    started at the mean; distances are floored at 1e-12 · scale so a point hit exactly does not divide by
    zero. Stops when the step is below ``tol`` relative to ‖y‖ (or 1). Computed in float64."""
    p = points.double()
    y = p.mean(0)
    floor = 1e-12 * max(float(p.abs().max()), 1.0)
    for _ in range(max_iter):
        w = 1.0 / (p - y).norm(dim=1).clamp_min(floor)
        y_next = (w[:, None] * p).sum(0) / w.sum()
        done = float((y_next - y).norm()) <= tol * max(float(y.norm()), 1.0)
        y = y_next
        if done:
            break
    return y.to(points.dtype)


class Trainer:
    """Train an :class:`rsae.core.sae.SAE` of any family on a batch source.

    Parameters
    ----------
    sae : SAE
        The model, already on its device.
    cfg : TrainConfig
        Optimiser, schedule and bookkeeping settings.
    source : TensorSource, ActivationStore, Tensor or path
        Training tokens [n_tokens, d_in] (see :func:`rsae.core.data.as_source`).
    checkpoint_dir : path-like, optional
        Where checkpoints go (every ``cfg.checkpoint_every`` steps and at the end).
    progress : bool
        Show a tqdm bar on stderr with loss, L0 and FVU.
    """

    def __init__(
        self,
        sae: SAE,
        cfg: TrainConfig,
        source: Any,
        *,
        checkpoint_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> None:
        self.sae = sae
        self.cfg = cfg
        self.source = as_source(source)
        if self.source.d_in != sae.cfg.d_in:
            raise DataError(f"data has d_in = {self.source.d_in} but the SAE expects d_in = {sae.cfg.d_in}")
        if self.source.n_tokens < cfg.batch_size:
            raise DataError(
                f"the data holds {self.source.n_tokens} tokens, fewer than one batch "
                f"({cfg.batch_size}); lower batch_size or add data"
            )
        if cfg.autocast_bf16 and sae.device.type != "cuda":
            raise ConfigError("autocast_bf16 is meant for GPU training; on CPU train in float32")
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.progress = progress
        # The fused kernel (CPU and CUDA) updates each parameter in one pass instead of a chain of elementwise ops.
        self.optimizer = torch.optim.Adam(
            _param_groups(sae, cfg.coefficient_lr_scale),
            lr=cfg.lr,
            betas=cfg.adam_betas,
            eps=cfg.adam_eps,
            fused=sae.device.type in ("cpu", "cuda"),
        )
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.tokens_since_fired = torch.zeros(sae.cfg.d_sae, dtype=torch.long, device=sae.device)
        self.sparsity_multiplier = torch.ones((), dtype=torch.float32, device=sae.device)
        self.history: list[dict[str, float]] = []
        self._last_checkpoint: Path | None = None
        self._resumed = False
        # the batch stream of the last train() call and the (epoch, batch_in_epoch) it stopped at: a later call
        # continues it instead of re-reading (and re-shuffling) the current chunk
        self._stream: Iterator[Tensor] | None = None
        self._stream_position: tuple[int, int] | None = None
        self._setup_distributed()

    def _setup_distributed(self) -> None:
        """Under torch.distributed: this rank's share of the global batch, BatchTopK over the global batch."""
        self.rank, self.world_size = distributed.world()
        if self.cfg.batch_size % self.world_size:
            raise ConfigError(
                f"batch_size {self.cfg.batch_size} (the global batch) is not divisible by the "
                f"{self.world_size} processes; choose a multiple of {self.world_size}"
            )
        for module in self.sae.modules():
            if isinstance(module, BatchTopK):
                module.sync_ranks = self.world_size > 1

    # ------------------------------------------------------------------ initialisation and data
    @torch.no_grad()
    def initialise_from_data(self) -> None:
        """b_dec ← geometric median of a sample; then the family's data-dependent initialisation."""
        n = min(self.cfg.init_sample_tokens, self.source.n_tokens)
        sample = self.source.sample(n, seed=self.cfg.seed).to(self.sae.device, self.sae.dtype)
        if self.cfg.init_b_dec_geometric_median:
            self.sae.b_dec.copy_(geometric_median(sample))
        if self.cfg.init_rational_scale_from_data:
            self.sae.activation.initialise_from_data(self.sae.pre_acts(sample))
        distributed.broadcast_module_(self.sae)  # every rank drew the same sample; this makes it exact

    def _batches(self) -> Iterator[Tensor]:
        while True:
            batches = self.source.iter_batches(
                self.cfg.batch_size,
                shuffle=True,
                seed=self.cfg.seed,
                epoch=self.epoch,
                chunk_tokens=self.cfg.chunk_tokens,
                drop_last=True,
                start_batch=self.batch_in_epoch,
            )
            share = self.cfg.batch_size // self.world_size
            for batch in batches:
                self.batch_in_epoch += 1
                yield batch[self.rank * share : (self.rank + 1) * share]
            self.epoch += 1
            self.batch_in_epoch = 0

    # ------------------------------------------------------------------ training
    def train(self, until: int | None = None) -> TrainResult:
        """Run the remaining steps and return the model and its log.

        Parameters
        ----------
        until : int, optional
            Stop after this step instead of ``cfg.steps`` (the schedule still spans ``cfg.steps``); with a
            checkpoint folder the stopping point is checkpointed, so :meth:`resume` continues from it.
        """
        cfg, sae = self.cfg, self.sae
        stop = cfg.steps if until is None else min(until, cfg.steps)
        if self.step == 0 and not self._resumed and self.checkpoint_dir is not None:
            check_checkpoint_dir(self.checkpoint_dir, resume=False)
        if self.step == 0:
            self.initialise_from_data()
        sae.train()
        device = sae.device
        autocast = (
            torch.autocast(device_type=device.type, dtype=torch.bfloat16)
            if cfg.autocast_bf16
            else contextlib.nullcontext()
        )
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            file=sys.stderr,
            disable=not self.progress or self.rank != 0,
            desc=f"train {sae.cfg.family}",
            dynamic_ncols=True,
        )
        if self._stream is None or self._stream_position != (self.epoch, self.batch_in_epoch):
            self._stream = self._batches()  # fresh, or the position was changed from outside (resume)
        batches = self._stream
        try:
            while self.step < stop:
                x = next(batches).to(device=device, dtype=sae.dtype, non_blocking=True)
                record = self._train_step(x, autocast)
                self.step += 1
                bar.update(1)
                if record is not None:
                    self.history.append(record)
                    bar.set_postfix(
                        loss=f"{record['loss']:.4g}", l0=f"{record['l0']:.3g}", fvu=f"{record['fvu']:.4f}"
                    )
                if (
                    self.checkpoint_dir is not None
                    and cfg.checkpoint_every
                    and self.step % cfg.checkpoint_every == 0
                    and self.step < stop
                ):
                    self._save_checkpoint_on_rank0()
        except BaseException:
            self._stream = None  # a stream an exception went through is not continued
            raise
        else:
            self._stream_position = (self.epoch, self.batch_in_epoch)
        finally:
            bar.close()
        if self.checkpoint_dir is not None:
            self._save_checkpoint_on_rank0()
        final = self.history[-1] if self.history else {}
        return TrainResult(sae, self.history, final)

    def _train_step(self, x: Tensor, autocast: Any) -> dict[str, float] | None:
        cfg, sae = self.cfg, self.sae
        lr = learning_rate(self.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        warm = min(1.0, (self.step + 1) / cfg.sparsity_warmup_steps) if cfg.sparsity_warmup_steps else 1.0
        scale = warm * self.sparsity_multiplier
        dead = self.tokens_since_fired >= cfg.dead_window_tokens
        with autocast:
            out = sae(
                x,
                dead_mask=dead,
                sparsity_scale=scale,
                auxk_coefficient=cfg.auxk_coefficient,
                auxk_k=cfg.auxk_k,
            )
        self._check_finite_loss(out.losses)
        self.optimizer.zero_grad(set_to_none=True)
        out.losses.total.backward()
        distributed.average_gradients_(sae.parameters())
        if sae.cfg.normalize_decoder:
            sae.remove_parallel_decoder_grad_()
        if cfg.grad_clip is not None:
            _clip_grad_norm_(list(sae.parameters()), cfg.grad_clip)
        self.optimizer.step()
        if sae.cfg.normalize_decoder:
            sae.normalize_decoder_()
        self._check_finite_weights()
        logged = (self.step + 1) % cfg.log_every == 0 or self.step + 1 == cfg.steps
        with torch.no_grad():
            # from the support on the sparse path: the dense codes are never built (SAEOutput.codes is lazy)
            fired = distributed.all_reduce_(out.fired_latents().to(torch.int32), "max").bool()
            self.tokens_since_fired += x.shape[0] * self.world_size
            self.tokens_since_fired.masked_fill_(fired, 0)
            batch_l0 = out.l0() if cfg.l0_target is not None or logged else None
            if cfg.l0_target is not None:
                l0 = distributed.all_reduce_(batch_l0.clone(), "mean")
                step = torch.exp(cfg.l0_target_rate * (l0 / cfg.l0_target - 1))
                self.sparsity_multiplier = (self.sparsity_multiplier * step).clamp(1.0, 1e4)
        if not logged:
            return None
        with torch.no_grad():
            xf = x.float()
            variance = (xf - xf.mean(0)).pow(2).sum(-1).mean()
            losses = out.losses
            return self._mean_over_ranks({
                "step": self.step + 1,
                "lr": lr,
                "loss": float(losses.total),
                "mse": float(losses.mse),
                "sparsity": float(losses.sparsity),
                "auxk": float(losses.auxk),
                "l0": float(batch_l0),
                "fvu": float(losses.mse / variance) if float(variance) > 0 else float("nan"),
                "dead_fraction": float(dead.float().mean()),
                "sparsity_multiplier": float(self.sparsity_multiplier),
            })

    def _mean_over_ranks(self, record: dict[str, float]) -> dict[str, float]:
        """The log record averaged over the ranks (loss terms, L0 and FVU are means over equal batch shares)."""
        if self.world_size == 1:
            return record
        keys = ("loss", "mse", "sparsity", "auxk", "l0", "fvu")
        values = distributed.all_reduce_(torch.tensor([record[k] for k in keys], dtype=torch.float64), "mean")
        return {**record, **dict(zip(keys, values.tolist()))}

    def _save_checkpoint_on_rank0(self) -> None:
        """Rank 0 writes the checkpoint (the state is the same on every rank); the others wait for it."""
        if self.rank == 0:
            self.save_checkpoint()
        distributed.barrier()

    # ------------------------------------------------------------------ divergence
    def _diverged(self, what: str) -> TrainingError:
        if self._last_checkpoint is not None:
            where = f"the last good checkpoint is {self._last_checkpoint}"
        else:
            where = "no checkpoint was written (pass a checkpoint folder to keep progress)"
        return TrainingError(
            f"training diverged at step {self.step + 1} of {self.cfg.steps}: {what}; {where}. Lower the "
            "learning rate or the sparsity coefficient, or check the data scale"
        )

    def _check_finite_loss(self, losses: Any) -> None:
        """Stop before the update if the loss is not finite (the weights are still those of the last step)."""
        if not bool(torch.isfinite(losses.total)):
            terms = ", ".join(f"{name} {float(getattr(losses, name).detach()):.4g}" for name in losses._fields)
            raise self._diverged(f"the loss is not finite ({terms})")

    def _check_finite_weights(self) -> None:
        """Stop after the update if any parameter became NaN or inf (e.g. a learning rate far too large)."""
        params = dict(self.sae.named_parameters())
        # One summing pass per parameter first: a NaN or inf entry makes its sum non-finite (inf + x is inf or NaN,
        # NaN stays NaN, in any summation order), so finite sums prove every entry finite (the exact test costs 4
        # elementwise passes per parameter). Summed in the parameter's own dtype (a float64 sum of float32 weights
        # first converted the whole tensor, a copy as costly as the sum): a sum that overflows although every entry
        # is finite is not finite, and the exact test then settles it.
        with torch.no_grad():
            if bool(torch.isfinite(torch.stack([p.detach().sum().float() for p in params.values()])).all()):
                return
        finite = torch.stack([torch.isfinite(p.detach()).all() for p in params.values()])
        if not bool(finite.all()):
            bad = [name for name, ok in zip(params, finite.tolist(), strict=True) if not ok]
            raise self._diverged(f"the update made {', '.join(bad)} non-finite")

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        """Write ``step_XXXXXXX/`` atomically (temporary folder + rename), point ``latest.json`` at it and
        delete all but the newest ``keep_checkpoints`` checkpoints."""
        if self.checkpoint_dir is None:
            raise ConfigError("this Trainer has no checkpoint_dir; pass checkpoint_dir=... to checkpoint")
        root = self.checkpoint_dir
        root.mkdir(parents=True, exist_ok=True)
        name = f"step_{self.step:07d}"
        tmp = root / f".tmp-{name}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        model = {
            f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in self.sae.state_dict().items()
        }
        model["rng.cpu"] = torch.get_rng_state()
        if torch.cuda.is_available():
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                model[f"rng.cuda.{i}"] = state
        model["trainer.tokens_since_fired"] = self.tokens_since_fired.cpu().clone()
        model["trainer.sparsity_multiplier"] = self.sparsity_multiplier.cpu().clone()
        _save_safetensors(model, tmp / "model.safetensors")
        opt_state = self.optimizer.state_dict()
        opt_tensors = {
            f"state.{idx}.{key}": value.detach().cpu().contiguous().clone()
            for idx, entry in opt_state["state"].items()
            for key, value in entry.items()
        }
        _save_safetensors(opt_tensors, tmp / "optimizer.safetensors")
        state = {
            "format": "rsae-checkpoint/2",
            "sha256": {name: _sha256(tmp / name) for name in _CHECKSUMMED},
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "sae_config": self.sae.cfg.to_dict(),
            "train_config": self.cfg.to_dict(),
            "optimizer_param_groups": opt_state["param_groups"],
            "data": {"n_tokens": self.source.n_tokens, "d_in": self.source.d_in},
            "history": self.history,
            "torch_version": torch.__version__,
        }
        atomic_write_text(tmp / "trainer_state.json", dumps(state, indent=2))
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        atomic_write_text(root / _LATEST, json.dumps({"checkpoint": name, "step": self.step}))
        kept = sorted(p for p in root.glob("step_*") if p.is_dir())
        for old in kept[: max(len(kept) - self.cfg.keep_checkpoints, 0)]:
            if old.name != name:
                shutil.rmtree(old)
        self._last_checkpoint = final
        return final

    @classmethod
    def resume(
        cls,
        checkpoint_dir: str | os.PathLike,
        source: Any,
        *,
        progress: bool = True,
        device: str | None = None,
    ) -> Trainer:
        """Rebuild a trainer from the newest checkpoint in ``checkpoint_dir`` (see :meth:`save_checkpoint`).

        ``source`` must be the same data as the original run (checked by token count and width).
        """
        root = Path(checkpoint_dir)
        folder, state = _read_checkpoint_state(root)
        sae_cfg = SAEConfig.from_dict(state["sae_config"])
        if device is not None:
            sae_cfg = sae_cfg.replace(device=device)
        train_cfg = TrainConfig.from_dict(state["train_config"])
        sae = SAE(sae_cfg).to(sae_cfg.device)
        model = _load_safetensors(folder / "model.safetensors")
        _check_model_tensors(folder / "model.safetensors", model, sae)
        sae.load_state_dict({k.removeprefix("model."): v for k, v in model.items() if k.startswith("model.")})
        trainer = cls(sae, train_cfg, source, checkpoint_dir=root, progress=progress)
        if {"n_tokens": trainer.source.n_tokens, "d_in": trainer.source.d_in} != state["data"]:
            raise DataError(
                f"the checkpoint was trained on {state['data']}, but the data given has "
                f"{trainer.source.n_tokens} tokens of width {trainer.source.d_in}"
            )
        opt_file = folder / "optimizer.safetensors"
        opt_state = _optimizer_state(opt_file, _load_safetensors(opt_file), state, trainer.optimizer)
        try:
            trainer.optimizer.load_state_dict(opt_state)
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise SAEFileError(f"{folder / 'trainer_state.json'}: optimizer state does not fit: {exc}") from exc
        torch.set_rng_state(model["rng.cpu"])
        cuda_states = [model[k] for k in sorted(model) if k.startswith("rng.cuda.")]
        if cuda_states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda_states)
        trainer.tokens_since_fired = model["trainer.tokens_since_fired"].to(sae.device)
        trainer.sparsity_multiplier = model["trainer.sparsity_multiplier"].to(sae.device)
        trainer.step = state["step"]
        trainer.epoch = state["epoch"]
        trainer.batch_in_epoch = state["batch_in_epoch"]
        trainer.history = list(state["history"])
        trainer._last_checkpoint = folder
        trainer._resumed = True
        return trainer


def check_checkpoint_dir(path: str | os.PathLike, *, resume: bool) -> Path:
    """Check a checkpoint folder before any work: usable as a folder, writable, and holding a run iff resuming.

    A fresh run (``resume=False``) refuses a folder whose ``latest.json`` belongs to another run, which it would
    otherwise repoint, making that run impossible to resume; ``resume=True`` needs that file.

    Raises
    ------
    ConfigError
        The path is a file or cannot be created or written, or the run-ownership rule above is broken.
    """
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"checkpoint folder {root} is a file; pass a folder")
    has_run = (root / _LATEST).exists()
    if resume and not has_run:
        raise ConfigError(f"nothing to resume: {root} holds no {_LATEST} (the checkpoints of an interrupted run)")
    if not resume and has_run:
        raise ConfigError(
            f"{root} already holds the checkpoints of another run ({root / _LATEST}); pass --resume (resume=True) "
            "to continue it, or choose an empty checkpoint folder"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write checkpoints to {root}: {exc.strerror or exc}") from exc
    return root


def _save_safetensors(tensors: dict[str, Tensor], path: Path) -> None:
    save_file(tensors, str(path), metadata={"format": "pt"})
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _load_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises several error types for damaged files
        raise SAEFileError(f"cannot read checkpoint file {path}: {exc}") from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_checkpoint_state(root: Path) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint folder of ``root`` and its validated ``trainer_state.json`` (checksums verified)."""
    latest_file = root / _LATEST
    try:
        latest = json.loads(latest_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SAEFileError(f"no readable checkpoint in {root}: {latest_file}: {exc}") from exc
    name = latest.get("checkpoint") if isinstance(latest, dict) else None
    if not isinstance(name, str) or not _CHECKPOINT_NAME.fullmatch(name):
        raise SAEFileError(
            f"{latest_file}: 'checkpoint' must name a step_XXXXXXX folder of this run, got {name!r}; "
            "a latest.json pointing elsewhere (another run, '..') is refused"
        )
    folder = root / name
    if folder.is_symlink() or not folder.is_dir():
        raise SAEFileError(f"{latest_file} names {name}, which is not a checkpoint folder inside {root}")
    state_file = folder / "trainer_state.json"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SAEFileError(f"cannot read {state_file}: {exc}") from exc

    def bad(what: str) -> SAEFileError:
        return SAEFileError(f"{state_file} is damaged: {what}")

    if not isinstance(state, dict) or state.get("format") not in _CHECKPOINT_FORMATS:
        raise bad(f"format must be one of {_CHECKPOINT_FORMATS}")
    for key in ("step", "epoch", "batch_in_epoch"):
        value = state.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise bad(f"{key!r} must be a non-negative integer, got {value!r}")
    for key, kind in (
        ("sae_config", dict),
        ("train_config", dict),
        ("data", dict),
        ("history", list),
        ("optimizer_param_groups", list),
    ):
        if not isinstance(state.get(key), kind):
            raise bad(f"{key!r} must be a JSON {'object' if kind is dict else 'array'}")
    try:
        SAEConfig.from_dict(state["sae_config"])
        TrainConfig.from_dict(state["train_config"])
    except ConfigError as exc:
        raise bad(str(exc)) from exc
    if state["format"] != _CHECKPOINT_FORMATS[0]:
        sums = state.get("sha256")
        if not isinstance(sums, dict) or set(sums) != set(_CHECKSUMMED):
            raise bad(f"'sha256' must give the checksum of {list(_CHECKSUMMED)}")
        for file_name in _CHECKSUMMED:
            file = folder / file_name
            if not file.is_file():
                raise SAEFileError(f"{file} is missing; the checkpoint is incomplete")
            if _sha256(file) != sums[file_name]:
                raise SAEFileError(
                    f"{file} does not match the checksum in {state_file.name}: the file was damaged or replaced"
                )
    return folder, state


def _check_model_tensors(file: Path, model: dict[str, Tensor], sae: SAE) -> None:
    """The model file of a checkpoint must hold exactly the SAE's tensors (shapes, dtypes, finite) and the
    trainer's RNG state and counters."""
    expected = {f"model.{k}": (tuple(v.shape), v.dtype) for k, v in sae.state_dict().items()}
    expected["trainer.tokens_since_fired"] = ((sae.cfg.d_sae,), torch.long)
    expected["trainer.sparsity_multiplier"] = ((), torch.float32)
    expected["rng.cpu"] = (tuple(torch.get_rng_state().shape), torch.uint8)
    keys = {k for k in model if not k.startswith("rng.cuda.")}
    missing, extra = sorted(set(expected) - keys), sorted(keys - set(expected))
    if missing or extra:
        raise SAEFileError(f"{file} is damaged: missing tensors {missing}, unexpected tensors {extra}")
    for key, (shape, dtype) in expected.items():
        tensor = model[key]
        if tuple(tensor.shape) != shape or tensor.dtype != dtype:
            raise SAEFileError(
                f"{file} is damaged: {key!r} is {tensor.dtype} {tuple(tensor.shape)}, expected {dtype} {shape}"
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise SAEFileError(f"{file}: {key!r} holds NaN or inf; resume from an earlier checkpoint")


def _clip_grad_norm_(params: list[torch.nn.Parameter], max_norm: float) -> None:
    """:func:`torch.nn.utils.clip_grad_norm_`, the same computation, without its pass over every gradient when it
    would multiply them by exactly 1 (total norm within ``max_norm``: the common case). On CPU only: elsewhere the
    test would wait for the device, so the plain call runs."""
    if not params or params[0].device.type != "cpu":
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        return
    total = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    # torch's coefficient min(max_norm / (total + 1e-6), 1): where it is 1 the product changes no bit; where it is
    # NaN (a non-finite norm) the comparison fails and the gradients are multiplied, as by clip_grad_norm_
    if not bool(max_norm / (total + 1e-6) >= 1.0):
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)


_COEFFICIENTS = (["phi", "a"], ["phi", "b"], ["phi", "b0"])  # last two parts of their parameter names


def _param_groups(sae: SAE, coefficient_lr_scale: float) -> list[dict[str, Any]]:
    """Adam's parameter groups: everything at ``lr``, and, when ``coefficient_lr_scale`` ≠ 1 and the SAE has a
    rational activation, its coefficients (a, b, b_0) in a second group at ``lr · coefficient_lr_scale``."""
    named = list(sae.named_parameters())
    coefficients = [p for name, p in named if name.split(".")[-2:] in _COEFFICIENTS]
    if coefficient_lr_scale == 1.0 or not coefficients:
        return [{"params": [p for _, p in named]}]
    ids = {id(p) for p in coefficients}
    return [{"params": [p for _, p in named if id(p) not in ids]},
            {"params": coefficients, "lr_scale": float(coefficient_lr_scale)}]


def _optimizer_state(file: Path, tensors: dict[str, Tensor], state: dict[str, Any], optimizer: Any) -> dict:
    """Rebuild Adam's state dict from the checkpoint, checking every key, shape and value against ``optimizer``."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    names = ("step", "exp_avg", "exp_avg_sq")
    per_param: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        parts = key.split(".")
        if len(parts) != 3 or parts[0] != "state" or not parts[1].isdigit() or parts[2] not in names:
            raise SAEFileError(f"{file} is damaged: unexpected tensor {key!r}")
        idx = int(parts[1])
        if idx >= len(params):
            raise SAEFileError(f"{file} is damaged: {key!r} refers to parameter {idx} of {len(params)}")
        shape = () if parts[2] == "step" else tuple(params[idx].shape)
        if tuple(value.shape) != shape or not value.is_floating_point():
            raise SAEFileError(f"{file} is damaged: {key!r} has shape {tuple(value.shape)}, expected {shape}")
        if not bool(torch.isfinite(value).all()):
            raise SAEFileError(f"{file}: {key!r} holds NaN or inf; resume from an earlier checkpoint")
        per_param.setdefault(idx, {})[parts[2]] = value
    for idx, entry in per_param.items():
        if set(entry) != set(names):
            raise SAEFileError(f"{file} is damaged: parameter {idx} has {sorted(entry)}, expected {list(names)}")
    groups = state["optimizer_param_groups"]
    reference = optimizer.state_dict()["param_groups"]
    if len(groups) != len(reference) or any(
        not isinstance(g, dict) or set(g) != set(r) or g["params"] != r["params"]
        for g, r in zip(groups, reference, strict=False)
    ):
        raise SAEFileError(f"{file.parent / 'trainer_state.json'} is damaged: optimizer_param_groups do not fit")
    try:
        for group in groups:
            group["betas"] = tuple(group["betas"])
    except TypeError as exc:
        raise SAEFileError(f"{file.parent / 'trainer_state.json'} is damaged: bad Adam betas") from exc
    return {"state": per_param, "param_groups": groups}
