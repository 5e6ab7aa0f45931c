"""rational-approx CLI: the documented JSON keys, one-line errors with exit status 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rational_approx.cli import main
from rational_approx.representation.barycentric import BarycentricRational

KEYS = {"target", "type", "domain", "method", "error", "converged", "seconds", "poles", "representation"}


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_fit_json_has_the_documented_keys_and_a_usable_representation(capsys):
    code, out, _ = run(capsys, "fit", "--target", "abs", "--type", "6,6", "--method", "minimax", "--json")
    assert code == 0
    d = json.loads(out)
    assert KEYS <= d.keys()
    assert d["type"] == [6, 6] and d["converged"] is True and d["domain"] == [[-1.0, 1.0]]
    bary = d["representation"]["barycentric"]
    r = BarycentricRational(bary["support"], bary["values"], bary["weights"])
    x = np.linspace(-1, 1, 2001)
    assert np.max(np.abs(np.abs(x) - r(x))) <= d["error"] * (1 + 1e-9)
    mono = d["representation"]["monomial"]
    p = np.polynomial.polynomial.polyval(x, mono["numerator"]) / np.polynomial.polynomial.polyval(
        x, mono["denominator"])
    assert np.max(np.abs(p - r(x))) < 0.1 * d["error"]


@pytest.mark.parametrize("method", ["aaa", "lawson"])
def test_other_methods(capsys, method):
    code, out, _ = run(capsys, "fit", "--target", "relu", "--type", "4,4", "--method", method, "--json")
    assert code == 0 and json.loads(out)["method"] == method


def test_gate_with_gap_and_union_domain(capsys):
    code, out, _ = run(capsys, "fit", "--target", "sign", "--type", "4,4", "--domain=-1,-0.1;0.1,1", "--json")
    d = json.loads(out)
    assert code == 0 and d["domain"] == [[-1.0, -0.1], [0.1, 1.0]] and d["converged"]


def test_ill_conditioned_monomials_are_withheld(capsys):
    code, out, _ = run(capsys, "fit", "--target", "abs", "--type", "40,40", "--json")
    d = json.loads(out)
    assert code == 0 and d["representation"]["monomial"] is None
    assert d["representation"]["monomial_conversion_error"] > d["error"]


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["fit", "--target", "abs", "--type", "x,y"], "--type"),
        (["fit", "--target", "abs", "--type=-1,2"], "--type"),
        (["fit", "--target", "sign", "--type", "4,4", "--domain=-1,1"], "half the jump"),
        (["fit", "--target", "abs", "--type", "2,2", "--domain=1,-1"], "reversed"),
        (["fit", "--target", "abs", "--type", "3,2", "--method", "aaa"], "aaa produces type (n, n)"),
    ],
)
def test_bad_arguments_give_one_line_and_status_2(capsys, argv, fragment):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err


def test_argparse_errors_exit_2_without_usage_dump(capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--target", "nope", "--type", "2,2"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1


def test_study_writes_json_and_figure(capsys, tmp_path):
    code, out, _ = run(capsys, "study", "--n-max", "6", "--quiet", "--json-out", str(tmp_path / "s.json"),
                       "--figure", str(tmp_path / "s.png"), "--json")
    assert code == 0
    rows = json.loads((tmp_path / "s.json").read_text())["rows"]
    assert [r["n"] for r in rows] == [2, 4, 6] and all(r["abs_converged"] for r in rows)
    assert abs(rows[0]["abs_error"] - 0.043689012692076362) < 1e-15
    assert (tmp_path / "s.png").stat().st_size > 10_000
