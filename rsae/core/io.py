"""Save and load SAEs in the SAELens folder layout: ``cfg.json`` + ``sae_weights.safetensors``.

Tensors (SAELens names): ``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae], ``W_dec`` [d_sae, d_in], ``b_dec``
[d_in], and per family:


``cfg.json`` carries the SAELens keys (``architecture``, ``d_in``, ``d_sae``, ``dtype``, ``device``,
``apply_b_dec_to_input``, ``normalize_activations``, ``reshape_activations``, ``k``,
``rescale_acts_by_decoder_norm``) plus an ``rsae`` section with the full :class:`rsae.core.config.SAEConfig`
(a rational SAE needs it: gate, type, per-latent scales). A top-level key that disagrees with the section is
refused.

Folders written by SAELens (no ``rsae`` section) load when every ``cfg.json`` key that changes the forward
pass is understood; each is applied to the weights or the folder is refused (:data:`SAELENS_KEYS`):

* ``rescale_acts_by_decoder_norm: true`` (SAELens' TopK and BatchTopK training default; its trainer checkpoints
  keep the decoder norms n_j = ‖W_dec[j]‖ unfolded, the model being z = topk(h ⊙ n), x̂ = (z ⊘ n) W_dec + b_dec)
  is folded: b_enc ← b_enc ⊙ n, W_enc[:, j] ← n_j W_enc[:, j], W_dec[j] ← W_dec[j] / n_j (n clamped at 1e-8
  as SAELens does), which gives the same codes and reconstruction with unit decoder rows;
* SAELens' BatchTopK training checkpoints (architecture ``batchtopk`` or ``matryoshka_batchtopk``, tensor
  ``topk_threshold`` []) load as ``batchtopk`` with that threshold on every latent, the model SAELens'
  ``save_inference_model`` makes of them; older JumpReLU checkpoints with ``log_threshold`` load with
  θ = exp(log θ);
* ``normalize_activations: expected_average_only_in`` in a trainer checkpoint is folded with the scaling
  factor s of the checkpoint's ``activation_scaler.json`` (W_enc ← s W_enc, W_dec ← W_dec / s,
  b_dec ← b_dec / s, a BatchTopK threshold with rescaled activations ← θ / s: SAELens'
  ``fold_activation_norm_scaling_factor``); without that file, and for the run-time normalisations
  (``constant_norm_rescale``, ``layer_norm``, ``covariance_whitening``) the folder is refused;
* JumpReLU thresholds θ_j ≤ 0 (SAELens starts them at 0) gate like θ_j = 0, since SAELens computes
  relu(h) · 1[h > θ]; they are stored as the smallest positive normal number of the dtype, so the gate differs
  from h > 0 only for subnormal h.

Loading reads the safetensors header first and checks the four main tensors against ``d_in``/``d_sae`` before
anything is allocated, then validates the tensor keys (missing and unexpected ones), shapes, dtypes (floating
point only) and values (finite; thresholds and scales positive) and raises :class:`rsae.errors.SAEFileError`
saying what is wrong. Nothing is unpickled: weights are read with ``safetensors`` only.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from rsae.core.config import SAEConfig
from rsae.core.sae import SAE
from rsae.errors import ConfigError, SAEFileError

__all__ = [
    "ARCHITECTURES",
    "CFG_FILE",
    "SAELENS_INERT_KEYS",
    "SAELENS_KEYS",
    "WEIGHTS_FILE",
    "config_from_document",
    "load_sae",
    "read_cfg",
    "save_sae",
]

CFG_FILE = "cfg.json"
"""Name of the configuration file inside an SAE folder."""

WEIGHTS_FILE = "sae_weights.safetensors"
_EXACT_TENSORS = ("rational_a", "rational_b", "rational_b0")  # stored and loaded at their own precision
"""Name of the weights file inside an SAE folder."""

ARCHITECTURES: dict[str, str] = {
    "standard": "relu",
    "jumprelu": "jumprelu",
    "topk": "topk",
    "batchtopk": "batchtopk",
    "matryoshka_batchtopk": "batchtopk",
    "rational": "rational",
}
"""SAELens architecture name → rsae family of a folder without an ``rsae`` section (``batchtopk`` and
``matryoshka_batchtopk``: SAELens training checkpoints)."""

SAELENS_KEYS: dict[str, str] = {
    "architecture": "selects the family (ARCHITECTURES); others are refused",
    "d_in": "applied",
    "d_sae": "applied",
    "dtype": "applied (the weights are cast to it)",
    "k": "applied (topk, batchtopk; an integer)",
    "apply_b_dec_to_input": "applied",
    "rescale_acts_by_decoder_norm": "folded into the weights (default: true for batchtopk checkpoints, as SAELens)",
    "normalize_activations": "'none'; 'expected_average_only_in' folded from activation_scaler.json; else refused",
    "reshape_activations": "'none'; 'hook_z' refused (rsae encodes flat [..., d_in] vectors)",
    "activation_fn": "'relu' (pre-6.0 files); others refused",
    "finetuning_scaling_factor": "a 'scaling_factor' tensor of ones is dropped (as SAELens); others refused",
}
"""Every SAELens ``cfg.json`` key that changes the forward pass, and what :func:`load_sae` does with it."""

SAELENS_INERT_KEYS: dict[str, str] = {
    "device": "where SAELens puts the model",
    "metadata": "model, hook, dataset and training statistics",
    "decoder_init_norm": "initialisation",
    "use_sparse_activations": "a sparse matmul of the same codes",
    "aux_loss_coefficient": "loss",
    "l1_coefficient": "loss",
    "l1_warm_up_steps": "loss",
    "lp_norm": "loss",
    "l0_coefficient": "loss",
    "l0_warm_up_steps": "loss",
    "pre_act_loss_coefficient": "loss",
    "target_l0": "loss",
    "jumprelu_bandwidth": "threshold gradient",
    "jumprelu_init_threshold": "initialisation",
    "jumprelu_sparsity_loss_mode": "loss",
    "jumprelu_ste_to_input": "threshold gradient",
    "jumprelu_tanh_scale": "loss",
    "topk_threshold_lr": "threshold update in training",
    "matryoshka_widths": "loss (nested reconstructions)",
    "use_matryoshka_aux_loss": "loss",
}
"""SAELens ``cfg.json`` keys of the architectures rsae reads that do not change the model's outputs, and what they
set instead (``tests/rsae/test_saelens_interop.py`` checks that these two tables cover every field of SAELens'
configuration classes)."""

_FAMILY_TO_ARCHITECTURE = {
    "relu": "standard",
    "jumprelu": "jumprelu",
    "topk": "topk",
    "batchtopk": "jumprelu",
    "rational": "rational",
}
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_RSAE_FORMAT = "rsae-sae/1"
_SCALER_FILE = "activation_scaler.json"
_MAIN = ("W_enc", "b_enc", "W_dec", "b_dec")
_NORM_CLAMP = 1e-8  # SAELens' floor on decoder norms when folding them


@dataclasses.dataclass(frozen=True)
class _Conversion:
    """What turns the tensors of a SAELens folder into the rsae model (identity for rsae's own folders)."""

    fold_decoder_norm: bool = False
    scaling_factor: float | None = None
    threshold_from: str | None = None  # "topk_threshold" (one scalar for all latents) or "log_threshold"
    clamp_threshold: bool = False  # SAELens JumpReLU: θ ≤ 0 gates like θ = 0


def save_sae(sae: SAE, path: str | os.PathLike, *, extra_cfg: dict[str, Any] | None = None) -> Path:
    """Write ``sae`` to the folder ``path`` (created if needed) in the SAELens layout.

    Each file is written to a temporary name and moved into place (``os.replace``), weights first, so a crash
    never leaves a truncated file. SAELens' ``SAE.load_from_disk`` loads the folder for every family but
    ``rational`` (which needs ``import rsae.saelens``); ``batchtopk`` is written as SAELens writes it for
    inference, architecture ``jumprelu`` with its threshold.

    Parameters
    ----------
    sae : SAE
        The model (any family).
    path : path-like
        Destination folder.
    extra_cfg : dict, optional
        Additional SAELens-style metadata for ``cfg.json`` (``hook_name``, ``model_name``, ...).

    Returns
    -------
    Path
        The folder.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        "W_enc": sae.W_enc,
        "b_enc": sae.b_enc,
        "W_dec": sae.W_dec,
        "b_dec": sae.b_dec,
        **sae.activation.file_tensors(),
    }
    tensors = {
        # the rational's coefficients keep float64: float32 would perturb a (9, 8) gate fit far beyond its error
        name: t.detach().to(device="cpu", dtype=t.dtype if name in _EXACT_TENSORS else sae.dtype).contiguous().clone()
        for name, t in tensors.items()
    }
    cfg = sae.cfg
    document: dict[str, Any] = dict(extra_cfg or {})
    document.update(
        {
            "architecture": _FAMILY_TO_ARCHITECTURE[cfg.family],
            "d_in": cfg.d_in,
            "d_sae": cfg.d_sae,
            "dtype": str(sae.dtype).removeprefix("torch."),
            "device": "cpu",
            "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
            "normalize_activations": "none",
            "reshape_activations": "none",
            "rsae": {"format": _RSAE_FORMAT, "config": cfg.to_dict()},
        }
    )
    if cfg.needs_k:
        document["k"] = cfg.k
    if cfg.family == "topk":
        document["rescale_acts_by_decoder_norm"] = False
    tmp = folder / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, folder / WEIGHTS_FILE)
    tmp = folder / (CFG_FILE + ".tmp")
    tmp.write_text(json.dumps(document, indent=2), encoding="utf-8")
    os.replace(tmp, folder / CFG_FILE)
    return folder


def read_cfg(path: str | os.PathLike) -> SAEConfig:
    """Parse and validate ``cfg.json`` of an SAE folder into an :class:`SAEConfig` (no weights read)."""
    return _parse(Path(path))[0]


def _read_document(folder: Path) -> tuple[Path, dict[str, Any]]:
    if not folder.is_dir():
        raise SAEFileError(f"{folder} is not a folder; an SAE is a folder with {CFG_FILE} and {WEIGHTS_FILE}")
    file = folder / CFG_FILE
    if not file.is_file():
        raise SAEFileError(f"{file} is missing; an SAE folder needs {CFG_FILE} and {WEIGHTS_FILE}")
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SAEFileError(f"cannot parse {file}: {exc}") from exc
    if not isinstance(document, dict):
        raise SAEFileError(f"{file} must hold a JSON object, got {type(document).__name__}")
    return file, document


def config_from_document(document: dict[str, Any], source: str = CFG_FILE) -> SAEConfig:
    """The :class:`SAEConfig` of a parsed ``cfg.json`` ``document`` (what :func:`read_cfg` does after reading
    the file); ``source`` names it in error messages. Used by :mod:`rsae.saelens` on the dictionaries SAELens
    passes around. A SAELens folder's ``normalize_activations`` other than ``none`` is refused here, since its
    statistics live beside ``cfg.json``."""
    if not isinstance(document, dict):
        raise SAEFileError(f"{source} must hold a JSON object, got {type(document).__name__}")
    return _parse_document(Path(source), document, folder_has_scaler=False)[0]


def _parse(folder: Path) -> tuple[SAEConfig, _Conversion]:
    file, document = _read_document(folder)
    return _parse_document(file, document, folder_has_scaler=True)


def _parse_document(file: Path, document: dict[str, Any], folder_has_scaler: bool) -> tuple[SAEConfig, _Conversion]:
    arch = document.get("architecture", "standard")
    known = set(ARCHITECTURES) | set(_FAMILY_TO_ARCHITECTURE.values())
    if arch not in known:
        raise SAEFileError(f"{file}: unknown architecture {arch!r}; supported: {sorted(known)}")
    reshape = document.get("reshape_activations", "none")
    if reshape not in (None, "none"):
        raise SAEFileError(
            f"{file}: reshape_activations={reshape!r} is not supported; rsae encodes flat [..., d_in] vectors "
            "(flatten the heads yourself and load a copy of the folder with reshape_activations 'none')"
        )
    activation_fn = document.get("activation_fn", "relu")
    if activation_fn not in (None, "relu"):
        raise SAEFileError(f"{file}: activation_fn={activation_fn!r} (a pre-6.0 SAELens file) is not supported")
    try:
        if "rsae" in document:
            return _parse_rsae_section(file, document, arch), _Conversion()
        return _parse_saelens(file, document, arch, folder_has_scaler)
    except ConfigError as exc:
        raise SAEFileError(f"{file}: invalid configuration: {exc}") from exc


def _parse_rsae_section(file: Path, document: dict[str, Any], arch: str) -> SAEConfig:
    section = document["rsae"]
    if not isinstance(section, dict) or section.get("format") != _RSAE_FORMAT:
        raise SAEFileError(f"{file}: the 'rsae' section must have format {_RSAE_FORMAT!r}")
    cfg = SAEConfig.from_dict(section.get("config", {}))
    # Files of rsae <= 0.1 wrote batchtopk under its training architecture name.
    if arch not in (_FAMILY_TO_ARCHITECTURE[cfg.family], cfg.family):
        raise SAEFileError(f"{file}: architecture {arch!r} disagrees with rsae family {cfg.family!r}")
    _check_normalisation(file, document, folder_has_scaler=False)
    for key in ("d_in", "d_sae", "k", "apply_b_dec_to_input"):
        if key in document and document[key] != getattr(cfg, key):
            raise SAEFileError(
                f"{file}: {key} = {document[key]!r} disagrees with the rsae section ({getattr(cfg, key)!r})"
            )
    if document.get("rescale_acts_by_decoder_norm", False):
        raise SAEFileError(f"{file}: rescale_acts_by_decoder_norm is true but rsae files are written folded")
    if "dtype" in document:  # SAELens' .to(dtype) changes the top-level dtype, which the tensors follow
        cfg = cfg.replace(dtype=_dtype_name(file, document["dtype"]))
    return cfg


def _parse_saelens(
    file: Path, document: dict[str, Any], arch: str, folder_has_scaler: bool
) -> tuple[SAEConfig, _Conversion]:
    if arch == "rational":
        raise SAEFileError(f"{file}: a rational SAE needs the 'rsae' section (gate, type); it was lost")
    family = ARCHITECTURES[arch]
    training_checkpoint = arch in ("batchtopk", "matryoshka_batchtopk")
    rescale = document.get("rescale_acts_by_decoder_norm", training_checkpoint)
    if not isinstance(rescale, bool):
        raise SAEFileError(f"{file}: rescale_acts_by_decoder_norm must be true or false, got {rescale!r}")
    scaling_factor = _check_normalisation(file, document, folder_has_scaler)
    k = document.get("k")
    if family in ("topk", "batchtopk"):
        if isinstance(k, float) and k.is_integer():
            k = int(k)
        if not isinstance(k, int) or isinstance(k, bool):
            raise SAEFileError(f"{file}: architecture {arch!r} needs an integer k, got {k!r}")
    else:
        k = None
    apply_b_dec = document.get("apply_b_dec_to_input", True)
    if not isinstance(apply_b_dec, bool):
        raise SAEFileError(f"{file}: apply_b_dec_to_input must be true or false, got {apply_b_dec!r}")
    cfg = SAEConfig(
        d_in=document.get("d_in"),
        d_sae=document.get("d_sae"),
        family=family,
        k=k,
        apply_b_dec_to_input=apply_b_dec,
        dtype=_dtype_name(file, document.get("dtype", "float32")),
    )
    conversion = _Conversion(
        fold_decoder_norm=rescale and family in ("topk", "batchtopk"),
        scaling_factor=scaling_factor,
        threshold_from="topk_threshold" if training_checkpoint else None,
        clamp_threshold=family == "jumprelu",
    )
    if rescale and family not in ("topk", "batchtopk"):
        raise SAEFileError(f"{file}: rescale_acts_by_decoder_norm is a TopK setting, not one of {arch!r}")
    return cfg, conversion


def _dtype_name(file: Path, value: Any) -> str:
    name = str(value).removeprefix("torch.")
    if name not in ("float32", "float64", "bfloat16", "float16"):
        raise SAEFileError(f"{file}: dtype {value!r} is not a floating dtype rsae supports")
    return name


def _check_normalisation(file: Path, document: dict[str, Any], folder_has_scaler: bool) -> float | None:
    """The scaling factor to fold (``expected_average_only_in`` in a SAELens trainer checkpoint), else None."""
    normalisation = document.get("normalize_activations", "none")
    if normalisation in (None, "none", False):
        return None
    scaler = file.parent / _SCALER_FILE
    if normalisation in ("expected_average_only_in", True) and folder_has_scaler and scaler.is_file():
        try:
            factor = json.loads(scaler.read_text(encoding="utf-8")).get("scaling_factor")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError) as exc:
            raise SAEFileError(f"cannot parse {scaler}: {exc}") from exc
        if isinstance(factor, (int, float)) and not isinstance(factor, bool) and math.isfinite(factor) and factor > 0:
            return float(factor)
        raise SAEFileError(f"{scaler}: scaling_factor must be a positive number, got {factor!r}")
    raise SAEFileError(
        f"{file}: normalize_activations={normalisation!r} is not supported without its statistics; rsae models "
        f"take raw activations: fold the normalisation into the weights in SAELens "
        f"(fold_activation_norm_scaling_factor / fold_activation_whitening) and save again"
    )


def _header(file: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from the safetensors header (no tensor data read)."""
    if not file.is_file():
        raise SAEFileError(f"{file} is missing; an SAE folder needs {CFG_FILE} and {WEIGHTS_FILE}")
    try:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise SAEFileError(f"cannot read {file} as safetensors: {exc}") from exc


def _read_tensors(file: Path) -> dict[str, Tensor]:
    try:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise SAEFileError(f"cannot read {file} as safetensors: {exc}") from exc


def _check_main_shapes(file: Path, shapes: dict[str, tuple[int, ...]], cfg: SAEConfig) -> None:
    expected = {
        "W_enc": (cfg.d_in, cfg.d_sae),
        "b_enc": (cfg.d_sae,),
        "W_dec": (cfg.d_sae, cfg.d_in),
        "b_dec": (cfg.d_in,),
    }
    for name, shape in expected.items():
        if name not in shapes:
            raise SAEFileError(f"{file}: tensor {name!r} is missing")
        if shapes[name] != shape:
            raise SAEFileError(
                f"{file}: tensor {name!r} has shape {shapes[name]}, but cfg.json (d_in={cfg.d_in}, "
                f"d_sae={cfg.d_sae}) needs {shape}"
            )


def _convert(file: Path, tensors: dict[str, Tensor], conversion: _Conversion, d_sae: int) -> dict[str, Tensor]:
    """Apply a SAELens folder's settings to its tensors, in float64 (see the module docstring)."""
    tensors = dict(tensors)
    scaling = tensors.pop("scaling_factor", None)
    if scaling is not None and not bool((scaling == 1).all()):
        raise SAEFileError(
            f"{file}: a 'scaling_factor' tensor other than ones (finetuning_scaling_factor) is not supported"
        )
    if conversion.threshold_from == "topk_threshold":
        if "topk_threshold" not in tensors:
            raise SAEFileError(f"{file}: a SAELens BatchTopK checkpoint needs the tensor 'topk_threshold'")
        value = tensors.pop("topk_threshold")
        if value.numel() != 1:
            raise SAEFileError(f"{file}: 'topk_threshold' must hold one number, got shape {tuple(value.shape)}")
        tensors["threshold"] = value.reshape(()).expand(d_sae)
    if "log_threshold" in tensors and "threshold" not in tensors:
        tensors["threshold"] = tensors.pop("log_threshold").double().exp()
    if not (conversion.fold_decoder_norm or conversion.scaling_factor or conversion.clamp_threshold):
        return tensors
    dtype = {name: t.dtype for name, t in tensors.items()}
    work = {name: t.double() for name, t in tensors.items()}
    if conversion.scaling_factor is not None:
        s = conversion.scaling_factor
        work["W_enc"] = work["W_enc"] * s
        work["W_dec"] = work["W_dec"] / s
        work["b_dec"] = work["b_dec"] / s
        if conversion.fold_decoder_norm and "threshold" in work:
            work["threshold"] = work["threshold"] / s
    if conversion.fold_decoder_norm:
        norms = work["W_dec"].norm(dim=1).clamp_min(_NORM_CLAMP)
        work["b_enc"] = work["b_enc"] * norms
        work["W_enc"] = work["W_enc"] * norms
        work["W_dec"] = work["W_dec"] / norms[:, None]
    out = {name: work[name].to(dtype[name]) for name in work}
    if conversion.clamp_threshold and "threshold" in out:
        tiny = torch.finfo(out["threshold"].dtype).tiny
        out["threshold"] = out["threshold"].clamp_min(tiny)
    return out


def _check_tensors(
    file: Path, tensors: dict[str, Tensor], expected: dict[str, tuple[int, ...]], gate: str
) -> None:
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise SAEFileError(
            f"{file}: tensor keys do not match the architecture: missing {missing}, unexpected {extra}"
        )
    for name, shape in expected.items():
        tensor = tensors[name]
        if tensor.dtype not in _FLOAT_DTYPES:
            raise SAEFileError(f"{file}: tensor {name!r} has dtype {tensor.dtype}; expected a floating dtype")
        if tuple(tensor.shape) != tuple(shape):
            raise SAEFileError(
                f"{file}: tensor {name!r} has shape {tuple(tensor.shape)}, expected {tuple(shape)}"
            )
        if not bool(torch.isfinite(tensor).all()):
            raise SAEFileError(f"{file}: tensor {name!r} holds NaN or inf values")
    for name in ("rational_c_in", "rational_c_out", "rational_cutoff"):
        if name in tensors and not bool((tensors[name] > 0).all()):
            raise SAEFileError(f"{file}: {name!r} must be > 0 everywhere")
    if "threshold" in tensors:
        # JumpReLU thresholds are stored as logs in training, so they must be positive (a SAELens folder's
        # θ ≤ 0 were raised to the dtype's tiny number by _convert); a batch-top-k inference threshold may be 0.
        strict = gate == "jumprelu"
        bad = (tensors["threshold"] <= 0) if strict else (tensors["threshold"] < 0)
        if bool(bad.any()):
            raise SAEFileError(
                f"{file}: 'threshold' must be {'> 0' if strict else '>= 0'} everywhere "
                f"({int(bad.sum())} entries are not)"
            )


def load_sae(
    path: str | os.PathLike, *, device: str | torch.device = "cpu", dtype: torch.dtype | str | None = None
) -> SAE:
    """Load an SAE folder written by :func:`save_sae` or by SAELens, validated, in ``eval()`` mode.

    SAELens folders: those of ``save_model``, ``save_inference_model`` and its trainer's checkpoints, for the
    architectures of :data:`ARCHITECTURES`; the settings of :data:`SAELENS_KEYS` are applied (module
    docstring) so the model gives SAELens' codes and reconstructions.

    Parameters
    ----------
    path : path-like
        The folder with ``cfg.json`` and ``sae_weights.safetensors``.
    device : str or torch.device
        Where to put the model.
    dtype : torch.dtype or str, optional
        Parameter dtype (default: the one recorded in ``cfg.json``).

    Raises
    ------
    SAEFileError
        Missing or unparsable files, unknown architecture or unsupported setting, a top-level key that
        disagrees with the ``rsae`` section, wrong keys, shapes or dtypes, non-finite values.
    """
    folder = Path(path)
    cfg, conversion = _parse(folder)
    file = folder / WEIGHTS_FILE
    _check_main_shapes(file, _header(file), cfg)
    tensors = _convert(file, _read_tensors(file), conversion, cfg.d_sae)
    if dtype is not None:
        cfg = cfg.replace(dtype=str(dtype).removeprefix("torch."))
    cfg = cfg.replace(device=str(device))
    if cfg.family == "rational":
        m, n = cfg.rational_type
        a, b = tensors.get("rational_a"), tensors.get("rational_b")
        lead = (cfg.d_sae,) if cfg.rational_per_latent_coefficients else ()
        if a is None or b is None or a.shape != (*lead, m + 1) or b.shape != (*lead, n):
            what = "per-latent coefficients " if lead else ""
            rows = f"{cfg.d_sae}, " if lead else ""
            raise SAEFileError(
                f"{file}: a rational SAE of type {cfg.rational_type} with {what}needs "
                f"'rational_a' [{rows}{m + 1}] and 'rational_b' [{rows}{n}]"
                + ("" if a is None or b is None else f"; got {list(a.shape)} and {list(b.shape)}")
            )
        # Files written before the free constant b_0 existed hold the form with b_0 = 0.
        tensors.setdefault("rational_b0", torch.zeros(lead, dtype=a.dtype))
        if not lead:
            # The stored coefficients become the config's initial ones, so no fit is needed to rebuild the model.
            cfg = cfg.replace(
                rational_a=tuple(float(v) for v in a.double()), rational_b=tuple(float(v) for v in b.double()),
                rational_b0=float(tensors["rational_b0"].double()),
            )
        elif cfg.rational_a is None or cfg.rational_b is None:
            # per latent: the config keeps the shared initial rational it recorded; without one, latent 0's
            # stored rational stands in (the file tensors set every latent's own rational just below)
            cfg = cfg.replace(
                rational_a=tuple(float(v) for v in a[0].double()), rational_b=tuple(float(v) for v in b[0].double()),
                rational_b0=float(tensors["rational_b0"].reshape(-1)[0].double()),
            )
    sae = SAE(cfg)
    expected = {
        "W_enc": (cfg.d_in, cfg.d_sae),
        "b_enc": (cfg.d_sae,),
        "W_dec": (cfg.d_sae, cfg.d_in),
        "b_dec": (cfg.d_in,),
        **{name: tuple(t.shape) for name, t in sae.activation.file_tensors().items()},
    }
    _check_tensors(file, tensors, expected, cfg.gate)
    with torch.no_grad():
        for name in _MAIN:
            getattr(sae, name).copy_(tensors[name])
        extras = {  # rational coefficients keep their stored precision (the module holds them in float64)
            name: tensors[name] if name in _EXACT_TENSORS else tensors[name].to(sae.dtype)
            for name in expected
            if name not in _MAIN
        }
        sae.activation.load_file_tensors(extras)
    return sae.to(device).eval()
