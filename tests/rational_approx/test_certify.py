"""Tests of rational_approx.verification.certify: the certificates must catch wrong claims, not just confirm right
ones."""

import json
import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rational_approx.cli import main
from rational_approx.errors import DegreeError, RationalApproxError, TargetError
from rational_approx.fitting.highprec import abs_minimax, relu_minimax
from rational_approx.fitting.mp_remez import HighPrecResult
from rational_approx.representation.barycentric import BarycentricRational
from rational_approx.representation.domain import Domain
from rational_approx.verification.certify import certify
from rational_approx.verification.exact import exact_rational
from rational_approx.verification.lower_bound import vallee_poussin_lower_bound
from rational_approx.verification.pole_free import certify_pole_free
from rational_approx.verification.upper_bound import certified_sup_error

E2 = 0.043689012692076362
E30 = 2.1739878201697943e-7
RELU_22 = (7 - 4 * math.sqrt(3)) / 2


@pytest.fixture(scope="module")
def abs4() -> HighPrecResult:
    return abs_minimax(4, check_bits=0)


def test_e2_bracketed_tightly():
    cert = certify("abs", abs_minimax(2, check_bits=0))
    assert cert.certified and cert.pole_free
    assert cert.lower <= E2 <= cert.upper
    assert cert.relative_width < 1e-7


def test_relu_2_2_closed_form_bracketed():
    from rational_approx.fitting.minimax import minimax

    cert = certify("relu", minimax("relu", (2, 2)))
    assert cert.certified
    assert cert.lower <= RELU_22 <= cert.upper
    assert cert.relative_width < 1e-6


def test_relu_2k_plus_1_2k_bracket_is_half_the_abs_error():
    cert = certify("relu", relu_minimax(2, check_bits=0))
    e4 = float(abs_minimax(4, check_bits=0).error)
    assert cert.certified and cert.lower <= e4 / 2 <= cert.upper


def test_perturbed_approximant_is_not_certified_at_the_original_error(abs4):
    E = float(abs4.error)
    bumped = HighPrecResult(
        **{**abs4.__dict__, "p": [abs4.p[0] + mpmath.mpf(E) * 1e-3 * abs4.q[0]] + abs4.p[1:]}
    )
    cert = certify("abs", bumped)
    assert cert.upper > E * (1 + 5e-4)  # the sup bound sees the perturbation
    assert cert.lower <= E  # and the lower bound stays a lower bound of the true best error
    sup = certified_sup_error("abs", bumped, points=abs4.extremal_points)
    assert not sup.upper <= E * (1 + 1e-6)


def test_wrong_claimed_error_is_outside_the_bracket(abs4):
    cert = certify("abs", abs4)
    assert not cert.lower <= 0.999 * float(abs4.error) <= cert.upper
    assert not cert.lower <= 1.001 * float(abs4.error) <= cert.upper


def test_denominator_with_zero_inside_is_not_pole_free():
    cert = certify_pole_free([1.0, 0.0, -4.0], (-1.0, 1.0))  # 1 − 4x², zeros at ±1/2
    assert not cert.pole_free and cert.zero_in is not None
    a, b = cert.zero_in
    assert a <= -0.5 <= b or a <= 0.5 <= b
    double = certify_pole_free([0.25, -1.0, 1.0], (-1.0, 1.0))  # (x − 1/2)², no sign change
    assert not double.pole_free
    ok = certify_pole_free([1.0, 0.0, 4.0], (-1.0, 1.0))
    assert ok.pole_free and 0.49 < ok.min_abs_q <= 1.0


def test_rational_with_pole_gets_no_upper_bound():
    # r = 1/(x − 0.3) has a pole inside [−1, 1]
    sup = certified_sup_error("abs", ([1.0, 0.0], [-0.3, 1.0]), Domain.interval(-1, 1), max_intervals=5000)
    assert sup.upper == math.inf and not sup.pole_free and not sup.complete


def test_pole_in_gap_is_allowed_on_gapped_domain_but_not_on_hull():
    q = [-0.0, 1.0]  # q(x) = x, zero in the gap of [−1, −0.1] ∪ [0.1, 1]
    dom = Domain.gapped(-1, 1, center=0.0, gap=0.1)
    assert certify_pole_free(q, dom).pole_free
    assert not certify_pole_free(q, Domain.interval(-1, 1)).pole_free


def test_safe_pade_forms():
    for form in ("safe_pade", "safe_pade_abs"):
        for dtype in ("float64", "float32"):
            cert = certify_pole_free([0.7, -1.3, 0.2, 2.0], (-3.0, 3.0), form=form, dtype=dtype)
            assert cert.pole_free and cert.min_abs_q == 1.0
    overflow = certify_pole_free([1e300, 1e300], (-1e10, 1e10), form="safe_pade")
    assert not overflow.pole_free
    with pytest.raises(RationalApproxError):
        certify_pole_free([1.0], (-1.0, 1.0), form="nonsense")


