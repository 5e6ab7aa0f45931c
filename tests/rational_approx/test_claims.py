"""Tests of rational_approx.verification.claims: structure, verdicts, certificates and the CLI hooks."""

import json

import pytest

from rational_approx.cli import build_parser
from rational_approx.errors import RationalApproxError
from rational_approx.verification.claims import CLAIM_IDS, _newman_pq, claims, claims_markdown
from rational_approx.verification.theory import newman_rational

KEYS = {"id", "claim", "source", "claimed", "measured", "command", "verdict", "condition", "certified", "details",
        "seconds"}


def test_cheap_claims_hold_and_are_certified():
    rows = claims(["relu_closed_forms", "zolotarev", "safe_pade_pole_free"])
    assert [r["id"] for r in rows] == ["relu_closed_forms", "zolotarev", "safe_pade_pole_free"]
    for r in rows:
        assert set(r) == KEYS
        assert r["verdict"] == "holds" and r["certified"] is True
        assert r["command"] == f"rational-approx claims --json --only {r['id']}"
        json.dumps(r, default=str)
    # the certified brackets contain the claimed closed forms
    br = rows[0]["details"]["certified_brackets"]
    assert br["(2,2)"][0] <= 0.035898384862245614 <= br["(2,2)"][1]
    for v in rows[1]["details"].values():
        lo, hi = v["certified"]
        assert lo <= v["elliptic_exact"] <= hi and (hi - lo) / lo < 1e-6


def test_relu_mse_claim_is_conditional_with_the_right_scale():
    (r,) = claims(["relu_mse"])
    assert r["source"] == "paper" and r["verdict"].startswith("holds only")
    assert r["measured"] > 100 * r["claimed"]  # not achievable on [-1, 1] at type (3, 2)
    assert "0.05" in r["condition"]  # a ≈ 0.053
    assert not r["certified"]


def test_newman_coefficients_are_newmans_rational():
    import mpmath

    for n in (3, 8):
        p, q = _newman_pq(n)
        r = newman_rational(n)
        for x in (0.37, -0.8, 1e-3):
            val = mpmath.polyval(p[::-1], x) / mpmath.polyval(q[::-1], x)
            assert abs(float(val) - float(r.eval_mp(x))) < 1e-14


def test_markdown_and_unknown_ids():
    row = {"id": "x", "claim": "a | b", "source": "paper", "claimed": 1.0, "measured": {"k": 2.0},
           "command": "c", "verdict": "fails", "condition": "", "certified": False, "details": {}}
    md = claims_markdown([row])
    assert md.splitlines()[2].count("|") == 8 + 1  # the pipe inside the claim is escaped
    assert "a \\| b" in md and "fails" in md
    with pytest.raises(RationalApproxError):
        claims(["no_such_claim"])


def test_cli_hooks():
    parser = build_parser()
    args = parser.parse_args(["claims", "--json", "--only", "bernstein"])
    out = args.run(args)
    assert [r["id"] for r in out["claims"]] == ["bernstein"]
    assert out["claims"][0]["verdict"] == "holds"
    assert "| claim |" in out["markdown"]
    assert len(CLAIM_IDS) == len(set(CLAIM_IDS)) >= 14
    with pytest.raises(SystemExit):
        parser.parse_args(["claims", "--only", "nope"])
