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
budget, package versions (and ``autocast`` when the forward passes ran under ``torch.autocast``).

Several layers: :func:`harvest_layers` writes one store per layer (``out/layer-L``) from a single forward pass
per batch that stops after the deepest layer; each store equals what :func:`harvest` writes for its layer.

Several processes: under a ``torch.distributed`` process group of W > 1 processes (``torchrun``), the contexts
the store needs are cut into W contiguous blocks; process r harvests block r into its own shards
(``shard_rank0000r_*.npy``, header ``meta.rank0000r.json``) of the one store folder, and after a barrier rank 0
writes the single ``meta.json`` listing the shards in rank order (:meth:`rsae.core.data.ActivationStore.merge_ranks`).
The merged store is token for token the single-process store. An interrupted distributed harvest resumes under
torchrun with the same number of processes, each part from its own last complete shard.

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from rsae.core.data import ActivationStore, StoreWriter
from rsae.core.distributed import all_reduce_, barrier, world
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
from rsae.lm.hooks import DEFAULT_LAYER, autocast_context, check_layer, residual_streams
from rsae.lm.loading import LanguageModel

__all__ = [
    "HARVEST_FORMAT",
    "OUTLIER_RATIO",
    "HarvestResult",
    "harvest",
    "harvest_layers",
    "harvest_splits",
    "layer_folder",
]

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
    "autocast",
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


def _provenance(
    lm: LanguageModel, contexts: ContextSet, layer: int, drop_first: int, n_tokens: int, autocast: str | None
) -> dict:
    import transformers

    provenance = {
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
    if autocast is not None:  # absent for float32 computation: single-layer stores keep their exact old meta
        provenance["autocast"] = autocast
    return provenance


def _mismatch(path: Path, meta: dict[str, Any], wanted: dict[str, Any]) -> None:
    differing = {k: (meta.get(k), v) for k, v in wanted.items() if meta.get(k) != v}
    if differing:
        detail = "; ".join(f"{k}: stored {old!r}, asked {new!r}" for k, (old, new) in differing.items())
        raise DataError(
            f"{path} holds a different harvest ({detail}); rerun with the original settings to resume it, "
            "or pick a new output folder"
        )


def _read_json(file: Path) -> dict[str, Any]:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {file} ({exc}); delete the folder or pick another --out") from exc


def _open_writer(
    path: Path,
    provenance: dict[str, Any],
    d_in: int,
    dtype: str,
    shard_tokens: int,
    rank: tuple[int, int] | None = None,
) -> tuple[StoreWriter | None, int, bool]:
    """(writer or None if already complete, tokens already stored by this process, resumed?).

    ``rank=(r, W)``: process r's part of a store written by W processes (:mod:`rsae.core.data`).
    """
    wanted = {**{k: provenance.get(k) for k in _RESUME_KEYS}, "d_in": d_in, "dtype": dtype}
    meta_file = path / "meta.json"
    if meta_file.is_file():
        meta = _read_json(meta_file)
        _mismatch(path, meta, wanted)
        if meta.get("complete"):
            return None, int(meta["n_tokens"]), True
        if rank is not None:
            raise DataError(
                f"{path} holds an interrupted single-process harvest; resume it with one process "
                "(without torchrun), or pick a new output folder"
            )
        writer = ActivationStore.resume(path)
        return writer, writer.n_tokens, True
    if rank is None:
        if path.is_dir() and any(path.glob("meta.rank*.json")):
            raise DataError(
                f"{path} holds an interrupted distributed harvest (meta.rank*.json); resume it under torchrun "
                "with the same number of processes, or pick a new output folder"
            )
        return ActivationStore.create(path, d_in, dtype, provenance, shard_tokens), 0, False
    part_file = path / f"meta.rank{rank[0]:05d}.json"
    if not part_file.is_file():
        others = sorted(path.glob("meta.rank*.json")) if path.is_dir() else []
        for other in others:  # a part written with another world size would not tile the token range
            part = _read_json(other).get("rank_part", {})
            if part.get("world_size") != rank[1]:
                raise DataError(
                    f"{path} holds parts of a harvest by {part.get('world_size')} processes; resume it with "
                    f"that many (now {rank[1]}), or pick a new output folder"
                )
        return ActivationStore.create(path, d_in, dtype, provenance, shard_tokens, rank=rank), 0, False
    meta = _read_json(part_file)
    _mismatch(path, meta, {**wanted, "rank_part": {"rank": rank[0], "world_size": rank[1]}})
    if meta.get("complete"):
        return None, int(meta["n_tokens"]), True
    writer = ActivationStore.resume(path, rank=rank)
    return writer, writer.n_tokens, True


class _Store:
    """One layer's store during a harvest: its writer and how far this process's token range is written."""

    def __init__(self, layer: int, path: Path, writer: StoreWriter | None, written: int, resumed: bool) -> None:
        self.layer, self.path, self.writer, self.written, self.resumed = layer, path, writer, written, resumed
        self.stored = written  # already there before this call
        self.outliers = 0


def _batch_rows(stream: Tensor, drop_first: int, lo: int, hi: int) -> np.ndarray:
    """Rows ``lo:hi`` (store order) of a block output [batch, C, d] without its first ``drop_first`` positions,
    as one contiguous float32 CPU array.

    The work is done in numpy after one device-to-host copy: on a CPU device torch's element-wise kernels run
    on its thread pool, and on a shared 2-core machine a waiting pool thread made each of these small steps
    ≈ 10× slower than numpy's single-threaded loop (docs/lm.md, "Throughput against the forward-only floor").
    """
    kept = stream[:, drop_first:].float().cpu().numpy()  # a view on CPU; one copy from a GPU
    return np.ascontiguousarray(kept.reshape(-1, kept.shape[-1])[lo:hi])


def _check_rows(rows: np.ndarray, dtype: str) -> int:
    """Number of sink-like rows (norm > OUTLIER_RATIO × median norm) of a float32 [n, d] batch.

    Raises DataError for values beyond the float16 range when storing float16 (non-finite values are refused by
    the store writer).
    """
    if dtype == "float16":
        peak = max(-float(rows.min()), float(rows.max()))
        if peak > _FLOAT16_MAX:
            raise DataError(
                f"an activation exceeds the float16 range ({peak:.3g} > {_FLOAT16_MAX:.0f})"
                " at this layer; harvest with dtype='float32' (--dtype float32)"
            )
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows, dtype=np.float64))
    return int((norms > OUTLIER_RATIO * np.median(norms)).sum())


