"""Save and load SAEs in the SAELens folder layout: ``cfg.json`` + ``sae_weights.safetensors``.

Tensors (SAELens names): ``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae], ``W_dec`` [d_sae, d_in], ``b_dec``
[d_in], and per architecture:

==============  ==========================================================================================
architecture    extra tensors
==============  ==========================================================================================
``standard``    none (ReLU)
``jumprelu``    ``threshold`` [d_sae], > 0
``topk``        none (``k`` in cfg.json)
``batchtopk``   ``threshold`` [d_sae], ≥ 0: the inference threshold (``k`` in cfg.json)
``rational``    ``rational_a`` [m+1], ``rational_b`` [n], ``rational_b0`` [] (absent = 0), ``rational_c_in``
                and ``rational_c_out`` ([] shared or [d_sae] per latent, > 0); plus the gate's tensor:
                ``threshold`` [d_sae] for the ``jumprelu`` and ``batchtopk`` gates, ``rational_cutoff`` [] (> 0)
                for the ``cutoff`` gate
==============  ==========================================================================================

``cfg.json`` carries the SAELens keys (``architecture``, ``d_in``, ``d_sae``, ``dtype``, ``device``,
``apply_b_dec_to_input``, ``normalize_activations``, ``k``) plus an ``rsae`` section with the full
:class:`rsae.core.config.SAEConfig` (a rational SAE needs it: gate, type, per-latent scales). Folders written by
SAELens (no ``rsae`` section) load for the four standard architectures.

Loading validates the JSON, the architecture, the tensor keys (missing and unexpected ones), shapes, dtypes
(floating point only) and values (finite; thresholds and scales positive) and raises
:class:`rsae.errors.SAEFileError` saying what is wrong. Nothing is unpickled: weights are read with
``safetensors`` only.
"""

from __future__ import annotations

import json
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

__all__ = ["ARCHITECTURES", "CFG_FILE", "WEIGHTS_FILE", "save_sae", "load_sae", "read_cfg"]

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
    "rational": "rational",
}
"""SAELens architecture name → rsae family."""

_FAMILY_TO_ARCHITECTURE = {family: arch for arch, family in ARCHITECTURES.items()}
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_RSAE_FORMAT = "rsae-sae/1"


def save_sae(sae: SAE, path: str | os.PathLike, *, extra_cfg: dict[str, Any] | None = None) -> Path:
    """Write ``sae`` to the folder ``path`` (created if needed) in the SAELens layout.

    Each file is written to a temporary name and moved into place (``os.replace``), weights first, so a crash
    never leaves a truncated file.

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
            "rsae": {"format": _RSAE_FORMAT, "config": cfg.to_dict()},
        }
    )
    if cfg.needs_k:
        document["k"] = cfg.k
    tmp = folder / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, folder / WEIGHTS_FILE)
    tmp = folder / (CFG_FILE + ".tmp")
    tmp.write_text(json.dumps(document, indent=2), encoding="utf-8")
    os.replace(tmp, folder / CFG_FILE)
    return folder


def read_cfg(path: str | os.PathLike) -> SAEConfig:
    """Parse and validate ``cfg.json`` of an SAE folder into an :class:`SAEConfig` (no weights read)."""
    folder = Path(path)
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
    arch = document.get("architecture", "standard")
    if arch not in ARCHITECTURES:
        raise SAEFileError(f"{file}: unknown architecture {arch!r}; supported: {sorted(ARCHITECTURES)}")
    normalization = document.get("normalize_activations", "none")
    if normalization not in (None, "none"):
        raise SAEFileError(
            f"{file}: normalize_activations={normalization!r} is not supported; only 'none' "
            "(normalise the activations yourself before encoding)"
        )
    try:
        if "rsae" in document:
            section = document["rsae"]
            if not isinstance(section, dict) or section.get("format") != _RSAE_FORMAT:
                raise SAEFileError(f"{file}: the 'rsae' section must have format {_RSAE_FORMAT!r}")
            cfg = SAEConfig.from_dict(section.get("config", {}))
            if cfg.family != ARCHITECTURES[arch]:
                raise SAEFileError(f"{file}: architecture {arch!r} disagrees with rsae family {cfg.family!r}")
            for key in ("d_in", "d_sae"):
                if key in document and document[key] != getattr(cfg, key):
                    raise SAEFileError(
                        f"{file}: {key} = {document[key]!r} disagrees with the rsae section "
                        f"({getattr(cfg, key)})"
                    )
            return cfg
        if arch == "rational":
            raise SAEFileError(f"{file}: a rational SAE needs the 'rsae' section (gate, type); it was lost")
        k = document.get("k")
        if isinstance(k, float) and k.is_integer():
            k = int(k)
        dtype = str(document.get("dtype", "float32")).removeprefix("torch.")
        return SAEConfig(
            d_in=document.get("d_in"),
            d_sae=document.get("d_sae"),
            family=ARCHITECTURES[arch],
            k=k if ARCHITECTURES[arch] in ("topk", "batchtopk") else None,
            apply_b_dec_to_input=bool(document.get("apply_b_dec_to_input", True)),
            dtype=dtype,
        )
    except ConfigError as exc:
        raise SAEFileError(f"{file}: invalid configuration: {exc}") from exc


def _read_tensors(file: Path) -> dict[str, Tensor]:
    if not file.is_file():
        raise SAEFileError(f"{file} is missing; an SAE folder needs {CFG_FILE} and {WEIGHTS_FILE}")
    try:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise SAEFileError(f"cannot read {file} as safetensors: {exc}") from exc


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
        # JumpReLU thresholds are stored as logs in training, so they must be positive; a batch-top-k
        # inference threshold may be 0 (plain ReLU support).
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
        Missing or unparsable files, unknown architecture, wrong keys, shapes or dtypes, non-finite values.
    """
    folder = Path(path)
    cfg = read_cfg(folder)
    file = folder / WEIGHTS_FILE
    tensors = _read_tensors(file)
    if dtype is not None:
        cfg = cfg.replace(dtype=str(dtype).removeprefix("torch."))
    cfg = cfg.replace(device=str(device))
    if cfg.family == "rational":
        m, n = cfg.rational_type
        a, b = tensors.get("rational_a"), tensors.get("rational_b")
        if a is None or b is None or a.shape != (m + 1,) or b.shape != (n,):
            raise SAEFileError(
                f"{file}: a rational SAE of type {cfg.rational_type} needs "
                f"'rational_a' [{m + 1}] and 'rational_b' [{n}]"
            )
        # Files written before the free constant b_0 existed hold the form with b_0 = 0.
        tensors.setdefault("rational_b0", torch.zeros((), dtype=a.dtype))
        # The stored coefficients become the config's initial ones, so no fit is needed to rebuild the model.
        cfg = cfg.replace(
            rational_a=tuple(float(v) for v in a.double()), rational_b=tuple(float(v) for v in b.double()),
            rational_b0=float(tensors["rational_b0"].double()),
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
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            getattr(sae, name).copy_(tensors[name])
        extras = {  # rational coefficients keep their stored precision (the module holds them in float64)
            name: tensors[name] if name in _EXACT_TENSORS else tensors[name].to(sae.dtype)
            for name in expected
            if name not in ("W_enc", "b_enc", "W_dec", "b_dec")
        }
        sae.activation.load_file_tensors(extras)
    return sae.to(device).eval()
