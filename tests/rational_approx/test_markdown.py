"""Tests of rational_approx.verification.markdown: generated blocks are found, replaced and nothing else moves."""

import pytest

from rational_approx.errors import RationalApproxError
from rational_approx.verification.markdown import blocks, markdown_table, splice, write_blocks

DOC = """# Title
text before
<!-- generated: a — cmd a -->
old a
<!-- end generated: a -->
middle
<!-- generated: b-2 — cmd --x y -->
| x |
<!-- end generated: b-2 -->
after
"""


def test_blocks_and_splice_roundtrip():
    assert blocks(DOC) == {"a": "old a", "b-2": "| x |"}
    new = splice(DOC, "a", "new a\nline 2\n")
    assert blocks(new) == {"a": "new a\nline 2", "b-2": "| x |"}
    assert new.replace("new a\nline 2", "old a") == DOC  # only the body changed
    assert splice(new, "a", "old a") == DOC
    with pytest.raises(RationalApproxError, match="no generated block 'c'"):
        splice(DOC, "c", "x")


def test_write_blocks_skips_names_without_a_block(tmp_path):
    path = tmp_path / "d.md"
    path.write_text(DOC)
    assert write_blocks(path, {"b-2": "| y |", "other": "z"}) == ["b-2"]
    assert blocks(path.read_text())["b-2"] == "| y |"


def test_markdown_table_escapes_pipes():
    t = markdown_table(["a", "b|c"], [[1, "x|y"]])
    assert t.splitlines() == ["| a | b\\|c |", "|---|---|", "| 1 | x\\|y |"]
