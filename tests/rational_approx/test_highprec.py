"""Tests of rational_approx.fitting.highprec: multiprecision Remez for |x|, ReLU and general targets."""

import math

import mpmath
import numpy as np
import pytest
from flint import arb
from hypothesis import given, settings
from hypothesis import strategies as st

from rational_approx.errors import DegreeError
from rational_approx.fitting.highprec import abs_minimax, abs_minimax_table, relu_minimax
from rational_approx.fitting.refine import refine_minimax
from rational_approx.representation.multiprecision import arb_from_mpf, mpf_from_arb
from rational_approx.representation.targets import get_target, piecewise_linear_form

with mpmath.workdps(40):  # the reference values, exactly as printed (17 digits)
    E2 = mpmath.mpf("0.043689012692076362")  # Chebfun's minimax test suite (REFERENCE.md)
    E30 = mpmath.mpf("2.1739878201697943e-7")


def test_e2_matches_reference_to_all_given_digits():
    res = abs_minimax(2)
    with mpmath.workdps(40):  # agree to half a unit in the last printed digit
        assert abs(res.error - E2) <= mpmath.mpf("0.5e-18")
    assert res.digits > 30
    assert res.type == (2, 2)


def test_equioscillation_of_the_returned_coefficients():
    res = abs_minimax(8)
    errs = res.extremal_errors
    assert len(errs) == 2 * 8 + 3  # 0 and ±√t_i for the 2k + 1 = n + 1 other points of √t
    signs = [mpmath.sign(e) for e in errs]
    assert all(a == -b for a, b in zip(signs, signs[1:], strict=False))
    with mpmath.workprec(res.prec):
        assert max(abs(abs(e) / res.error - 1) for e in errs) < mpmath.mpf(2) ** (-res.prec // 2)


def test_odd_type_reuses_the_even_approximant():
    even, odd = abs_minimax(4, check_bits=0), abs_minimax(5, check_bits=0)
    assert odd.error == even.error
    assert odd.type == (5, 5)
    assert any("defect 1" in n for n in odd.notes)


def test_table_is_decreasing_and_close_to_stahl():
    rows = abs_minimax_table(12, check_bits=0)
    errs = [float(r.error) for r in rows]
    assert [r.type[0] for r in rows] == [2, 4, 6, 8, 10, 12]
    assert all(a > b for a, b in zip(errs, errs[1:], strict=False))
    ratios = [e / (8 * math.exp(-math.pi * math.sqrt(n))) for e, n in zip(errs, range(2, 13, 2), strict=True)]
    assert 0.4 < ratios[0] < 0.5 and all(a < b for a, b in zip(ratios, ratios[1:], strict=False))


def test_relu_3_2_matches_reference_coefficients():
    res = relu_minimax(1)
    q0 = res.q[0]
    p = [float(c / q0) for c in res.p]
    q = [float(c / q0) for c in res.q]
    np.testing.assert_allclose(
        p, [0.021844506346038181, 0.5, 1.5957439419765594, 1.1914878839531187], rtol=1e-15
    )
    np.testing.assert_allclose(q, [1.0, 0.0, 2.3829757679062375], rtol=1e-15, atol=1e-300)
    with mpmath.workdps(40):
        assert abs(res.error - E2 / 2) <= mpmath.mpf("0.5e-18")


def test_to_barycentric_reproduces_the_error():
    res = abs_minimax(6, check_bits=0)
    r = res.to_barycentric()
    x = np.linspace(-1, 1, 20001)
    err = np.max(np.abs(np.abs(x) - r(x)))
    assert abs(err - float(res.error)) < 1e-6 * float(res.error)


def test_invalid_degrees_raise():
    with pytest.raises(DegreeError):
        abs_minimax(0)
    with pytest.raises(DegreeError):
        abs_minimax(1)
    with pytest.raises(DegreeError):
        relu_minimax(0)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=-(2**400), max_value=2**400), st.integers(min_value=-2000, max_value=2000))
def test_mpf_arb_round_trip_is_exact(man, exp):
    x = mpmath.mp.make_mpf(mpmath.libmp.from_man_exp(man, exp))
    a = arb_from_mpf(x)
    assert a.is_exact()
    assert mpf_from_arb(a) == x


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["abs", "relu", "sign", "heaviside", "jumprelu", "topk_gate"]),
    st.floats(min_value=-1, max_value=1, allow_nan=False),
)
def test_piecewise_linear_form_is_the_target(name, x):
    tgt = get_target(name)
    breaks, piece = piecewise_linear_form(tgt)
    if any(x == b for b in breaks):
        return
    alpha, beta = piece(x)
    assert float(arb(alpha) * arb(x) + arb(beta)) == float(tgt(np.array(x)))


def test_refine_minimax_reaches_closed_form_relu_2_2():
    from rational_approx.fitting.minimax import minimax

    res = refine_minimax(minimax("relu", (2, 2)), prec=200)
    with mpmath.workdps(80):
        exact = (7 - 4 * mpmath.sqrt(3)) / 2
        assert abs(res.error - exact) / exact < mpmath.mpf(10) ** -28
    assert res.converged and res.method == "remez-chebyshev"


@pytest.mark.slow
def test_e30_matches_reference():
    res = abs_minimax(30)
    with mpmath.workdps(40):
        assert abs(res.error - E30) <= mpmath.mpf("0.5e-23")
    assert res.digits > 20


def test_sqrt_sweep_resumed_matches_the_uninterrupted_sweep():
    from rational_approx.fitting.highprec import abs_result, sqrt_sweep

    full = [s for s, *_ in sqrt_sweep(5)]
    *_, (k3, _, _, _) = sqrt_sweep(3)
    again = [s for s, *_ in sqrt_sweep(5, resume=(k3.ts, [full[1].h, k3.h]))]
    assert [s.k for s in again] == [4, 5]
    for a, b in zip(full[3:], again, strict=True):
        assert abs(float((a.h - b.h) / a.h)) < 1e-40  # same level to far beyond double precision
    res = abs_result(full[-1], 10, 240, float("nan"), 0.0)
    assert res.type == (10, 10) and len(res.extremal_points) == 2 * 10 + 3
    with pytest.raises(DegreeError, match="resume"):
        next(sqrt_sweep(5, resume=([arb(0), arb(1)], [arb(1)])))


def test_continuation_reference_stretches_and_jitters_reproducibly():
    from rational_approx.fitting.highprec import continuation_reference, sqrt_sweep

    *_, (s3, _, _, _) = sqrt_sweep(3)
    ref = continuation_reference(s3.ts, 4)
    assert len(ref) == 2 * 4 + 2 and ref[0] == 0 and ref[-1] == 1
    assert all(float(a) < float(b) for a, b in zip(ref, ref[1:]))
    j1 = continuation_reference(s3.ts, 4, jitter=0.1)
    j2 = continuation_reference(s3.ts, 4, jitter=0.1)
    assert [float(x) for x in j1] == [float(x) for x in j2]  # seeded: the same start every time
    assert [float(x) for x in j1] != [float(x) for x in ref]
    assert all(float(a) < float(b) for a, b in zip(j1, j1[1:]))  # jitter < half a gap keeps the order
    with pytest.raises(DegreeError, match="reference"):
        continuation_reference(s3.ts, 5)
