"""Tests of rational_approx.verification.study: the committed table of docs/study.md is what the code writes."""

import json
import math
from pathlib import Path

from rational_approx.verification.markdown import blocks
from rational_approx.verification.study import error_vs_degree, study_markdown, write_study

DOC = Path(__file__).resolve().parents[2] / "docs" / "study.md"


def test_first_rows_of_the_committed_study_table_are_regenerated():
    rows = error_vs_degree(8, progress=False)
    fresh = study_markdown(rows)["study-table"].splitlines()
    committed = blocks(DOC.read_text())["study-table"].splitlines()
    assert fresh[0] == committed[0]  # same columns
    assert fresh[2:] == committed[2:2 + len(rows)], "docs/study.md differs from a regeneration of n = 2…8"


def test_relu_ratio_and_agreeing_digits_are_computed():
    rows = error_vs_degree(4, progress=False)
    r2 = rows[0]
    # ReLU (2,2) = (7 − 4√3)/2 against E_2/2: 1.643…, i.e. worse than type (3, 2)
    assert math.isclose(r2.relu_ratio, (7 - 4 * math.sqrt(3)) / 0.043689012692076362, rel_tol=1e-9)
    assert r2.abs_reference.startswith("0.0436890126920763")
    assert r2.abs_digits is None or r2.abs_digits > 14
    reading = study_markdown(rows)["study-reading"]
    assert "1.64× (n = 2)" in reading and "worse" in reading


def test_study_json_is_strict(tmp_path):
    rows = error_vs_degree(2, relu=False, progress=False, reference=False)
    path = write_study(rows, tmp_path / "s.json")
    doc = json.loads(path.read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert doc["rows"][0]["relu_error"] is None and doc["rows"][0]["abs_reference"] is None
