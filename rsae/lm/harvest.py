r"""Harvest residual-stream activations of a language model into an activation store (:mod:`rsae.core.data`).

For each context of a :class:`rsae.lm.corpus.ContextSet` (fixed length C, seeded order) the model runs up to block L
only (a hook stops the forward pass), and the residual stream after block L — ``hidden_states[L + 1]``,
SAELens ``blocks.L.hook_resid_post`` — is written for positions ``drop_first`` … C − 1, context after context,
so the store holds C − ``drop_first`` tokens per context in context order. Token t of the store is therefore
position ``drop_first + t mod (C − drop_first)`` of context ``t div (C − drop_first)``, which makes resuming
exact: :func:`harvest` on a folder holding an interrupted store (same model, layer, text fingerprint, ...)
reopens it with :meth:`rsae.core.data.ActivationStore.resume` and continues after the last complete shard, skipping
the contexts — and the part of a context — already stored.

Memory is bounded by one batch of contexts plus one shard. Provenance is written into ``meta.json``: model,
layer, hidden-state index, context length, dropped positions, split, seed, text source and fingerprint, token
budget, package versions.

Example
-------
>>> from rsae.lm.harvest import harvest
>>> from rsae.lm.corpus import build_contexts, load_documents
>>> from rsae.lm.loading import load_language_model
>>> lm = load_language_model()                                                       # doctest: +SKIP
>>> ctx = build_contexts(lm.tokenizer, load_documents(), split="train", seed=0)      # doctest: +SKIP
>>> harvest(lm, ctx, layer=15, store_path="acts/train", n_tokens=100_000)            # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from rsae.core.data import ActivationStore, StoreWriter
from rsae.errors import ConfigError, DataError
from rsae.lm.corpus import (
    DEFAULT_CONTEXT_LENGTH,
    DEFAULT_DROP_FIRST,
    DEFAULT_HELDOUT_FRACTION,
    ContextSet,
    build_contexts,
    corpus_description,
    load_documents,
)
from rsae.lm.hooks import DEFAULT_LAYER, check_layer, residual_stream
from rsae.lm.loading import LanguageModel

__all__ = ["HARVEST_FORMAT", "OUTLIER_RATIO", "HarvestResult", "harvest", "harvest_splits"]

HARVEST_FORMAT = "rsae-harvest/1"
"""``meta.json["harvest_format"]`` of stores written here (provenance layout version)."""

OUTLIER_RATIO = 10.0
"""A harvested token whose residual norm exceeds this multiple of its batch's median norm counts as an outlier
(attention-sink-like); :func:`harvest` warns if any are found."""

_FLOAT16_MAX = float(np.finfo(np.float16).max)
# Provenance keys that must agree before an interrupted store is resumed.
_RESUME_KEYS = (
    "harvest_format",
    "model",
    "layer",
    "context_length",
    "drop_first",
    "split",
    "seed",
    "text_fingerprint",
    "n_tokens_requested",
)


class HarvestResult(NamedTuple):
    """What one :func:`harvest` call did."""

    path: Path
    """The store folder."""
    n_tokens: int
    """Tokens in the store at the end (= the requested number)."""
    n_new_tokens: int
    """Tokens computed by this call (fewer than ``n_tokens`` after a resume)."""
    n_contexts: int
    """Contexts the store's tokens come from (the last one possibly partial)."""
    seconds: float
    """Wall time of the forward passes and writes of this call."""
    tokens_per_second: float
    """n_new_tokens / seconds (NaN if nothing was computed)."""
    resumed: bool
    """Whether an interrupted store was continued."""
    n_outliers: int
    """Tokens of this call whose norm exceeds :data:`OUTLIER_RATIO` × their batch's median norm (sink-like)."""


def _provenance(lm: LanguageModel, contexts: ContextSet, layer: int, drop_first: int, n_tokens: int) -> dict:
    import transformers

    return {
        "harvest_format": HARVEST_FORMAT,
        "model": lm.name,
        "model_source": lm.source,
        "layer": layer,
        "hook": f"blocks.{layer}.hook_resid_post",
        "hidden_states_index": layer + 1,
        "context_length": contexts.context_length,
        "drop_first": drop_first,
        "tokens_per_context": contexts.context_length - drop_first,
        "split": contexts.split,
        "seed": contexts.seed,
        "text_fingerprint": contexts.fingerprint(),
        "n_contexts_available": len(contexts.input_ids),
        "n_tokens_requested": n_tokens,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }


