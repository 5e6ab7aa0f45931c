r"""The text of the language model, fully offline: embedded corpora, documents, splits and contexts.

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
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from rsae.errors import ConfigError, DataError

__all__ = [
    "DEFAULT_CONTEXT_LENGTH",
    "DEFAULT_DROP_FIRST",
    "DEFAULT_HELDOUT_FRACTION",
    "CORPORA",
    "Document",
    "ContextSet",
    "load_documents",
    "corpus_description",
    "split_of",
    "build_contexts",
]

DEFAULT_CONTEXT_LENGTH = 128
"""Tokens per context window."""
DEFAULT_DROP_FIRST = 3
"""Leading positions of each context excluded from harvesting and downstream metrics (attention sinks)."""
DEFAULT_HELDOUT_FRACTION = 0.1
"""Fraction of the sha256 range of document ids assigned to the held-out split."""

CORPORA = ("pydoc", "stdlib")
"""Names of the embedded corpora of :func:`load_documents`."""
_STDLIB_SKIP = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"})
_TEXT_SUFFIXES = (".txt", ".md")


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
