"""Tests of rational_approx.verification.claims: structure, verdicts, certificates, the CLI hooks, and that the
committed tables of docs/theory_and_claims.md are what the code writes."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import rational_approx.verification.claims as claims_mod
from rational_approx.cli import build_parser
from rational_approx.errors import RationalApproxError
from rational_approx.verification.claims import (
    CLAIM_IDS,
    FAST_CLAIM_IDS,
    claims,
    claims_markdown,
    doc_tables,
    update_claims_block,
)
from rational_approx.verification.markdown import blocks
from rational_approx.verification.theory import newman_rational

KEYS = {"id", "claim", "source", "claimed", "measured", "command", "verdict", "condition", "certified",
        "certified_class", "details", "seconds"}
DOC = Path(__file__).resolve().parents[2] / "docs" / "theory_and_claims.md"


def test_cheap_claims_hold_and_are_certified():
    rows = claims(["relu_closed_forms", "zolotarev", "safe_pade_pole_free"])
    assert [r["id"] for r in rows] == ["relu_closed_forms", "zolotarev", "safe_pade_pole_free"]
    for r in rows:
        assert set(r) == KEYS
        assert r["verdict"] == "holds" and r["certified"] is True and r["certified_class"]
        assert r["command"] == f"rational-approx claims --json --only {r['id']}"
        json.dumps(r, allow_nan=False, default=str)
    # the certified brackets contain the claimed closed forms
    br = rows[0]["details"]["certified_brackets"]
    assert br["(2,2)"][0] <= 0.035898384862245614 <= br["(2,2)"][1]
    for v in rows[1]["details"]["checks"].values():
        lo, hi = v["certified"]
        assert lo <= v["elliptic_exact"] <= hi and (hi - lo) / lo < 1e-6
        assert v["lower_class"] == "hull"  # at type (n, n) on a gapped set: competitors without a pole in the gap
    assert "no pole in the gap" in rows[1]["certified_class"]


def _committed_blocks() -> dict[str, str]:
    return blocks(DOC.read_text())


@pytest.mark.parametrize("ids", [("zolotarev", "relu_closed_forms", "gate_log_product", "safe_pade_pole_free"),
                                 ("newman",)])
def test_fast_rows_and_tables_equal_the_committed_doc(ids):
    assert set(ids) <= set(FAST_CLAIM_IDS)
    committed = _committed_blocks()
    rows = claims(list(ids))
    table = committed["claims"].splitlines()
    for r in rows:
        assert claims_markdown([r]).splitlines()[-1] in table, f"claims row {r['id']} differs from the doc"
    for name, body in doc_tables(rows).items():
        if name in ("zolotarev", "newman"):  # tables determined by these claims alone
            assert body == committed[name], f"table {name} differs from docs/theory_and_claims.md"


def test_every_claim_has_one_row_in_the_committed_table():
    table = _committed_blocks()["claims"]
    for cid in CLAIM_IDS:
        assert table.count(f"`rational-approx claims --json --only {cid}` |") == 1
    assert "350×" not in DOC.read_text()


def test_relu_mse_verdict_is_computed_not_fixed(monkeypatch):
    """With a (fake) fit reaching the claimed MSE the verdict flips to holds: nothing in the claim is hard-coded."""
    def fake_fit(t, y, type, *, form, random_starts, seed):
        r = SimpleNamespace(a=np.zeros(4), b=np.zeros(2))
        return SimpleNamespace(mse=1e-7 * (1 + seed * 1e-9), starts=9, r=r)

    monkeypatch.setattr(claims_mod, "least_squares_fit", fake_fit)
    (r,) = claims(["relu_mse"])
    assert r["verdict"] == "holds" and r["measured"] == pytest.approx(1e-7)
    assert r["details"]["minimax_grid_mse"] == pytest.approx(2.294e-4, rel=1e-3)


@pytest.mark.slow
def test_relu_mse_claim_fails_as_stated_with_the_interval_where_it_would_hold():
    (r,) = claims(["relu_mse"])
    assert r["source"] == "paper" and r["verdict"] == "fails"
    assert r["measured"] == pytest.approx(1.3374e-4, rel=1e-3)  # best (3,2) grid MSE, plain and safe forms
    assert r["details"]["runs_relative_spread"] < 1e-6  # every multi-start run finds the same optimum
    assert r["details"]["interval_half_width_for_claim"] == pytest.approx(0.0533, abs=5e-4)
    assert not r["certified"]


def test_newman_coefficients_are_newmans_rational():
    import mpmath

    for n in (3, 8):
        p, q = newman_rational(n).monomial_coefficients()
        r = newman_rational(n)
        for x in (0.37, -0.8, 1e-3):
            val = mpmath.polyval(p[::-1], x) / mpmath.polyval(q[::-1], x)
            assert abs(float(val) - float(r.eval_mp(x))) < 1e-14


ROW = {"id": "x", "claim": "a | b", "source": "paper", "claimed": 1.0, "measured": {"k": 2.0},
       "command": "rational-approx claims --json --only x", "verdict": "fails", "condition": "",
       "certified": False, "certified_class": "", "details": {}}


def test_markdown_and_unknown_ids():
    md = claims_markdown([ROW])
    assert md.splitlines()[2].count("|") == 8 + 1  # the pipe inside the claim is escaped
    assert "a \\| b" in md and "fails" in md
    cert = claims_markdown([ROW | {"certified": True, "certified_class": "lower bound for X"}])
    assert "yes — lower bound for X" in cert
    with pytest.raises(RationalApproxError):
        claims(["no_such_claim"])


def test_update_claims_block_replaces_only_the_claims_run():
    other = ROW | {"id": "y", "command": "rational-approx claims --json --only y"}
    block = claims_markdown([ROW, other])
    new = update_claims_block(block, [ROW | {"verdict": "holds"}])
    assert new.splitlines()[2].count("holds") == 1 and new.splitlines()[3] == block.splitlines()[3]
    with pytest.raises(RationalApproxError):
        update_claims_block(claims_markdown([other]), [ROW])


def test_cli_hooks():
    parser = build_parser()
    args = parser.parse_args(["claims", "--json", "--only", "safe_pade_pole_free"])
    out = args.run(args)
    assert [r["id"] for r in out["claims"]] == ["safe_pade_pole_free"]
    assert out["claims"][0]["verdict"] == "holds"
    assert "| claim |" in out["markdown"]
    assert len(CLAIM_IDS) == len(set(CLAIM_IDS)) >= 15
    with pytest.raises(SystemExit):
        parser.parse_args(["claims", "--only", "nope"])
