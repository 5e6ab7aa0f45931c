"""Hostile-input classes of issue 12 for rational_approx (the rows of docs/reliability.md, section rational_approx).

Each test tries one class of input and asserts the clear error or the correct answer: one line on stderr and exit status
2 for the command line, a typed :class:`RationalApproxError` for the API, strict JSON for every ``--json``.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from rational_approx import Domain, certify, certify_pole_free, lawson, minimax
from rational_approx.cli import dumps, main
from rational_approx.errors import DegreeError, DomainError, RationalApproxError, TargetError
from rational_approx.fitting import aaa as aaa_module
from rational_approx.fitting.highprec import abs_minimax
from rational_approx.representation.barycentric import BarycentricRational, parse_type
from rational_approx.representation.extrema import alternating_indices
from rational_approx.verification import upper_bound

E4 = 0.00850148470407383  # E_{4,4}(|x|, [−1, 1]) (Varga, Ruttan & Carpenter 1993; REFERENCE.md)


def _strict(text: str):
    def bad(token):
        raise AssertionError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=bad)


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code: int, out: str, err: str, fragment: str, status: int = 2) -> None:
    assert code == status and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err and fragment in err


# ---------------------------------------------------------------------------------- item 7: every error, one line
def test_cli_turns_an_internal_error_into_one_line(capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise TypeError("something unexpected")

    monkeypatch.setattr(aaa_module, "aaa", boom)
    code, out, err = run(capsys, "fit", "--type", "4,4", "--method", "aaa")
    one_line_error(code, out, err, "rational-approx fit: error: internal error (TypeError: something unexpected); "
                   "rerun with --traceback", status=1)


@pytest.mark.parametrize("argv", [["fit", "--type"], ["fit", "--type", "4,4", "--method", "newton"],
                                  ["certify", "--type", "4,4", "--rtol", "abc"], ["nope"]])
def test_cli_argument_errors_are_one_line(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "usage" not in err


# ------------------------------------------------------------------------ item 9: unusable output paths, up front
@pytest.mark.parametrize("flag", ["--figure", "--json-out"])
def test_study_refuses_unwritable_or_folder_outputs_before_work(capsys, tmp_path, flag):
    for path, fragment in ((str(tmp_path), "is a folder"), ("/proc/rational_approx_test/x.png", "cannot be written")):
        code, out, err = run(capsys, "study", "--n-max", "2", "--quiet", flag, path)
        one_line_error(code, out, err, fragment)
    assert list(tmp_path.iterdir()) == []  # no stray .tmp


def test_study_n_max_below_two_is_refused(capsys):
    code, out, err = run(capsys, "study", "--n-max", "0")
    one_line_error(code, out, err, "--n-max must be at least 2")


# ------------------------------------------------------------------------------------- item 11: API tracebacks
def test_certify_bad_approximants_are_typed_errors():
    with pytest.raises(RationalApproxError, match="cannot certify an object of type str"):
        certify("abs", "hello")
    with pytest.raises(RationalApproxError, match="finite numbers"):
        certify("abs", ([1.0, math.nan], [1.0]))
    with pytest.raises(RationalApproxError, match="non-empty list"):
        certify("abs", (1.0, [1.0]))


def test_certify_pole_free_reads_a_pq_pair():
    pf = certify_pole_free(([1.0], [0.0, 1.0]), Domain.interval(-1, 1))  # q = x: a zero at 0
    assert not pf.pole_free and pf.zero_in is not None and pf.zero_in[0] <= 0 <= pf.zero_in[1]
    assert certify_pole_free(([1.0], [2.0, 1.0]), Domain.interval(-1, 1)).pole_free  # q = 2 + x


@pytest.mark.parametrize("init, error, fragment", [
    (np.zeros((3, 3)), RationalApproxError, "1-D array"),
    ([0.1, math.nan, 0.5], RationalApproxError, "NaN"),
    ([0.1, 0.3, 5.0], DomainError, "outside the domain"),
    ([0.2], RationalApproxError, "at least 2"),
])
def test_minimax_init_is_validated(init, error, fragment):
    with pytest.raises(error, match=fragment):
        minimax("abs", (4, 4), init=init)


@pytest.mark.parametrize("fn, fragment", [
    (lambda x: np.concatenate([x, x]), "returned shape"),
    (lambda x: np.stack([x, x], axis=1), "returned shape"),
    (lambda x: x + 0j, "complex values"),
])
def test_callables_with_wrong_output_are_typed_errors(fn, fragment):
    with pytest.raises(TargetError, match=fragment):
        minimax(fn, (2, 2))


def test_callable_is_not_mistaken_for_a_named_target():
    def relu(x):  # a leaky ReLU under the name of a named target
        return np.where(x > 0, x, 0.1 * x)

    with pytest.raises(TargetError, match="no exact ball-arithmetic form"):
        certify(relu, ([0.0, 1.0], [1.0]))
    with pytest.raises(TargetError, match="do not apply"):
        minimax(relu, (3, 2), theta=0.5)


# ------------------------------------------------------ item 12: poles in the domain are never "converged"
def test_fit_with_poles_in_domain_is_not_converged_and_prints_no_warning(capsys):
    code, out, err = run(capsys, "fit", "--type", "4,4", "--domain=-1e300,1e300", "--symmetry", "none", "--json")
    assert code == 1 and out == "" and "converge" in err and err.count("\n") == 1  # ConvergenceError: failed work
    assert "RuntimeWarning" not in err
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning escapes the API either
        res = minimax("abs", (4, 4), (-1e300, 1e300), symmetry="none", raise_on_failure=False)
    assert not res.converged and res.r.real_poles_in(res.domain.intervals).size > 0
    res = aaa_module.aaa(lambda x: 1.0 / (x - 0.3) + x)
    assert res.real_poles_in_domain.size == 1 and not res.converged


def test_even_reduction_overflow_names_the_users_domain():
    with pytest.raises(DomainError, match=r"1e\+200.*too wide"):
        minimax("abs", (4, 4), "-1e200,1e200")


# ----------------------------------------------------------------------- item 13: polynomials have no poles
@pytest.mark.parametrize("target, type_", [("heaviside", (30, 0)), ("abs", (10, 0))])
def test_polynomial_types_report_no_poles(capsys, target, type_):
    code, out, _ = run(capsys, "fit", "--target", target, "--type", f"{type_[0]},{type_[1]}", "--json")
    d = _strict(out)
    assert code == 0 and d["poles"] == [] and d["real_poles_in_domain"] == []


def test_poles_keep_at_most_n():
    r = minimax("relu", (5, 4)).r  # N = 5 support points' worth of pencil eigenvalues, n = 4
    assert r.poles().size <= 4 and r.zeros().size <= 5


# ----------------------------------------------------------------- item 14: targets that lie in R_{m,n}
@pytest.mark.parametrize("fn, type_", [
    (lambda x: np.ones_like(x), (4, 4)),
    (lambda x: np.ones_like(x), (2, 2)),
    (lambda x: x, (4, 4)),
    (lambda x: 1.0, (3, 3)),  # a scalar-returning callable
    (lambda x: (1 + x) / (2 + x), (3, 3)),
])
def test_minimax_returns_targets_in_the_class_with_zero_error(fn, type_):
    res = minimax(fn, type_)
    assert res.converged and res.degenerate and res.error < 1e-13
    x = np.linspace(-1, 1, 1001)
    assert np.max(np.abs(res.r(x) - np.broadcast_to(fn(x), x.shape))) < 1e-13
    assert "degenerate" in res.to_dict()["note"]


def test_non_rational_callable_is_not_called_degenerate():
    res = minimax(np.exp, (3, 3))
    assert res.converged and not res.degenerate and res.error > 1e-8


# ------------------------------------------------------------------------- item 15: strict JSON everywhere
def test_certify_json_is_strict_with_null_and_reason():
    cert = certify("abs", ([1.0], [0.0, 1.0]))  # r = 1/x is unbounded on [−1, 1]: no finite upper bound
    assert cert.upper == math.inf and not cert.certified
    d = _strict(dumps(cert.to_dict()))
    assert d["upper"] is None and "could not be proved finite" in d["upper_note"]
    assert d["relative_width"] is None and d["relative_width_note"]


def test_fit_and_study_json_are_strict(capsys, tmp_path):
    code, out, _ = run(capsys, "fit", "--type", "4,4", "--method", "aaa", "--json")
    assert code == 0 and _strict(out)["method"] == "aaa"
    code, out, _ = run(capsys, "study", "--n-max", "2", "--quiet", "--json")
    assert code == 0 and _strict(out)["rows"][0]["n"] == 2


# ------------------------------------------------------------------------- item 16: --rtol and friends checked
@pytest.mark.parametrize("flag, value, fragment", [
    ("--rtol", "nan", "rtol must be"), ("--rtol", "-1", "rtol must be"), ("--rtol", "1", "rtol must be"),
    ("--prec", "8", "prec must be"), ("--max-seconds", "0", "max_seconds must be"),
])
def test_certify_work_options_are_validated(capsys, flag, value, fragment):
    code, out, err = run(capsys, "certify", "--type", "4,4", flag, value)
    one_line_error(code, out, err, fragment)


# --------------------------------------------------------------- item 17: progress and a rigorous partial bracket
def test_certify_time_limit_gives_a_labelled_rigorous_partial_bracket(monkeypatch):
    monkeypatch.setattr(upper_bound, "PROGRESS_SECONDS", 0.0)
    messages: list[str] = []
    cert = certify("abs", abs_minimax(4, check_bits=0), rtol=1e-15, max_seconds=0.02, progress=messages.append)
    assert cert.partial and cert.to_dict()["partial"] is True
    assert any("time limit" in n for n in cert.notes)
    assert cert.lower <= E4 <= cert.upper  # still rigorous
    assert any(m.startswith("upper bound:") for m in messages)


def test_certify_cli_reports_progress_on_stderr(capsys):
    code, out, err = run(capsys, "certify", "--type", "4,4", "--json")
    assert code == 0 and _strict(out)["partial"] is False
    assert "rational-approx certify: computing the approximant" in err


# ------------------------------------------------------- item 18: no silent defaults, no misleading messages
@pytest.mark.parametrize("argv, fragment", [
    (["fit", "--type", "4,4", "--domain="], "cannot parse domain"),
    (["fit", "--type", "4,4", "--maxiter", "0"], "maxiter must be a positive integer"),
    (["fit", "--type", "4,4", "--maxiter", "-3"], "maxiter must be a positive integer"),
    (["fit", "--target", "sign", "--type", "4,4", "--domain=-1,-0.1;0.1,1", "--gap", "0.2"], "gap"),
])
def test_cli_refuses_what_it_used_to_ignore(capsys, argv, fragment):
    code, out, err = run(capsys, *argv)
    one_line_error(code, out, err, fragment)


def test_api_refuses_what_it_used_to_ignore():
    with pytest.raises(RationalApproxError, match="tol must be"):
        minimax("abs", (4, 4), tol=math.nan)
    with pytest.raises(TargetError, match="not callables"):
        certify(lambda x: abs(x), ([0.0], [1.0]))
    with pytest.raises(TargetError, match="do not apply"):
        lawson(np.abs, (2, 2), theta=0.3)


# -------------------------------------------------------------------------- one type parser, one exchange rule
@pytest.mark.parametrize("bad", [(-1, 2), (1, 2, 3), "a", "1,x", "-1,2", 2.5, (1.0, 2), True, None, "1,2,3"])
def test_one_type_parser(bad):
    with pytest.raises(DegreeError, match="type must be"):
        parse_type(bad)
    assert parse_type(0) == (0, 0) and parse_type("9,8") == (9, 8) and parse_type(np.int64(3)) == (3, 3)
    with pytest.raises(DegreeError, match="type must be"):
        BarycentricRational([0.0, 1.0], [0.0, 1.0], [1.0, -1.0], type=(1, -1))


def test_type_zero_zero_is_the_best_constant():
    assert abs(minimax("abs", (0, 0)).error - 0.5) < 1e-12
    assert abs(lawson("abs", (0, 0)).error - 0.5) < 1e-3


def test_alternating_indices_is_generic_over_float_mpmath_and_arb():
    import mpmath
    from flint import arb

    values = [0.5, 0.9, -0.7, 0.0, 0.8, -0.1, 0.6]
    expect = alternating_indices(values, 4).tolist()
    assert alternating_indices([mpmath.mpf(v) for v in values], 4).tolist() == expect
    assert alternating_indices([arb(v) for v in values], 4).tolist() == expect
    # levels that tie in float are told apart in the working precision
    with mpmath.workdps(40):
        tiny = mpmath.mpf("1e-30")
        vals = [mpmath.mpf(1) + tiny, -mpmath.mpf(1), mpmath.mpf(1), -mpmath.mpf(1)]
    assert alternating_indices(vals, 3).tolist() == [0, 1, 2]  # the end with the smaller level goes
    assert alternating_indices([float(v) for v in vals], 3).tolist() == [1, 2, 3]  # in float the levels tie


def test_fit_results_read_alike():
    from rational_approx import aaa, relaxed_remez
    from rational_approx.representation.fit_result import FitResult

    results = [aaa("abs", degree=6), lawson("abs", 2), minimax("abs", (4, 4)), abs_minimax(4, check_bits=0),
               relaxed_remez("relu", (3, 2), grid_points=400, rounds=2)]
    common = {"target", "params", "type", "domain", "error", "converged", "iterations", "seconds", "method"}
    for res in results:
        assert isinstance(res, FitResult)
        d = _strict(dumps(res.to_dict()))
        assert common <= d.keys() and d["target"] in ("abs", "relu")
        assert isinstance(res.iterations, int) and res.seconds >= 0 and isinstance(res.converged, bool)
    assert results[0].samples.ndim == 1 and results[1].samples.ndim == 1  # `samples` is an array of abscissae


def test_reader_closing_the_pipe_gives_no_traceback():
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "rational_approx", "fit", "--type", "4,4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `| head` that has already exited
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    proc.stderr.close()
    assert "Traceback" not in err and proc.returncode == 141


def test_thresholds_that_do_not_apply_are_refused(capsys):
    code, out, err = run(capsys, "fit", "--target", "abs", "--theta", "0.3", "--type", "4,4")
    one_line_error(code, out, err, "theta does not apply")
    with pytest.raises(TargetError, match="tau does not apply"):
        minimax("jumprelu", (5, 4), tau=0.3)
