"""The markdown of a :func:`rsae.experiments.reproduce.reproduce` results dict (``results.md``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rational_approx.verification.markdown import blocks, write_blocks
from rsae.errors import DataError
from rsae.experiments.scoreboard import comparison_markdown, scoreboard_markdown, timing_markdown

__all__ = ["DOC_BLOCKS", "results_markdown", "write_doc_blocks"]


def results_markdown(results: dict[str, Any]) -> str:
    """The markdown of a results dict (as written to ``results.json``): the scoreboard and the CE / probe facts."""
    lines = [scoreboard_markdown(results)]
    d = results["downstream"]
    if d.get("skipped"):
        lines.append(f"Downstream metrics not measured: {d['skipped']}.\n")
    else:
        p = d["probe"]
        lines.append(f"CE clean {d['ce_clean']:.4f}, zero-ablated {d['ce_zero']:.4f} nats ({d['n_predictions']} "
                     f"predictions); probe task `{p['task']}`: raw top-{p['k']} dims {p['raw_accuracy']:.3f}, all raw "
                     f"dims {p['raw_all_accuracy']:.3f} ({p['n_train']} / {p['n_test']} balanced train / test "
                     "tokens).\n")
    return "\n".join(lines)


DOC_BLOCKS: dict[str, Callable[[dict[str, Any]], str]] = {
    "scoreboard": results_markdown,
    "comparison": comparison_markdown,
    "timing": timing_markdown,
}
"""The generated blocks of docs/results.md (name → writer of its text from the results dict)."""


def write_doc_blocks(results: dict[str, Any], path: str | os.PathLike[str], prefix: str = "") -> list[str]:
    """Replace every :data:`DOC_BLOCKS` block of the markdown file ``path`` by its regeneration from ``results``.

    The blocks are the project's generated blocks (:mod:`rational_approx.verification.markdown`:
    ``<!-- generated: NAME — COMMAND -->`` … ``<!-- end generated: NAME -->``), named ``prefix + name`` (so one
    file can hold the tables of two runs, e.g. ``scoreboard`` and ``study-scoreboard``). Returns the names of the
    blocks whose text changed. Raises :class:`DataError` when the file lacks a block (nothing is written then), so
    a renamed or deleted block is an error, not a silent no-op.
    """
    path = Path(path)
    doc = path.read_text()
    before = blocks(doc)
    missing = [prefix + name for name in DOC_BLOCKS if prefix + name not in before]
    if missing:
        raise DataError(f"{path} has no generated block {', '.join(missing)} "
                        f"(<!-- generated: NAME — COMMAND --> ... <!-- end generated: NAME -->)")
    tables = {prefix + name: writer(results) for name, writer in DOC_BLOCKS.items()}
    changed = [name for name, text in tables.items() if before[name] != text.rstrip("\n")]
    if changed:
        write_blocks(path, {name: tables[name] for name in changed})
    return changed
