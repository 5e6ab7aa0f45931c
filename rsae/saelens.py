r"""SAELens plug-in: after ``import rsae.saelens``, SAELens' ``SAE.load_from_disk`` loads rational SAE folders.

SAELens (``sae-lens``, the ``saelens`` extra) finds an architecture's classes in a registry filled by
``register_sae_class``. This module registers the architecture ``rational`` with :class:`RationalSAE`, an
inference SAE in SAELens' conventions whose activation is rsae's own :class:`rsae.core.activations.Rational`
built from the folder's ``rsae`` section, so both libraries compute

.. math:: h = (x - b_\text{dec}) W_\text{enc} + b_\text{enc},\qquad
          z = \mathbb{1}[\text{gate}(h)]\,C_\text{out}\, r(h / C_\text{in}),\qquad
          \hat x = z W_\text{dec} + b_\text{dec}

with the same code. The tensors are those of :meth:`~rsae.core.activations.Rational.file_tensors`, converted
to and from the activation's parameters by that class alone, so a new parameter of the rational (a free
constant b₀, say) needs no change here. ``save_model`` of a :class:`RationalSAE` writes a folder
:func:`rsae.core.io.load_sae` reads, ``rsae`` section included. Nothing else in rsae imports this module, so
rsae does not need SAELens.

Also here: :func:`measure_interop`, which writes every family through every SAELens save path and loads it on
the other side, the measurement behind the table of docs/rsae.md ("SAELens interop").

Example
-------
>>> import rsae.saelens  # doctest: +SKIP
>>> from sae_lens import SAE  # doctest: +SKIP
>>> sae = SAE.load_from_disk("runs/upgrade/rsae")  # a RationalSAE  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

import sae_lens
import torch
from sae_lens import SAE as SAELensSAE
from sae_lens import SAEConfig as SAELensConfig
from sae_lens.registry import get_sae_class
from torch import Tensor, nn

from rsae.core.activations import make_activation
from rsae.core.config import SAEConfig
from rsae.core.io import config_from_document, load_sae, save_sae
from rsae.core.sae import SAE
from rsae.errors import ConfigError, SAEFileError

__all__ = [
    "ARCHITECTURE",
    "RationalSAE",
    "RationalSAEConfig",
    "interop_markdown",
    "measure_interop",
    "register",
    "saelens_checkpoint",
]

ARCHITECTURE = "rational"
"""The SAELens architecture name of rational SAE folders (see :mod:`rsae.core.io`)."""

_PREFIX = "rational."  # where the rsae activation's state lives in the SAELens module


@dataclasses.dataclass
class RationalSAEConfig(SAELensConfig):
    """SAELens configuration of a rational SAE: SAELens' fields plus the folder's ``rsae`` section."""

    rsae: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The ``rsae`` section of ``cfg.json``: ``{"format": ..., "config": SAEConfig.to_dict()}``."""

    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE

    def rsae_config(self) -> SAEConfig:
        """The rsae :class:`SAEConfig`, checked against the SAELens fields like :func:`rsae.core.io.read_cfg`."""
        document = {key: value for key, value in self.to_dict().items() if key not in ("metadata", "device")}
        return config_from_document(document, source="RationalSAEConfig")


