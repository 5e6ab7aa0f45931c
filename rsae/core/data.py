"""Training data: an on-disk activation store read by memory-mapping, and an in-memory tensor source.

On-disk format ``rsae-activation-store/1``: a folder with ``meta.json`` and shards ``shard_00000.npy``, ...,
each a 2-D array [n_tokens_in_shard, d_in] of float16 or float32 written with ``np.save`` and read with
``np.load(mmap_mode="r")`` (never unpickled). ``meta.json`` holds ``format``, ``d_in``, ``dtype``,
``n_tokens``, ``shard_tokens``, ``complete`` and ``shards: [{"file", "n_tokens"}]``, plus free-form provenance
keys (model, layer, context_length, seed, split, ...). The writer rewrites ``meta.json`` atomically after
every completed shard, so an interrupted harvest is resumed with :meth:`ActivationStore.resume`.

Written by several processes (a distributed harvest): process r of W writes its own shards
``shard_rank00001_00000.npy``, ... and its own part header ``meta.rank00001.json`` (the same layout as
``meta.json`` plus ``rank_part: {"rank", "world_size"}``) into the one folder — ``create``/``resume`` with
``rank=(r, W)`` — and once every part is complete, :meth:`ActivationStore.merge_ranks` writes the single
``meta.json`` listing all shards in rank order and removes the part headers. Readers only ever see
``meta.json``, so a merged store is an ordinary store.

Shuffled reading (both sources): the token range is cut into pieces of ``chunk_tokens // 8`` tokens; the
pieces are put in a seeded random order and taken 8 at a time into a shuffle buffer of at most
``chunk_tokens`` tokens whose rows are permuted and cut into batches. Memory is bounded by the buffer and
one batch, whatever the store's size, and the order is a pure function of ``(seed, epoch)``, so batch
``i`` of an epoch can be reached without reading the batches before it (``start_batch``) — what resuming a
training run needs.

Example
-------
>>> import numpy as np, tempfile, os
>>> from rsae.core.data import ActivationStore
>>> folder = os.path.join(tempfile.mkdtemp(), "store")
>>> with ActivationStore.create(folder, d_in=4, shard_tokens=10) as writer:
...     writer.append(np.ones((25, 4), dtype=np.float32))
>>> store = ActivationStore.open(folder)
>>> store.n_tokens, [b.shape[0] for b in store.iter_batches(8, seed=1)]
(25, [8, 8, 8, 1])
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rsae.errors import DataError

__all__ = ["STORE_FORMAT", "BatchSource", "ActivationStore", "StoreWriter", "TensorSource", "as_source"]

STORE_FORMAT = "rsae-activation-store/1"
"""Value of ``meta.json["format"]`` for this layout."""

_PIECES_PER_CHUNK = 8
_RESERVED_KEYS = ("format", "d_in", "dtype", "n_tokens", "shards", "shard_tokens", "complete")
_STORE_DTYPES = ("float16", "float32")
_RANK_PART = "rank_part"


def _part_meta_name(rank: tuple[int, int] | None) -> str:
    return "meta.json" if rank is None else f"meta.rank{rank[0]:05d}.json"


def _shard_prefix(rank: tuple[int, int] | None) -> str:
    return "shard_" if rank is None else f"shard_rank{rank[0]:05d}_"


def _check_rank(rank: tuple[int, int] | None) -> None:
    if rank is None:
        return
    if (
        not isinstance(rank, tuple)
        or len(rank) != 2
        or not all(isinstance(v, int) for v in rank)
        or not 0 <= rank[0] < rank[1]
    ):
        raise DataError(f"rank must be a pair (rank, world_size) with 0 <= rank < world_size, got {rank!r}")


class BatchSource:
    """Base of every token source: the chunked-shuffle reader and uniform sampling.

    Subclasses set ``n_tokens`` and ``d_in`` and implement ``_segments`` (contiguous ranges one read may
    cover), ``_read`` (a range as a float32 CPU tensor) and ``_gather`` (given rows of a segment).
    """

    n_tokens: int
    d_in: int

    def _segments(self) -> list[tuple[int, int, int]]:
        """Contiguous (segment id, start, stop) ranges that a single read may cover (shards)."""
        raise NotImplementedError

    def _read(self, segment: int, start: int, stop: int) -> Tensor:
        """Rows [start, stop) of ``segment`` as a float32 CPU tensor."""
        raise NotImplementedError

    def _pieces(self, piece_tokens: int) -> list[tuple[int, int, int]]:
        pieces = []
        for seg, start, stop in self._segments():
            for lo in range(start, stop, piece_tokens):
                pieces.append((seg, lo, min(lo + piece_tokens, stop)))
        return pieces

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        """Number of batches one epoch of :meth:`iter_batches` yields."""
        return self.n_tokens // batch_size if drop_last else -(-self.n_tokens // batch_size)

    def iter_batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        epoch: int = 0,
        chunk_tokens: int = 65536,
        drop_last: bool = False,
        start_batch: int = 0,
    ) -> Iterator[Tensor]:
        """Yield float32 batches [≤ batch_size, d_in] covering every token once (one epoch).

        Parameters
        ----------
        batch_size : int
            Tokens per batch; the last batch is shorter unless ``drop_last``.
        shuffle : bool
            Shuffle in chunks (see the module docstring); ``False`` reads in storage order.
        seed, epoch : int
            The order is a deterministic function of ``(seed, epoch)``.
        chunk_tokens : int
            Shuffle-buffer size in tokens; bounds the memory used.
        drop_last : bool
            Drop the final incomplete batch.
        start_batch : int
            Skip the first ``start_batch`` batches of the epoch without reading them.
        """
        if batch_size <= 0 or chunk_tokens <= 0 or start_batch < 0:
            raise DataError(
                f"batch_size ({batch_size}) and chunk_tokens ({chunk_tokens}) must be positive "
                f"and start_batch ({start_batch}) non-negative"
            )
        piece_tokens = max(chunk_tokens // _PIECES_PER_CHUNK, 1)
        pieces = self._pieces(piece_tokens)
        if shuffle:
            order = np.random.default_rng([seed, epoch]).permutation(len(pieces))
            pieces = [pieces[i] for i in order]
        per_chunk = _PIECES_PER_CHUNK if shuffle else 1
        skip = start_batch * batch_size
        offset = 0
        buffer: list[Tensor] = []
        buffered = 0
        for chunk_id, first in enumerate(range(0, len(pieces), per_chunk)):
            group = pieces[first : first + per_chunk]
            size = sum(stop - start for _, start, stop in group)
            if offset + size <= skip:
                offset += size
                continue
            rows = torch.cat([self._read(*piece) for piece in group])
            if shuffle:
                perm = np.random.default_rng([seed, epoch, chunk_id]).permutation(size)
                rows = rows[torch.from_numpy(perm)]
            if offset < skip:
                rows = rows[skip - offset :]
            offset += size
            buffer.append(rows)
            buffered += rows.shape[0]
            if buffered >= batch_size:
                data = torch.cat(buffer)
                n_full = data.shape[0] // batch_size
                yield from data[: n_full * batch_size].split(batch_size)
                rest = data[n_full * batch_size :]
                buffer, buffered = [rest], rest.shape[0]
        if buffered and not drop_last:
            yield torch.cat(buffer)

    def read_all(self) -> Tensor:
        """Every token in storage order as one float32 tensor [n_tokens, d_in] (in memory: for stores that fit)."""
        return torch.cat(list(self.iter_batches(65536, shuffle=False)))

    def sample(self, n: int, seed: int = 0) -> Tensor:
        """``n`` distinct tokens drawn uniformly without replacement, in storage order, float32 [n, d_in]."""
        if not 0 < n <= self.n_tokens:
            raise DataError(
                f"cannot sample {n} tokens from a source of {self.n_tokens}; ask for 1..{self.n_tokens}"
            )
        chosen = np.sort(np.random.default_rng(seed).choice(self.n_tokens, size=n, replace=False))
        parts = []
        base = 0
        for seg, start, stop in self._segments():
            length = stop - start
            local = chosen[(chosen >= base) & (chosen < base + length)] - base + start
            if local.size:
                parts.append(self._gather(seg, local))
            base += length
        return torch.cat(parts)

    def _gather(self, segment: int, rows: np.ndarray) -> Tensor:
        raise NotImplementedError


class TensorSource(BatchSource):
    """An in-memory [n_tokens, d_in] tensor with the same reading API as :class:`ActivationStore`."""

    def __init__(self, data: Tensor | np.ndarray) -> None:
        tensor = torch.as_tensor(data)
        if tensor.ndim != 2 or tensor.shape[0] == 0 or tensor.shape[1] == 0:
            raise DataError(
                f"expected a non-empty 2-D [n_tokens, d_in] tensor, got shape {tuple(tensor.shape)}"
            )
        if not tensor.is_floating_point():
            raise DataError(f"expected floating-point activations, got dtype {tensor.dtype}")
        bad = int((~torch.isfinite(tensor)).any(-1).sum())
        if bad:
            raise DataError(f"the data holds NaN or inf in {bad} of {tensor.shape[0]} tokens; clean or drop them")
        self.data = tensor.detach().cpu()
        self.n_tokens, self.d_in = self.data.shape
        self.meta: dict[str, Any] = {}

    def _segments(self) -> list[tuple[int, int, int]]:
        return [(0, 0, self.n_tokens)]

    def _read(self, segment: int, start: int, stop: int) -> Tensor:
        return self.data[start:stop].float()

    def _gather(self, segment: int, rows: np.ndarray) -> Tensor:
        return self.data[torch.from_numpy(rows)].float()


class ActivationStore(BatchSource):
    """Read-only view of an on-disk activation store (shards memory-mapped, nothing loaded up front).

    Use :meth:`open` to read, :meth:`create` / :meth:`resume` to write.
    """

    def __init__(self, path: Path, meta: dict[str, Any], shards: list[np.ndarray]) -> None:
        self.path = path
        self.meta = meta
        self._shards = shards
        self.d_in = int(meta["d_in"])
        self.n_tokens = int(meta["n_tokens"])

    @staticmethod
    def create(
        path: str | os.PathLike,
        d_in: int,
        dtype: str = "float32",
        meta: dict[str, Any] | None = None,
        shard_tokens: int = 65536,
        *,
        rank: tuple[int, int] | None = None,
    ) -> StoreWriter:
        """Start a new store in the (absent or empty) folder ``path`` and return its writer.

        With ``rank=(r, W)`` the writer writes process r's part of a store written by W processes (see the
        module docstring): the folder may already hold other parts, but neither ``meta.json`` nor part r.
        """
        folder = Path(path)
        _check_rank(rank)
        if rank is None and folder.exists() and any(folder.iterdir()):
            raise DataError(
                f"{folder} exists and is not empty; use ActivationStore.resume({str(folder)!r}) "
                "to continue an interrupted store, or pick a new folder"
            )
        if rank is not None:
            for name in ("meta.json", _part_meta_name(rank)):
                if (folder / name).exists():
                    raise DataError(
                        f"{folder / name} exists; resume the part with ActivationStore.resume(..., rank={rank}) "
                        "or pick a new folder"
                    )
        if not isinstance(d_in, int) or d_in <= 0:
            raise DataError(f"d_in must be a positive integer, got {d_in!r}")
        if dtype not in _STORE_DTYPES:
            raise DataError(f"store dtype must be one of {_STORE_DTYPES}, got {dtype!r}")
        if not isinstance(shard_tokens, int) or shard_tokens <= 0:
            raise DataError(f"shard_tokens must be a positive integer, got {shard_tokens!r}")
        extra = dict(meta or {})
        clash = sorted(set(extra) & {*_RESERVED_KEYS, _RANK_PART})
        if clash:
            raise DataError(f"meta keys {clash} are reserved by the store format; rename them")
        folder.mkdir(parents=True, exist_ok=True)
        header = {
            "format": STORE_FORMAT,
            "d_in": d_in,
            "dtype": dtype,
            "n_tokens": 0,
            "shard_tokens": shard_tokens,
            "complete": False,
            "shards": [],
            **extra,
        }
        if rank is not None:
            header[_RANK_PART] = {"rank": rank[0], "world_size": rank[1]}
        writer = StoreWriter(folder, header, rank=rank)
        writer._write_meta()
        return writer

    @staticmethod
    def resume(path: str | os.PathLike, *, rank: tuple[int, int] | None = None) -> StoreWriter:
        """Reopen an interrupted store (or, with ``rank=(r, W)``, part r) for appending after its last complete shard.

        Shard files of this store or part that its header does not list (a shard being written when the writer
        died) are deleted; other parts' files are left alone.
        """
        folder = Path(path)
        _check_rank(rank)
        name = _part_meta_name(rank)
        meta = _read_meta(folder, name)
        if meta.get("complete"):
            raise DataError(f"{folder / name} describes a complete store (closed); open it with ActivationStore.open")
        if rank is not None and meta.get(_RANK_PART) != {"rank": rank[0], "world_size": rank[1]}:
            raise DataError(f"{folder / name} is part {meta.get(_RANK_PART)!r}, not rank {rank[0]} of {rank[1]}")
        listed = {shard["file"] for shard in meta["shards"]}
        pattern = "shard_[0-9]*.npy*" if rank is None else _shard_prefix(rank) + "*.npy*"
        for stray in folder.glob(pattern):
            if stray.name not in listed:
                stray.unlink()
        return StoreWriter(folder, meta, rank=rank)

    @staticmethod
    def merge_ranks(path: str | os.PathLike, world_size: int) -> dict[str, Any]:
        """Write the one ``meta.json`` of a store written by ``world_size`` processes; return it.

        Every part header ``meta.rank*.json`` must be complete and agree with the others on everything but its
        shards and token count; ``meta.json`` lists the shards of rank 0, then rank 1, ... (so the store's token
        order is the parts' concatenation), records ``ranks = world_size`` and is written atomically before the
        part headers are removed. Calling it again on a merged store returns the existing ``meta.json``.
        """
        folder = Path(path)
        if (folder / "meta.json").is_file() and not any(folder.glob("meta.rank*.json")):
            return _read_meta(folder)
        if not isinstance(world_size, int) or world_size < 1:
            raise DataError(f"world_size must be a positive integer, got {world_size!r}")
        parts = []
        for r in range(world_size):
            name = _part_meta_name((r, world_size))
            part = _read_meta(folder, name)
            if not part.get("complete"):
                raise DataError(f"{folder / name}: part {r} of {world_size} is not complete; finish it before merging")
            if part.get(_RANK_PART) != {"rank": r, "world_size": world_size}:
                raise DataError(f"{folder / name} is part {part.get(_RANK_PART)!r}, not rank {r} of {world_size}")
            parts.append(part)
        varying = ("shards", "n_tokens", _RANK_PART)
        common = {k: v for k, v in parts[0].items() if k not in varying}
        for r, part in enumerate(parts[1:], start=1):
            other = {k: v for k, v in part.items() if k not in varying}
            if other != common:
                keys = sorted(k for k in set(common) | set(other) if common.get(k) != other.get(k))
                raise DataError(f"{folder}: part {r} disagrees with part 0 on {keys}; these parts are not one store")
        merged = {
            **common,
            "n_tokens": sum(int(part["n_tokens"]) for part in parts),
            "shards": [shard for part in parts for shard in part["shards"]],
            "complete": True,
            "ranks": world_size,
        }
        atomic_write_text(folder / "meta.json", json.dumps(merged, indent=2))
        for r in range(world_size):
            (folder / _part_meta_name((r, world_size))).unlink(missing_ok=True)
        return merged

    @classmethod
    def open(cls, path: str | os.PathLike) -> ActivationStore:
        """Open a store for reading; validates ``meta.json`` and every shard's shape and dtype."""
        folder = Path(path)
        meta = _read_meta(folder)
        shards = []
        total = 0
        for entry in meta["shards"]:
            file = folder / entry["file"]
            try:
                array = np.load(file, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise DataError(f"cannot read shard {file}: {exc}; the store is damaged") from exc
            if array.ndim != 2 or array.shape != (entry["n_tokens"], meta["d_in"]):
                raise DataError(
                    f"shard {file} has shape {array.shape}, meta.json says "
                    f"({entry['n_tokens']}, {meta['d_in']})"
                )
            if array.dtype != np.dtype(meta["dtype"]):
                raise DataError(f"shard {file} has dtype {array.dtype}, meta.json says {meta['dtype']}")
            shards.append(array)
            total += array.shape[0]
        if total != meta["n_tokens"]:
            raise DataError(
                f"{folder}: shards hold {total} tokens but meta.json says n_tokens = {meta['n_tokens']}"
            )
        if total == 0:
            raise DataError(f"{folder} holds no tokens")
        return cls(folder, meta, shards)

    @property
    def complete(self) -> bool:
        """Whether the writer was closed (an interrupted store is readable but incomplete)."""
        return bool(self.meta.get("complete"))

    def _segments(self) -> list[tuple[int, int, int]]:
        return [(i, 0, shard.shape[0]) for i, shard in enumerate(self._shards)]

    def _read(self, segment: int, start: int, stop: int) -> Tensor:
        return self._checked(segment, np.array(self._shards[segment][start:stop], dtype=np.float32))

    def _gather(self, segment: int, rows: np.ndarray) -> Tensor:
        return self._checked(segment, np.array(self._shards[segment][rows], dtype=np.float32))

    def _checked(self, segment: int, rows: np.ndarray) -> Tensor:
        # The writer refuses non-finite rows, but a store may come from elsewhere; a shard is checked as it is
        # read (one pass over data being read anyway) rather than up front (a full read of the store).
        if not np.isfinite(rows).all():
            raise DataError(
                f"shard {self.path / self.meta['shards'][segment]['file']} holds NaN or inf values; "
                "the store is damaged or was written without rsae's checks"
            )
        return torch.from_numpy(rows)


class StoreWriter:
    """Appends [n, d_in] arrays to a store, writing a shard (then ``meta.json``) each ``shard_tokens`` tokens.

    Use as a context manager or call :meth:`close`; :attr:`n_tokens` counts the tokens safely on disk.
    """

    def __init__(self, folder: Path, meta: dict[str, Any], *, rank: tuple[int, int] | None = None) -> None:
        self.folder = folder
        self.meta = meta
        self.rank = rank
        self._meta_name = _part_meta_name(rank)
        self._prefix = _shard_prefix(rank)
        self.d_in = int(meta["d_in"])
        self.dtype = np.dtype(meta["dtype"])
        self.shard_tokens = int(meta["shard_tokens"])
        self._pending: list[np.ndarray] = []
        self._pending_tokens = 0
        self._closed = False

    @property
    def n_tokens(self) -> int:
        """Tokens in completed shards (what a resumed writer would keep)."""
        return int(self.meta["n_tokens"])

    def append(self, array: np.ndarray | Tensor) -> None:
        """Queue rows [n, d_in]; full shards are written as soon as they are complete."""
        if self._closed:
            raise DataError("this StoreWriter is closed; use ActivationStore.resume to append more")
        if isinstance(array, Tensor):
            array = array.detach().float().cpu().numpy()
        array = np.asarray(array)
        if array.ndim != 2 or array.shape[1] != self.d_in:
            raise DataError(f"expected rows of shape [n, {self.d_in}], got {array.shape}")
        if not np.isfinite(array).all():
            raise DataError("refusing to store non-finite activations (NaN or inf); check the source model")
        self._pending.append(array.astype(self.dtype, copy=False))
        self._pending_tokens += array.shape[0]
        while self._pending_tokens >= self.shard_tokens:
            data = np.concatenate(self._pending)
            self._write_shard(data[: self.shard_tokens])
            rest = data[self.shard_tokens :]
            self._pending, self._pending_tokens = [rest], rest.shape[0]

    def close(self) -> None:
        """Write the last partial shard and mark the store complete."""
        if self._closed:
            return
        if self._pending_tokens:
            self._write_shard(np.concatenate(self._pending))
        self._pending, self._pending_tokens = [], 0
        self.meta["complete"] = True
        self._write_meta()
        self._closed = True

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()

    def _write_shard(self, rows: np.ndarray) -> None:
        name = f"{self._prefix}{len(self.meta['shards']):05d}.npy"
        tmp = self.folder / (name + ".tmp")
        with open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(rows), allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.folder / name)
        self.meta["shards"].append({"file": name, "n_tokens": int(rows.shape[0])})
        self.meta["n_tokens"] = int(self.meta["n_tokens"]) + int(rows.shape[0])
        self._write_meta()

    def _write_meta(self) -> None:
        atomic_write_text(self.folder / self._meta_name, json.dumps(self.meta, indent=2))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file, fsync it and move it over ``path`` (readers never see a partial file)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _read_meta(folder: Path, name: str = "meta.json") -> dict[str, Any]:
    file = folder / name
    if not file.is_file():
        raise DataError(f"{folder} is not an activation store: {file} is missing")
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot parse {file}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != STORE_FORMAT:
        raise DataError(
            f"{file}: format must be {STORE_FORMAT!r}, got "
            f"{meta.get('format') if isinstance(meta, dict) else meta!r}"
        )
    missing = [key for key in _RESERVED_KEYS if key not in meta]
    if missing:
        raise DataError(f"{file} lacks keys {missing}")
    if not isinstance(meta["d_in"], int) or meta["d_in"] <= 0:
        raise DataError(f"{file}: d_in must be a positive integer, got {meta['d_in']!r}")
    if meta["dtype"] not in _STORE_DTYPES:
        raise DataError(f"{file}: dtype must be one of {_STORE_DTYPES}, got {meta['dtype']!r}")
    shards = meta["shards"]
    if not isinstance(shards, list) or not all(
        isinstance(s, dict)
        and isinstance(s.get("file"), str)
        and isinstance(s.get("n_tokens"), int)
        and "/" not in s["file"]
        and "\\" not in s["file"]
        and s["file"] not in ("", ".", "..")
        for s in shards
    ):
        raise DataError(
            f"{file}: shards must be a list of {{'file': name, 'n_tokens': int}} "
            "naming files inside the folder"
        )
    return meta


def as_source(data: Tensor | np.ndarray | str | os.PathLike | BatchSource) -> BatchSource:
    """Wrap ``data`` as a batch source: a tensor/array (in memory), a store folder path, or a source."""
    if isinstance(data, BatchSource):
        return data
    if isinstance(data, (str, os.PathLike)):
        return ActivationStore.open(data)
    return TensorSource(data)