def _open_writer(
    path: Path, provenance: dict[str, Any], d_in: int, dtype: str, shard_tokens: int
) -> tuple[StoreWriter | None, int, bool]:
    """(writer or None if already complete, tokens already stored, resumed?)."""
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        return ActivationStore.create(path, d_in, dtype, provenance, shard_tokens), 0, False
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {meta_file} ({exc}); delete the folder or pick another --out") from exc
    wanted = {**{k: provenance[k] for k in _RESUME_KEYS}, "d_in": d_in, "dtype": dtype}
    differing = {k: (meta.get(k), v) for k, v in wanted.items() if meta.get(k) != v}
    if differing:
        detail = "; ".join(f"{k}: stored {old!r}, asked {new!r}" for k, (old, new) in differing.items())
        raise DataError(
            f"{path} holds a different harvest ({detail}); rerun with the original settings to resume it, "
            "or pick a new output folder"
        )
    if meta.get("complete"):
        return None, int(meta["n_tokens"]), True
    writer = ActivationStore.resume(path)
    return writer, writer.n_tokens, True


def harvest(
    lm: LanguageModel,
    contexts: ContextSet,
    layer: int,
    store_path: str | os.PathLike[str],
    *,
    n_tokens: int | None = None,
    drop_first: int = DEFAULT_DROP_FIRST,
    batch_size: int = 8,
    dtype: str = "float32",
    shard_tokens: int = 65536,
    meta: dict[str, Any] | None = None,
    progress: bool = True,
) -> HarvestResult:
    """Write the residual stream after block ``layer`` for ``n_tokens`` tokens of ``contexts`` to a store.

    Parameters
    ----------
    lm : LanguageModel
        From :func:`rsae.lm.loading.load_language_model`.
    contexts : ContextSet
        Token windows in harvesting order (:func:`rsae.lm.corpus.build_contexts`).
    layer : int
        Block index L; the stored vector is the output of block L (``hidden_states[L + 1]``).
    store_path : path
        Store folder: created if absent or empty; resumed if it holds an interrupted harvest with the same
        settings; left as is if it holds the same harvest complete.
    n_tokens : int, optional
        Tokens to store (default: every token the contexts offer, i.e. n_contexts · (C − drop_first)).
    drop_first : int
        Leading positions of each context not stored (attention sinks).
    batch_size : int
        Contexts per forward pass.
    dtype : {"float32", "float16"}
        Storage dtype (computation is float32). float16 raises if a value exceeds its range.
    shard_tokens : int
        Tokens per shard (also the resume granularity).
    meta : dict, optional
        Extra provenance for ``meta.json`` (e.g. ``{"text": ...}``).
    progress : bool
        tqdm progress bar (tokens) on stderr.

    Raises
    ------
    ConfigError
        Bad layer, drop_first, batch size or token count.
    DataError
        The contexts offer fewer tokens than asked, the folder holds a different harvest, or float16 overflow.
    """
    context_length = contexts.context_length
    if not 0 <= drop_first < context_length:
        raise ConfigError(f"drop_first must lie in [0, {context_length - 1}], got {drop_first}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    per_context = context_length - drop_first
    available = len(contexts.input_ids) * per_context
    target = available if n_tokens is None else n_tokens
    if target < 1:
        raise ConfigError(f"n_tokens must be positive, got {n_tokens}")
    if target > available:
        raise DataError(
            f"the {contexts.split!r} split offers {available} tokens ({len(contexts.input_ids)} contexts × "
            f"{per_context} kept positions); ask for at most that many, or add text (--text)"
        )
    provenance = _provenance(lm, contexts, layer, drop_first, target)
    provenance.update(meta or {})
    path = Path(store_path)
    check_layer(lm, layer)  # before touching the folder
    writer, stored, resumed = _open_writer(path, provenance, lm.d_model, dtype, shard_tokens)
    n_contexts = -(-target // per_context)
    if writer is None:
        if stored != target:
            raise DataError(f"{path} is a complete store of {stored} tokens, not {target}; pick a new folder")
        return HarvestResult(path, stored, 0, n_contexts, 0.0, float("nan"), resumed, 0)

    start = time.perf_counter()
    written = stored
    outliers = 0
    first_context, skip = divmod(stored, per_context)
    bar = tqdm(
        total=target,
        initial=stored,
        unit="tok",
        desc=f"harvest {contexts.split}",
        disable=not progress,
        file=sys.stderr,
    )
    try:
        for c in range(first_context, n_contexts, batch_size):
            ids = contexts.input_ids[c : min(c + batch_size, n_contexts)]
            acts = residual_stream(lm, ids, layer)[:, drop_first:].reshape(-1, lm.d_model)
            rows = acts[skip : skip + target - written].float().cpu().numpy()
            skip = 0
            if dtype == "float16" and np.abs(rows).max() > _FLOAT16_MAX:
                raise DataError(
                    f"an activation exceeds the float16 range ({np.abs(rows).max():.3g} > {_FLOAT16_MAX:.0f})"
                    " at this layer; harvest with dtype='float32' (--dtype float32)"
                )
            norms = np.linalg.norm(rows, axis=1)
            outliers += int((norms > OUTLIER_RATIO * np.median(norms)).sum())
            writer.append(rows)
            written += len(rows)
            bar.update(len(rows))
        writer.close()
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    new = written - stored
    if outliers:
        warnings.warn(
            f"{outliers} of {new} harvested tokens have a residual norm above {OUTLIER_RATIO:g}× their batch "
            "median; such vectors dominate squared-error losses. If they are attention sinks near the start of "
            f"contexts, harvest again into a new folder with a larger --drop-first (now {drop_first}); early "
            "blocks also give a few frequent tokens massive norms (SmolLM2 block 2: ' the', ' '), which a later "
            "layer avoids",
            RuntimeWarning,
            stacklevel=2,
        )
    rate = new / seconds if new else float("nan")
    return HarvestResult(path, written, new, n_contexts, seconds, rate, resumed, outliers)


def harvest_splits(
    lm: LanguageModel,
    out: str | os.PathLike[str],
    *,
    layer: int = DEFAULT_LAYER,
    n_tokens: int | None = None,
    heldout_tokens: int | None = None,
    context_length: int = DEFAULT_CONTEXT_LENGTH,
    drop_first: int = DEFAULT_DROP_FIRST,
    text: list[str] | None = None,
    corpus: str = "pydoc",
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
    seed: int = 0,
    batch_size: int = 8,
    dtype: str = "float32",
    shard_tokens: int = 65536,
    progress: bool = True,
) -> dict[str, HarvestResult]:
    """Harvest the ``train`` split into ``out/train`` and the ``heldout`` split into ``out/heldout``.

    ``n_tokens`` defaults to the whole train split; ``heldout_tokens`` to a tenth of the train tokens, capped
    at what the held-out split offers. Other parameters as in :func:`harvest` and
    :func:`rsae.lm.corpus.build_contexts`; ``text`` and ``corpus`` (the embedded corpus used when ``text`` is
    empty) as in :func:`rsae.lm.corpus.load_documents`.
    """
    documents = load_documents(text, corpus=corpus)
    source = {"text": [str(p) for p in text] if text else corpus_description(None, corpus)}
    results = {}
    budget = {"train": n_tokens, "heldout": heldout_tokens}
    for split in ("train", "heldout"):
        contexts = build_contexts(
            lm.tokenizer,
            documents,
            context_length=context_length,
            split=split,
            heldout_fraction=heldout_fraction,
            seed=seed,
        )
        wanted = budget[split]
        if split == "heldout" and wanted is None:
            available = len(contexts.input_ids) * (context_length - drop_first)
            wanted = min(max(results["train"].n_tokens // 10, 1), available)
        results[split] = harvest(
            lm,
            contexts,
            layer,
            Path(out) / split,
            n_tokens=wanted,
            drop_first=drop_first,
            batch_size=batch_size,
            dtype=dtype,
            shard_tokens=shard_tokens,
            meta={**source, "heldout_fraction": heldout_fraction},
            progress=progress,
        )
    return results