class RationalSAE(SAELensSAE[RationalSAEConfig]):
    """Inference-only SAELens SAE with rsae's rational activation (any gate).

    The activation stays in inference mode whatever ``train()`` is called with (a BatchTopK gate uses its
    threshold, as SAELens' own inference classes do). ``fold_W_dec_norm`` is refused: φ is not positively
    homogeneous, so decoder norms cannot move into the encoder."""

    b_enc: nn.Parameter

    def initialize_weights(self) -> None:
        super().initialize_weights()
        self.b_enc = nn.Parameter(torch.zeros(self.cfg.d_sae, dtype=self.dtype, device=self.device))
        self.rational = make_activation(self._rsae_config()).to(dtype=self.dtype, device=self.device).eval()

    def _rsae_config(self) -> SAEConfig:
        cfg = self.cfg.rsae_config()
        if cfg.family != "rational":
            raise ConfigError(f"RationalSAE needs an rsae section of family 'rational', got {cfg.family!r}")
        return cfg.replace(device="cpu")

    def train(self, mode: bool = True) -> RationalSAE:
        super().train(mode)
        self.rational.eval()
        return self

    def encode(self, x: Tensor) -> Tensor:
        """Codes z = 1[gate(h)] φ(h) of h = (x − b_dec) W_enc + b_enc, with SAELens' hooks."""
        sae_in = self.process_sae_in(x)
        hidden_pre = self.hook_sae_acts_pre(sae_in @ self.W_enc + self.b_enc)
        return self.hook_sae_acts_post(self.rational(hidden_pre))

    def decode(self, feature_acts: Tensor) -> Tensor:
        """x̂ = z W_dec + b_dec, with SAELens' hooks and output normalisation."""
        sae_out = self.hook_sae_recons(feature_acts @ self.W_dec + self.b_dec)
        sae_out = self.run_time_activation_norm_fn_out(sae_out)
        return self.reshape_fn_out(sae_out, self.d_head)

    def fold_W_dec_norm(self) -> None:
        raise NotImplementedError("a rational SAE cannot fold decoder norms: φ(c·h) ≠ c·φ(h)")

    def process_state_dict_for_loading(self, state_dict: dict[str, Any]) -> None:
        """File tensors (``rational_a``, ...) → the activation's parameters, through ``load_file_tensors``."""
        activation = make_activation(self._rsae_config()).to(torch.float64)
        names = list(activation.file_tensors())
        missing = [name for name in names if name not in state_dict]
        if missing:
            raise SAEFileError(f"a rational SAE file needs the tensors {names}; missing {missing}")
        activation.load_file_tensors({name: state_dict.pop(name).to("cpu", torch.float64) for name in names})
        for name, value in activation.state_dict().items():
            state_dict[_PREFIX + name] = value.to(self.dtype) if value.is_floating_point() else value

    def process_state_dict_for_saving(self, state_dict: dict[str, Any]) -> None:
        """The activation's parameters → file tensors, through ``file_tensors``."""
        for name in [name for name in state_dict if name.startswith(_PREFIX)]:
            del state_dict[name]
        tensors = self.rational.file_tensors()
        state_dict.update({name: t.detach().clone().contiguous() for name, t in tensors.items()})


def register() -> None:
    """Register :class:`RationalSAE` under ``rational`` with SAELens (done on import; idempotent)."""
    try:
        registered = get_sae_class(ARCHITECTURE)[0]
    except KeyError:
        sae_lens.register_sae_class(ARCHITECTURE, RationalSAE, RationalSAEConfig)
        return
    if registered is not RationalSAE:
        raise ConfigError(f"SAELens already has another class for architecture {ARCHITECTURE!r}: {registered}")


register()

# ---------------------------------------------------------------------------------------------------------------
# Measurement: every family through every SAELens save path, both directions.

FAMILIES: dict[str, dict[str, Any]] = {
    "relu": {"family": "relu"},
    "jumprelu": {"family": "jumprelu"},
    "topk": {"family": "topk", "k": 3},
    "batchtopk": {"family": "batchtopk", "k": 3},
    "rational-relu": {"family": "rational", "rational_gate": "relu"},
    "rational-jumprelu": {"family": "rational", "rational_gate": "jumprelu", "rational_per_latent_scales": True},
    "rational-topk": {"family": "rational", "rational_gate": "topk", "k": 3},
    "rational-batchtopk": {"family": "rational", "rational_gate": "batchtopk", "k": 3},
    "rational-cutoff": {"family": "rational", "rational_gate": "cutoff"},
}
"""The families and rational gates :func:`measure_interop` covers (tiny sizes: d_in 8, d_sae 16)."""

PATHS: tuple[str, ...] = ("SAE.save_model", "TrainingSAE.save_inference_model", "trainer checkpoint")
"""SAELens' ways to write an SAE folder: an inference SAE's ``save_model``, a training SAE's
``save_inference_model`` (SAELens' final output), and ``SAETrainer``'s checkpoints (``TrainingSAE.save_model``
plus the trainer's state; here also a mid-run checkpoint with ``normalize_activations:
expected_average_only_in``)."""

TOLERANCE = 1e-5
"""Largest accepted |Δ| between the two libraries' codes and reconstructions."""

_CHECKPOINT_ROWS = ("trainer checkpoint (final)", "trainer checkpoint (mid-run, expected_average_only_in)")
_NOTE_RATIONAL = "SAELens has no rational training class (the plug-in registers an inference class)"
_NOTE_RESUME = "rsae's trainer checkpoints are resume state; its trained models are written by save_sae"
_D_IN, _D_SAE = 8, 16
# Any coefficients do for interop; these are a rounded (3, 2) ReLU fit, so no solver runs here.
_A, _B = (0.02, 0.5, 1.6, 1.2), (0.0, 2.4)


