"""Generated blocks in the markdown docs: tables written by the code, never by hand.

A generated block in a document looks like

    <!-- generated: NAME — COMMAND -->
    | … table written by the code … |
    <!-- end generated: NAME -->

:func:`splice` replaces the body of block NAME with new text (the markers stay, so the block can be regenerated);
:func:`blocks` reads every block back, which is what the tests use to compare a fresh regeneration with the
committed document. The commands that own blocks: ``rational-approx claims`` (docs/theory_and_claims.md),
``rational-approx study`` (docs/study.md), ``rational-approx certify-table`` (docs/verification.md) and
``rsae study --markdown RESULTS --write-docs`` (docs/results.md).

Example
-------
>>> text = "a\\n<!-- generated: t — cmd -->\\nold\\n<!-- end generated: t -->\\nb\\n"
>>> print(splice(text, "t", "new"))
a
<!-- generated: t — cmd -->
new
<!-- end generated: t -->
b
<BLANKLINE>
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from rational_approx.errors import RationalApproxError

__all__ = ["blocks", "splice", "write_blocks", "markdown_table"]

_BLOCK = re.compile(r"<!-- generated: (?P<name>[\w.-]+) — (?P<cmd>[^\n]*?) -->\n(?P<body>.*?)"
                    r"<!-- end generated: (?P=name) -->", re.S)


def blocks(text: str) -> dict[str, str]:
    """Every generated block of ``text``: name → body (without the markers, without the trailing newline)."""
    return {m["name"]: m["body"].rstrip("\n") for m in _BLOCK.finditer(text)}


def splice(text: str, name: str, body: str) -> str:
    """``text`` with the body of block ``name`` replaced by ``body``.

    Raises
    ------
    RationalApproxError
        if the document has no block called ``name`` (add the two marker lines first).
    """
    found = False

    def repl(m: re.Match) -> str:
        nonlocal found
        if m["name"] != name:
            return m[0]
        found = True
        return f"<!-- generated: {name} — {m['cmd']} -->\n{body.rstrip()}\n<!-- end generated: {name} -->"

    out = _BLOCK.sub(repl, text)
    if not found:
        raise RationalApproxError(f"no generated block {name!r} in the document; add the lines "
                                  f"'<!-- generated: {name} — COMMAND -->' and '<!-- end generated: {name} -->'")
    return out


def write_blocks(path: str | Path, tables: Mapping[str, str]) -> list[str]:
    """Splice every ``name → body`` of ``tables`` that has a block in the file at ``path``; returns the names written.

    Names without a block in that document are skipped (one run may produce tables for several documents).
    """
    path = Path(path)
    text = path.read_text()
    present = blocks(text)
    written = [name for name in tables if name in present]
    for name in written:
        text = splice(text, name, tables[name])
    path.write_text(text)
    return written


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A markdown table; ``|`` inside cells is escaped."""
    def cell(v) -> str:
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