def _harvest_stores(
    lm: LanguageModel,
    contexts: ContextSet,
    paths: dict[int, Path],
    *,
    n_tokens: int | None,
    drop_first: int,
    batch_size: int,
    dtype: str,
    shard_tokens: int,
    meta: dict[str, Any] | None,
    progress: bool,
    autocast: str | None,
) -> dict[int, HarvestResult]:
    """The harvest loop behind :func:`harvest` and :func:`harvest_layers`: one store per layer of ``paths``."""
    context_length = contexts.context_length
    if not 0 <= drop_first < context_length:
        raise ConfigError(f"drop_first must lie in [0, {context_length - 1}], got {drop_first}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    if not paths:
        raise ConfigError("layers must name at least one block")
    autocast = None if autocast in (None, "none") else autocast
    autocast_context(lm.device, autocast)  # validates the name before any folder is touched
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
    for layer in paths:
        check_layer(lm, layer)  # before touching any folder
    n_contexts = -(-target // per_context)
    rank, world_size = world()
    part = None if world_size == 1 else (rank, world_size)
    # This process's contexts: a contiguous block, so the rank-ordered shards are the single-process order.
    first_ctx, stop_ctx = rank * n_contexts // world_size, (rank + 1) * n_contexts // world_size
    lo, hi = min(first_ctx * per_context, target), min(stop_ctx * per_context, target)

    stores = []
    for layer, path in sorted(paths.items()):
        provenance = _provenance(lm, contexts, layer, drop_first, target, autocast)
        provenance.update(meta or {})
        writer, stored, resumed = _open_writer(path, provenance, lm.d_model, dtype, shard_tokens, part)
        # stored: this process's tokens already written, or the whole store's when it is complete
        if writer is None and part is None and stored != target:
            raise DataError(f"{path} is a complete store of {stored} tokens, not {target}; pick a new folder")
        stores.append(_Store(layer, path, writer, lo + stored if writer is not None else hi, resumed))

    start = time.perf_counter()
    active = [s for s in stores if s.writer is not None]
    begin = min((s.written for s in active), default=hi)
    bar = tqdm(
        total=hi - lo,
        initial=begin - lo,
        unit="tok",
        desc=f"harvest {contexts.split}" + (f" rank {rank}" if part else ""),
        disable=not progress or not active,
        file=sys.stderr,
    )
    try:
        for c in range(begin // per_context, stop_ctx, batch_size):
            c_stop = min(c + batch_size, stop_ctx)
            t0, t1 = c * per_context, min(c_stop * per_context, hi)  # store tokens of this batch
            needed = [s for s in active if s.written < t1]
            if not needed:
                continue
            ids = contexts.input_ids[c:c_stop]
            streams = residual_streams(lm, ids, [s.layer for s in needed], autocast=autocast)
            for s in needed:
                # [batch, C, d] → kept positions in store order, then the part this store still lacks
                rows = _batch_rows(streams[s.layer], drop_first, s.written - t0, t1 - t0)
                s.outliers += _check_rows(rows, dtype)
                s.writer.append(rows)
                s.written = t1
            bar.update(t1 - max(t0, begin))
            begin = t1
        for s in active:
            s.writer.close()
    finally:
        bar.close()
    if part is not None:
        barrier()
        if rank == 0:
            for s in stores:
                ActivationStore.merge_ranks(s.path, world_size)
        barrier()  # no process returns before the stores are readable
    seconds = time.perf_counter() - start
    counts = torch.tensor([[s.written - s.stored, s.outliers] for s in stores], dtype=torch.float64)
    if part is not None:
        device = lm.device if lm.device.type == "cuda" else torch.device("cpu")  # NCCL reduces CUDA tensors only
        counts = all_reduce_(counts.to(device), "sum").cpu()
        seconds = float(all_reduce_(torch.tensor([seconds], dtype=torch.float64, device=device), "max")[0])
    results = {}
    for s, (new, outliers) in zip(stores, counts.tolist()):
        new, outliers = int(new), int(outliers)
        if outliers and rank == 0:  # the counts are global: one warning, not one per process
            warnings.warn(
                f"{outliers} of {new} harvested tokens of layer {s.layer} have a residual norm above "
                f"{OUTLIER_RATIO:g}× their batch median; such vectors dominate squared-error losses. If they are "
                "attention sinks near the start of contexts, harvest again into a new folder with a larger "
                f"--drop-first (now {drop_first}); early blocks also give a few frequent tokens massive norms "
                "(SmolLM2 block 2: ' the', ' '), which a later layer avoids",
                RuntimeWarning,
                stacklevel=3,
            )
        rate = new / seconds if new else float("nan")
        results[s.layer] = HarvestResult(
            s.path, target, new, n_contexts, seconds if new else 0.0, rate, s.resumed, outliers
        )
    return results


_HARVEST_PARAMETERS = """
    n_tokens : int, optional
        Tokens to store (default: every token the contexts offer, i.e. n_contexts · (C − drop_first)).
    drop_first : int
        Leading positions of each context not stored (attention sinks).
    batch_size : int
        Contexts per forward pass.
    dtype : {"float32", "float16"}
        Storage dtype. float16 raises if a value exceeds its range.
    shard_tokens : int
        Tokens per shard (also the resume granularity).
    meta : dict, optional
        Extra provenance for ``meta.json`` (e.g. ``{"text": ...}``).
    progress : bool
        tqdm progress bar (tokens) on stderr.
    autocast : {None, "bf16", "fp16"}
        Run the forward passes under ``torch.autocast`` to that dtype (GPU speed; bf16 also works on CPU).
        Stored values are still cast to ``dtype``; recorded as ``autocast`` in ``meta.json``.
"""


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
    autocast: str | None = None,
) -> HarvestResult:
    """Write the residual stream after block ``layer`` for ``n_tokens`` tokens of ``contexts`` to a store.

    Under a ``torch.distributed`` process group of W > 1 processes (torchrun), process r harvests the r-th
    contiguous block of the contexts into its own shards of the one store, and rank 0 writes the merged
    ``meta.json`` after all are done (see the module docstring); the store equals a single-process harvest.

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
    {params}
    Raises
    ------
    ConfigError
        Bad layer, drop_first, batch size, token count or autocast name.
    DataError
        The contexts offer fewer tokens than asked, the folder holds a different harvest, or float16 overflow.
    """
    return _harvest_stores(
        lm,
        contexts,
        {int(layer): Path(store_path)},
        n_tokens=n_tokens,
        drop_first=drop_first,
        batch_size=batch_size,
        dtype=dtype,
        shard_tokens=shard_tokens,
        meta=meta,
        progress=progress,
        autocast=autocast,
    )[int(layer)]


def layer_folder(out: str | os.PathLike[str], layer: int) -> Path:
    """Where :func:`harvest_layers` puts layer ``layer``'s store: ``out/layer-L``."""
    return Path(out) / f"layer-{int(layer)}"


def harvest_layers(
    lm: LanguageModel,
    contexts: ContextSet,
    layers: Sequence[int],
    out: str | os.PathLike[str],
    *,
    n_tokens: int | None = None,
    drop_first: int = DEFAULT_DROP_FIRST,
    batch_size: int = 8,
    dtype: str = "float32",
    shard_tokens: int = 65536,
    meta: dict[str, Any] | None = None,
    progress: bool = True,
    autocast: str | None = None,
) -> dict[int, HarvestResult]:
    """Harvest several layers from one forward pass per batch: one store per layer, ``out/layer-L``.

    Each batch runs the model only up to the deepest of ``layers``; every store is what :func:`harvest` would
    write for its layer (same token order, meta and resume rules; each store resumes on its own, and a batch
    is recomputed only up to the deepest layer still missing it). Returns ``{layer: HarvestResult}``.

    Parameters
    ----------
    layers : sequence of int
        Distinct block indices.
    out : path
        Parent folder of the stores.
    {params}
    """
    wanted = [int(layer) for layer in layers]
    if not wanted:
        raise ConfigError("layers must name at least one block")
    if len(set(wanted)) != len(wanted):
        raise ConfigError(f"layers must be distinct, got {wanted}")
    results = _harvest_stores(
        lm,
        contexts,
        {layer: layer_folder(out, layer) for layer in wanted},
        n_tokens=n_tokens,
        drop_first=drop_first,
        batch_size=batch_size,
        dtype=dtype,
        shard_tokens=shard_tokens,
        meta=meta,
        progress=progress,
        autocast=autocast,
    )
    return {layer: results[layer] for layer in wanted}


harvest.__doc__ = harvest.__doc__.replace("    {params}", _HARVEST_PARAMETERS.strip("\n") + "\n")
harvest_layers.__doc__ = harvest_layers.__doc__.replace("    {params}", _HARVEST_PARAMETERS.strip("\n") + "\n")


def harvest_splits(
    lm: LanguageModel,
    out: str | os.PathLike[str],
    *,
    layer: int = DEFAULT_LAYER,
    layers: Sequence[int] | None = None,
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
    autocast: str | None = None,
) -> dict[str, Any]:
    """Harvest the ``train`` split into ``out/train`` and the ``heldout`` split into ``out/heldout``.

    Returns ``{"train": HarvestResult, "heldout": HarvestResult}``. With ``layers`` (instead of ``layer``) every
    split is harvested for all those layers in one forward pass per batch (:func:`harvest_layers`), into
    ``out/layer-L/train`` and ``out/layer-L/heldout`` (so ``out/layer-L`` looks like a single-layer ``out``), and
    the result is ``{"train": {L: HarvestResult}, "heldout": {L: HarvestResult}}``.

    ``n_tokens`` defaults to the whole train split; ``heldout_tokens`` to a tenth of the train tokens, capped
    at what the held-out split offers. Other parameters as in :func:`harvest` and
    :func:`rsae.lm.corpus.build_contexts`; ``text`` and ``corpus`` (the embedded corpus used when ``text`` is
    empty) as in :func:`rsae.lm.corpus.load_documents`.
    """
    documents = load_documents(text, corpus=corpus)
    source = {"text": [str(p) for p in text] if text else corpus_description(None, corpus)}
    results: dict[str, Any] = {}
    budget = {"train": n_tokens, "heldout": heldout_tokens}
    common = dict(
        drop_first=drop_first,
        batch_size=batch_size,
        dtype=dtype,
        shard_tokens=shard_tokens,
        meta={**source, "heldout_fraction": heldout_fraction},
        progress=progress,
        autocast=autocast,
    )
    train_tokens = 0
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
            wanted = min(max(train_tokens // 10, 1), available)
        if layers is None:
            results[split] = harvest(lm, contexts, layer, Path(out) / split, n_tokens=wanted, **common)
            train_tokens = results[split].n_tokens
        else:
            folders = {int(L): layer_folder(out, L) / split for L in layers}
            if len(folders) != len(list(layers)) or not folders:
                raise ConfigError(f"layers must be distinct block indices, got {list(layers)}")
            by_layer = _harvest_stores(lm, contexts, folders, n_tokens=wanted, **common)
            results[split] = {int(L): by_layer[int(L)] for L in layers}
            train_tokens = next(iter(by_layer.values())).n_tokens
    return results