def _rsae_model(name: str, seed: int) -> SAE:
    kwargs = dict(d_in=_D_IN, d_sae=_D_SAE, **FAMILIES[name])
    if kwargs["family"] == "rational":
        kwargs.update(rational_a=_A, rational_b=_B)
    sae = SAE.from_config(SAEConfig(**kwargs, threshold_init=0.2), seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in sae.parameters():
            param.add_(0.2 * torch.randn(param.shape, generator=generator, dtype=param.dtype))
    sae.train()
    sae(torch.randn(64, _D_IN, generator=generator))  # sets a batch-top-k inference threshold
    return sae.eval()


def _perturb_saelens(sae: SAELensSAE, seed: int) -> None:
    """Random weights, decoder rows of norms in [0.1, 2] and thresholds of both signs (SAELens allows θ ≤ 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sae.named_parameters():
            if name.startswith(_PREFIX):
                param.add_(0.2 * torch.randn(param.shape, generator=generator, dtype=param.dtype))
            elif name == "threshold":
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
                param[0] = 0.0
            else:
                param.copy_(torch.randn(param.shape, generator=generator, dtype=param.dtype) * 0.5)
        norms = 0.1 + 1.9 * torch.rand(sae.W_dec.shape[0], generator=generator, dtype=sae.W_dec.dtype)
        sae.W_dec.mul_((norms / sae.W_dec.norm(dim=1))[:, None])


def _compare(reference, candidate, x: Tensor) -> dict[str, Any]:
    """Codes and reconstructions of two models (SAELens or rsae, any mix) on ``x``."""
    with torch.no_grad():
        z_ref, z = reference.encode(x).double(), candidate.encode(x).double()
        x_ref, x_hat = reference.decode(reference.encode(x)).double(), candidate.decode(candidate.encode(x)).double()
    dz, dx = float((z_ref - z).abs().max()), float((x_ref - x_hat).abs().max())
    same_support = bool(torch.equal(z_ref != 0, z != 0))
    return {
        "max_abs_codes": dz,
        "max_abs_x_hat": dx,
        "same_support": same_support,
        "l0": float((z_ref != 0).sum(-1).double().mean()),
        "status": "ok" if same_support and max(dz, dx) <= TOLERANCE else "fail",
    }


def _record(family: str, path: str, direction: str, **fields: Any) -> dict[str, Any]:
    return {"family": family, "path": path, "direction": direction, **fields}


def _file_facts(folder: Path) -> dict[str, Any]:
    """What a SAELens folder asks of the reader: its architecture, whether decoder norms are unfolded, their
    range, and its smallest threshold (SAELens allows θ ≤ 0)."""
    from safetensors.torch import load_file

    cfg = json.loads((folder / "cfg.json").read_text())
    tensors = load_file(str(folder / "sae_weights.safetensors"))
    norms = tensors["W_dec"].double().norm(dim=1)
    threshold = tensors.get("threshold", tensors.get("topk_threshold"))
    return {
        "architecture": cfg.get("architecture"),
        "rescale_acts_by_decoder_norm": bool(cfg.get("rescale_acts_by_decoder_norm", False)),
        "normalize_activations": cfg.get("normalize_activations", "none"),
        "decoder_norm_range": [float(norms.min()), float(norms.max())],
        "min_threshold": None if threshold is None else float(threshold.min()),
    }


def _saelens_classes(family: str) -> tuple[Any, Any, Any, Any]:
    """(inference class, its config, training class, its config) of SAELens for an rsae family."""
    from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
    from sae_lens.saes.jumprelu_sae import (
        JumpReLUSAE,
        JumpReLUSAEConfig,
        JumpReLUTrainingSAE,
        JumpReLUTrainingSAEConfig,
    )
    from sae_lens.saes.standard_sae import (
        StandardSAE,
        StandardSAEConfig,
        StandardTrainingSAE,
        StandardTrainingSAEConfig,
    )
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig

    return {
        "relu": (StandardSAE, StandardSAEConfig, StandardTrainingSAE, StandardTrainingSAEConfig),
        "jumprelu": (JumpReLUSAE, JumpReLUSAEConfig, JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig),
        "topk": (TopKSAE, TopKSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig),
        "batchtopk": (None, None, BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig),
    }[family]


def _sizes(family: str) -> dict[str, Any]:
    return {"d_in": _D_IN, "d_sae": _D_SAE, **({"k": 3} if family in ("topk", "batchtopk") else {})}


def _saelens_inference_of(training: SAELensSAE, folder: Path) -> SAELensSAE:
    training.save_inference_model(folder)
    return SAELensSAE.load_from_disk(folder)


def saelens_checkpoint(family: str, folder: str | Path, normalize_activations: str = "none", seed: int = 0) -> Path:
    """Train a SAELens SAE of an rsae ``family`` (``relu``, ``jumprelu``, ``topk``, ``batchtopk``) for 6 steps of
    32 Gaussian inputs with SAELens' ``SAETrainer`` and its defaults (TopK and BatchTopK:
    ``rescale_acts_by_decoder_norm: true``) and return a checkpoint folder under ``folder``: the final one, or,
    when ``normalize_activations`` is not ``none``, the mid-run one, whose normalisation is not folded yet."""
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    _, _, training_cls, training_cfg = _saelens_classes(family)
    sae = training_cls(training_cfg(**_sizes(family), normalize_activations=normalize_activations))
    generator = torch.Generator().manual_seed(seed)

    def batches():
        while True:
            yield 3.0 * torch.randn(32, _D_IN, generator=generator) + 1.0

    steps, mid_run = 6, normalize_activations != "none"
    trainer_cfg = SAETrainerConfig(
        total_training_samples=32 * steps,
        train_batch_size_samples=32,
        lr=1e-2,
        lr_end=1e-2,
        checkpoint_path=str(folder),
        n_checkpoints=1 if mid_run else 0,
        save_final_checkpoint=not mid_run,
        n_batches_for_norm_estimate=4,
    )
    SAETrainer(trainer_cfg, sae, batches()).fit()
    (checkpoint,) = [path for path in Path(folder).iterdir() if path.is_dir()]
    return checkpoint


def _saelens_reference_of_checkpoint(checkpoint: Path, folder: Path) -> SAELensSAE:
    """SAELens' own inference model of a trainer checkpoint: load it, fold a pending normalisation as its
    trainer does at the end of a run, and ``save_inference_model``."""
    from sae_lens import TrainingSAE

    training = TrainingSAE.load_from_disk(checkpoint)
    scaler = json.loads((checkpoint / "activation_scaler.json").read_text())
    if scaler.get("scaling_factor") is not None:
        training.fold_activation_norm_scaling_factor(scaler["scaling_factor"])
    return _saelens_inference_of(training, folder)


def measure_interop(workdir: str | Path | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Write every family of :data:`FAMILIES` through every path of :data:`PATHS`, load it on the other side
    and compare codes and reconstructions on 256 Gaussian inputs.

    SAELens → rsae: a SAELens SAE (random weights, decoder norms in [0.1, 2], thresholds of both signs; or
    trained a few steps by ``SAETrainer``) written by the path, read by :func:`rsae.core.io.load_sae`, compared
    with SAELens' inference model of the same folder. rsae → SAELens: an rsae SAE written by
    :func:`rsae.core.io.save_sae`, loaded by SAELens (``SAE.load_from_disk`` for ``SAE.save_model``,
    ``TrainingSAE.load_from_disk`` for ``save_inference_model``), compared with the rsae model, written again by
    that SAELens path and read back by rsae, compared again (the larger |Δ| is kept).

    Returns
    -------
    list of dict
        One record per (family, path, direction): ``status`` (``ok``: same support and max |Δ| ≤
        :data:`TOLERANCE`; ``fail``; ``n/a`` with a ``note``), ``max_abs_codes``, ``max_abs_x_hat``,
        ``same_support``, ``l0`` (mean non-zeros per input).
    """
    from sae_lens import TrainingSAE

    # SAELens initialises its weights from the global generator: seed it, and leave the caller's state alone.
    with (
        torch.random.fork_rng(),
        tempfile.TemporaryDirectory() if workdir is None else contextlib.nullcontext(workdir) as tmp,
    ):
        torch.manual_seed(seed)
        root = Path(tmp)
        x = 2.0 * torch.randn(256, _D_IN, generator=torch.Generator().manual_seed(seed + 1))
        records: list[dict[str, Any]] = []
        counter = iter(range(10**6))

        def fresh() -> Path:
            return root / f"f{next(counter)}"

        for family in FAMILIES:
            rational = family.startswith("rational")
            # SAELens -> rsae
            for path in PATHS:
                if rational and path != "SAE.save_model":
                    records.append(
                        _record(
                            family,
                            path,
                            "saelens_to_rsae",
                            status="n/a",
                            note=_NOTE_RATIONAL,
                        )
                    )
                    continue
                if family == "batchtopk" and path == "SAE.save_model":
                    records.append(
                        _record(
                            family,
                            path,
                            "saelens_to_rsae",
                            status="n/a",
                            note="SAELens has no BatchTopK inference class; it saves BatchTopK as jumprelu",
                        )
                    )
                    continue
                if path == "SAE.save_model":
                    if rational:
                        source = fresh()
                        save_sae(_rsae_model(family, seed), source)
                        sae = SAELensSAE.load_from_disk(source)
                    else:
                        inference_cls, inference_cfg, _, _ = _saelens_classes(family)
                        extra = {"rescale_acts_by_decoder_norm": True} if family == "topk" else {}
                        sae = inference_cls(inference_cfg(**_sizes(family), **extra))
                    _perturb_saelens(sae, seed)
                    folder = fresh()
                    sae.save_model(folder)
                    reference = sae
                    records.append(
                        _record(
                            family,
                            path,
                            "saelens_to_rsae",
                            **_compare(reference, load_sae(folder), x),
                            **_file_facts(folder),
                        )
                    )
                elif path == "TrainingSAE.save_inference_model":
                    _, _, training_cls, training_cfg = _saelens_classes(family)
                    training = training_cls(training_cfg(**_sizes(family)))
                    _perturb_saelens(training, seed)
                    if family == "batchtopk":
                        training.topk_threshold = torch.tensor(0.7, dtype=torch.float64)
                    folder = fresh()
                    reference = _saelens_inference_of(training, folder)
                    records.append(
                        _record(
                            family,
                            path,
                            "saelens_to_rsae",
                            **_compare(reference, load_sae(folder), x),
                            **_file_facts(folder),
                        )
                    )
                else:
                    for label, normalise in zip(_CHECKPOINT_ROWS, (False, True)):
                        normalisation = "expected_average_only_in" if normalise else "none"
                        checkpoint = saelens_checkpoint(family, fresh(), normalisation, seed)
                        reference = _saelens_reference_of_checkpoint(checkpoint, fresh())
                        result = _compare(reference, load_sae(checkpoint), x)
                        records.append(_record(family, label, "saelens_to_rsae", **result, **_file_facts(checkpoint)))
            # rsae -> SAELens
            for path in PATHS:
                if path == "trainer checkpoint" and not rational:
                    for label in _CHECKPOINT_ROWS:
                        records.append(_record(family, label, "rsae_to_saelens", status="n/a", note=_NOTE_RESUME))
                    continue
                if rational and path != "SAE.save_model":
                    records.append(_record(family, path, "rsae_to_saelens", status="n/a", note=_NOTE_RATIONAL))
                    continue
                model = _rsae_model(family, seed)
                folder = fresh()
                save_sae(model, folder)
                if path == "SAE.save_model":
                    sae = SAELensSAE.load_from_disk(folder)
                    first = _compare(model, sae, x)
                    again = fresh()
                    sae.save_model(again)
                else:
                    sae = TrainingSAE.load_from_disk(folder)
                    sae.eval()
                    first = _compare(model, sae, x)
                    again = fresh()
                    sae.save_inference_model(again)
                second = _compare(model, load_sae(again), x)
                worst = max(
                    (first, second), key=lambda r: (r["status"] != "ok", r["max_abs_codes"], r["max_abs_x_hat"])
                )
                records.append(_record(family, path, "rsae_to_saelens", **worst))
        return records


