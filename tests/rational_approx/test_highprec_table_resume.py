"""benchmarks/highprec_table.py keeps its resumable JSON-lines state usable after a kill mid-write."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("highprec_table", ROOT / "benchmarks" / "highprec_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_cut_short_last_line_is_skipped_and_repaired_any_other_bad_line_is_an_error(tmp_path):
    table = _module()
    path = tmp_path / "A.jsonl"
    path.write_text('{"n": 2, "E": "0.04"}\n{"n": 4, "E": "0.008"}\n{"n": 6, "E": "0.00')
    assert sorted(table._load(path)) == [2, 4]
    assert path.read_text().endswith('"0.00')  # reading alone leaves the file as it is
    assert [r["n"] for r in table._records(path, repair=True)] == [2, 4]
    assert path.read_text() == '{"n": 2, "E": "0.04"}\n{"n": 4, "E": "0.008"}\n'  # ready for appending
    path.write_text('{"n": 2}\nnot json\n{"n": 4}\n')
    with pytest.raises(SystemExit, match="line 2 is not JSON"):
        table._load(path)
    assert table._load(tmp_path / "missing.jsonl") == {}
