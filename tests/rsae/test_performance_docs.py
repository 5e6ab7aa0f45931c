"""The benchmark outputs quoted in docs/performance.md agree with the JSON the benchmarks wrote (committed under
benchmarks/results/): every row of every JSON the doc names is in the doc as the benchmark printed it (runs of spaces
compared as one: the column widths of the printout changed over time), or, for a run the doc only cites, its ratio
in the sentence that names the file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
FLAT = re.sub(r" +", " ", DOC)


def _quoted(line: str) -> bool:
    return re.sub(r" +", " ", line) in FLAT


def _named(prefix: str) -> list[str]:
    """The JSON files under benchmarks/results/ that the doc names, starting with ``prefix``."""
    return sorted(set(re.findall(rf"benchmarks/results/({prefix}[\w.]*\.json)", DOC)))


def _load(name: str) -> dict:
    return json.loads((ROOT / "benchmarks" / "results" / name).read_text(encoding="utf-8"),
                      parse_constant=lambda c: pytest.fail(f"{name}: non-strict JSON constant {c}"))


@pytest.mark.parametrize("name", _named("vs_saelens_cpu"))
def test_saelens_rows_are_quoted(name: str) -> None:
    rows = _load(name)["rows"]
    assert rows
    for row in rows:
        rate = row["tokens_per_s"]
        line = (f"d_sae {row['d_sae']:6d} {row['family']:5s} tokens/s: rsae {rate['rsae']:8.0f}  saelens "
                f"{rate['saelens']:8.0f}  ratio {row['ratio_rsae_over_saelens']:.2f}x")
        cited = re.search(rf"[^.]*{'ReLU' if row['family'] == 'relu' else 'TopK'}\s+"
                          rf"{row['ratio_rsae_over_saelens']:.2f}×[^`]*`benchmarks/results/{re.escape(name)}`", DOC)
        assert _quoted(line) or cited, f"{name}: {line!r} is not in docs/performance.md"


PRINTED = {  # how each benchmark prints one JSON row (bench_sparse_crossover.py, bench_train_step.py)
    "sparse_crossover": lambda row: (f"density {row['density']:7.4f}  sparse {row['sparse_ms']:8.1f} ms  dense "
                                     f"{row['dense_ms']:8.1f} ms"),
    "train_step_cpu": lambda row: f"{row['case']:42s} {row['ms']:9.1f} ms  L0 {row['l0']:7.1f}",
}


@pytest.mark.parametrize(("prefix", "name"), [(p, n) for p in PRINTED for n in _named(p)])
def test_printed_rows_are_quoted(prefix: str, name: str) -> None:
    rows = _load(name)["rows"]
    assert rows
    for row in rows:
        line = PRINTED[prefix](row)
        assert _quoted(line), f"{name}: {line!r} is not in docs/performance.md"


def test_memmap_rss_rows_are_quoted() -> None:
    rows = _load("memmap_rss.json")["rows"]
    assert rows and "benchmarks/results/memmap_rss.json" in DOC
    for row in rows:
        line = (f"store {row['store_gb']:5.2f} GB ({row['n_tokens']} tokens, {row['page_cache']:12s}): anonymous RSS "
                f"{row['anon_before_mib']:7.1f} -> {row['anon_after_mib']:7.1f} MiB, file-backed (memmap pages) "
                f"{row['file_before_mib']:7.1f} -> {row['file_after_mib']:7.1f} MiB, peak RSS "
                f"{row['peak_after_mib']:7.1f} MiB")
        assert _quoted(line), f"memmap_rss.json: {line!r} is not in docs/performance.md"