def interop_markdown(records: list[dict[str, Any]]) -> str:
    """The table of docs/rsae.md: one row per (family, path), one column per direction; a cell is
    ``ok`` with the larger max |Δ| of codes and reconstructions, ``FAIL`` with it, or ``n/a``."""

    def cell(record: dict[str, Any] | None) -> str:
        if record is None or record["status"] == "n/a":
            return "n/a"
        worst = max(record["max_abs_codes"], record["max_abs_x_hat"])
        word = "ok" if record["status"] == "ok" else "FAIL"
        support = "" if record["same_support"] else ", support differs"
        return f"{word} ({worst:.1e}{support})"

    rows = ["| family | SAELens path | SAELens → rsae | rsae → SAELens |", "|---|---|---|---|"]
    keys: list[tuple[str, str]] = []
    for record in records:
        key = (record["family"], record["path"])
        if key not in keys:
            keys.append(key)
    index = {(r["family"], r["path"], r["direction"]): r for r in records}
    for family, path in keys:
        forward = index.get((family, path, "saelens_to_rsae"))
        backward = index.get((family, path, "rsae_to_saelens"))
        rows.append(f"| {family} | `{path}` | {cell(forward)} | {cell(backward)} |")
    notes = sorted({r["note"] for r in records if r.get("note")})
    return "\n".join(rows + [""] + [f"n/a: {note}." for note in notes]) + "\n"
