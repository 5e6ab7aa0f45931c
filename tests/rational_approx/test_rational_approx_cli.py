"""rational-approx CLI: the documented JSON keys; one-line errors and the exit statuses of rational_approx.cliutil."""

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
    code, out, _ = run(capsys, "study", "--n-max", "6", "--no-progress", "--json-out", str(tmp_path / "s.json"),
                       "--figure", str(tmp_path / "s.png"), "--json")
    assert code == 0
    rows = json.loads((tmp_path / "s.json").read_text())["rows"]
    assert [r["n"] for r in rows] == [2, 4, 6] and all(r["abs_converged"] for r in rows)
    assert abs(rows[0]["abs_error"] - 0.043689012692076362) < 1e-15
    assert (tmp_path / "s.png").stat().st_size > 10_000


# ------------------------------------------------------------- the exit-status convention (rational_approx.cliutil)
def _status(capsys, argv):
    """(exit status, stdout, stderr) of ``rational-approx argv``, argparse's SystemExit included."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(("argv", "status", "message"), [
    (["fit", "--type", "2,2", "--json"], 0, ""),
    (["fit", "--type", "4,4", "--no-such-option"], 2, "rational-approx: error: unrecognized arguments"),
    (["fit", "--type", "4,4", "--method", "newton"], 2, "rational-approx fit: error: argument --method"),
    (["fit", "--type", "4,4", "--domain=1,-1"], 2, "rational-approx fit: error: "),
    (["fit", "--target", "jumprelu", "--theta", "nan", "--type", "4,4"], 2, "rational-approx fit: error: "),
    # the fit runs and does not converge (ConvergenceError): failed work
    (["fit", "--type", "4,4", "--domain=-1e300,1e300", "--symmetry", "none"], 1, "rational-approx fit: error: "),
])
def test_exit_status_convention(capsys, argv, status, message):
    code, out, err = _status(capsys, argv)
    assert code == status, err
    if status == 0:
        assert err == "" and json.loads(out)["converged"] is True
    else:
        assert out == "" and err.count("\n") == 1 and err.startswith(message) and "Traceback" not in err


def test_interrupt_is_130_and_one_line(capsys, monkeypatch):
    import rational_approx.fitting.minimax as minimax_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(minimax_module, "minimax", interrupted)
    code, out, err = _status(capsys, ["fit", "--type", "4,4"])
    assert code == 130 and out == "" and err == "rational-approx fit: error: interrupted\n"


def test_internal_error_is_1_with_the_hint_and_traceback_reraises(capsys, monkeypatch):
    import rational_approx.fitting.minimax as minimax_module

    def bug(*args, **kwargs):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(minimax_module, "minimax", bug)
    code, out, err = _status(capsys, ["fit", "--type", "4,4"])
    assert code == 1 and out == ""
    assert err == ("rational-approx fit: error: internal error (ZeroDivisionError: oops); rerun with --traceback to "
                   "see the traceback\n")
    with pytest.raises(ZeroDivisionError, match="oops"):
        main(["fit", "--type", "4,4", "--traceback"])


def test_no_progress_is_the_spelling_and_quiet_a_hidden_alias():
    from rational_approx.cli import build_parser

    parser = build_parser()
    for flag in ("--no-progress", "--quiet"):
        assert parser.parse_args(["study", flag]).no_progress is True
        assert parser.parse_args(["certify", "--type", "4,4", flag]).no_progress is True
    assert parser.parse_args(["study"]).no_progress is False
    sub = next(a for a in parser._actions if a.dest == "command").choices["study"]
    assert "--no-progress" in sub.format_help() and "--quiet" not in sub.format_help()


def test_exit_table_first_matching_row_decides():
    from rational_approx.cliutil import RATIONAL_APPROX_EXIT_STATUS, error_line, exit_status
    from rational_approx.errors import ConvergenceError, DomainError

    assert exit_status(ConvergenceError("no"), RATIONAL_APPROX_EXIT_STATUS) == 1  # before its RationalApproxError base
    assert exit_status(DomainError("bad"), RATIONAL_APPROX_EXIT_STATUS) == 2
    assert exit_status(ValueError("bad"), RATIONAL_APPROX_EXIT_STATUS) == 2
    assert exit_status(OSError(28, "full"), RATIONAL_APPROX_EXIT_STATUS) == 1
    assert exit_status(KeyboardInterrupt(), RATIONAL_APPROX_EXIT_STATUS) == 130
    assert exit_status(TypeError("bug"), RATIONAL_APPROX_EXIT_STATUS) is None
    assert error_line("p", DomainError("a\nb"), RATIONAL_APPROX_EXIT_STATUS, (DomainError,)) == "p: error: a b"
    assert error_line("p", OSError(28, "full"), RATIONAL_APPROX_EXIT_STATUS, ()) == "p: error: OSError: [Errno 28] full"
