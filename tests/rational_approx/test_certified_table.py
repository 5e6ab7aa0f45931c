"""Tests of rational_approx.verification.certified_table: every library gate is covered, brackets are rigorous."""

import json
from pathlib import Path

from rational_approx.fitting.activation import DEFAULT_TYPES
from rational_approx.verification.certified_table import certified_table, certified_table_markdown, library_cases
from rational_approx.verification.markdown import blocks

DOC = Path(__file__).resolve().parents[2] / "docs" / "verification.md"


def test_library_cases_cover_every_gate_and_type_of_the_activation_library():
    cases = {(name, tuple(typ)) for name, _, typ, _ in library_cases()}
    assert {(g, tuple(t)) for g, t in DEFAULT_TYPES.items()} <= cases
    gaps = {name: gap for name, _, _, gap in library_cases() if name in ("jumprelu", "topk_gate", "sign", "heaviside")}
    assert all(g is not None and g > 0 for g in gaps.values())  # discontinuous gates only on gapped sets


def test_small_table_brackets_the_known_errors_and_is_strict_json():
    out = certified_table(abs_n_max=4, cases=[("relu", {}, (3, 2), None)])
    json.dumps(out, allow_nan=False)
    (relu, a2, a4) = out["rows"]
    assert relu["lower"] <= 0.021844506346038181 <= relu["upper"] and relu["certified"]
    assert a2["lower"] <= 0.043689012692076362 <= a2["upper"]
    assert all(r["relative_width"] <= 1e-8 and r["lower_bound_covers"] == "every competitor of the type"
               for r in out["rows"])
    md = certified_table_markdown(out)
    assert md.count("\n") == 4 and "| relu | (3, 2) | [-1, 1] |" in md


def test_committed_certified_table_has_every_library_case_certified():
    body = blocks(DOC.read_text())["certified-table"].splitlines()[2:]
    for name, _, typ, _ in library_cases():
        rows = [r for r in body if r.startswith(f"| {name}") and f"| ({typ[0]}, {typ[1]}) |" in r]
        assert rows, f"no row for {name} {typ}"
        assert all("| yes |" in r for r in rows)
    abs_n = [int(r.split("|")[2].strip(" ()").split(",")[0]) for r in body if r.startswith("| abs |")]
    assert set(range(2, 81, 2)) <= set(abs_n)  # |x| at every even n ≤ 80