def test_vallee_poussin_reports_too_few_points(abs4):
    lb = vallee_poussin_lower_bound("abs", abs4, points=abs4.extremal_points[:5])
    assert not lb.holds and lb.lower == 0.0
    assert "needs" in lb.notes[-1]


def test_vallee_poussin_defect_raises_the_requirement(abs4):
    # the type-(4,4) approximant seen as type (5,5) has defect 1 and needs 5 + 5 + 2 − 1 = 11 points
    lb = vallee_poussin_lower_bound("abs", abs4, type=(5, 5))
    assert lb.holds and lb.defect == 1 and lb.required == 11
    assert lb.lower <= float(abs4.error)


def test_exact_rational_from_barycentric_is_the_same_function():
    r = BarycentricRational(z=[-1.0, 0.0, 1.0], f=[1.0, 0.1, 1.0], w=[1.0, -2.0, 1.5])
    R = exact_rational(r)
    x = np.linspace(-0.95, 0.95, 101)
    np.testing.assert_allclose(R(x), r(x), rtol=1e-13)
    with pytest.raises(DegreeError):
        exact_rational(r, type=(1, 1))
    T = exact_rational(r, type=(1, 1), truncate=True)
    assert T.type == (1, 1) and T.is_exact and "truncated" in T.notes[0]


def test_callable_target_without_ball_form_is_rejected():
    from rational_approx.representation.targets import Target

    tgt = Target.from_callable(np.tanh, name="tanh")
    with pytest.raises(TargetError):
        certified_sup_error(tgt, ([0.0, 1.0], [1.0]), Domain.interval(-1, 1))


def test_gapped_target_certificate_states_its_class():
    from rational_approx.fitting.minimax import minimax

    res = minimax("heaviside", (3, 3))
    cert = certify("heaviside", res)
    assert cert.certified
    assert cert.lower <= res.error <= cert.upper
    assert cert.lower_class in ("domain", "hull")
    if cert.lower_class == "hull":
        assert any("convex hull" in n for n in cert.notes)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(min_value=-2, max_value=2), min_size=1, max_size=4),
    st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=3),
)
def test_sup_bound_dominates_sampled_error(pc, qc):
    # q = 1 + Σ qc_j x^{2j} > 0, so the bound must exist and exceed every sampled |f − r|
    q = [1.0]
    for c in qc:
        q += [0.0, c]
    sup = certified_sup_error("relu", (pc, q), Domain.interval(-1, 1), rtol=1e-6)
    x = np.linspace(-1, 1, 4001)
    r = np.polynomial.polynomial.polyval(x, pc) / np.polynomial.polynomial.polyval(x, q)
    sampled = np.max(np.abs(np.maximum(x, 0) - r))
    assert sup.complete and sup.pole_free
    assert sup.lower <= sup.upper
    assert sampled <= sup.upper * (1 + 1e-12)
    assert sup.upper <= max(sup.lower, 1e-300) * (1 + 1e-6) or sup.upper - sup.lower < 1e-12


def test_cli_certify_command(capsys):
    assert main(["certify", "--target", "abs", "--type", "4,4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("lower", "upper", "certified", "method", "seconds"):
        assert key in out
    assert out["certified"] is True and out["lower"] <= out["upper"]


@pytest.mark.slow
def test_e30_bracketed_with_relative_width_1e_6():
    cert = certify("abs", abs_minimax(30))
    assert cert.certified
    assert cert.lower <= E30 <= cert.upper
    assert cert.relative_width <= 1e-6


def test_approximant_to_certify_picks_the_source():
    from rational_approx.fitting.mp_remez import HighPrecResult
    from rational_approx.representation.targets import get_target
    from rational_approx.verification.certify import approximant_to_certify

    relu = get_target("relu")
    dom = relu.default_domain(None)
    seen = []
    r, how = approximant_to_certify(relu, (3, 2), dom, source="auto", progress=seen.append)
    assert how == "highprec.relu_minimax(1)" and isinstance(r, HighPrecResult) and seen
    assert float(r.error) == pytest.approx(0.021844506346038181, rel=1e-15)
    r, how = approximant_to_certify(relu, (3, 2), dom, source="minimax")
    assert how == "minimax (double precision)" and not isinstance(r, HighPrecResult)
    r, how = approximant_to_certify(relu, (2, 2), dom, source="highprec", prec=128)
    assert how == "minimax refined at 128 bits" and isinstance(r, HighPrecResult)
    assert float(r.error) == pytest.approx((7 - 4 * 3**0.5) / 2, rel=1e-12)  # best (2, 2) error of ReLU
    r, how = approximant_to_certify(relu, (2, 2), dom, source="auto")
    assert how == "minimax (double precision)"
    with pytest.raises(RationalApproxError, match="source"):
        approximant_to_certify(relu, (3, 2), dom, source="best")
