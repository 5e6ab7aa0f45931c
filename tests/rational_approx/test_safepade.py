"""Tests of rational_approx.representation.safepade: the safe-Padé form, the relaxed Remez exchange and grid least
squares."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rational_approx.errors import DegreeError, RationalApproxError
from rational_approx.representation.safepade import SafePade, least_squares_fit, linearized_init, relaxed_remez

RELU_32 = 0.021844506346038181  # best type-(3,2) error of ReLU on [-1, 1]
BNT_A = [0.021844506346038181, 0.5, 1.5957439419765594, 1.1914878839531187]
BNT_B = [0.0, 2.3829757679062375]


@given(st.lists(st.floats(-50, 50), min_size=1, max_size=6), st.floats(-1, 1))
@settings(max_examples=60, deadline=None)
def test_safe_denominator_is_at_least_one(b, t):
    r = SafePade([1.0], b)
    assert r.denominator(np.array([t]))[0] >= 1.0


def test_best_relu_rational_is_a_safe_pade_form():
    r = SafePade(BNT_A, BNT_B)
    assert r.is_rational_on((-1, 1)) and r.sign_changes().size == 0
    x = np.linspace(-1, 1, 200001)
    assert np.max(np.abs(np.maximum(x, 0) - r(x))) == pytest.approx(RELU_32, rel=1e-6)


def test_sign_change_of_B_escapes_the_rational_lower_bound():
    # b t² / (1 + |b t|) → |t| with error ≤ 1/b: type (2, 1) beats the best type-(2,2) rational error 0.0437
    b = 1000.0
    r = SafePade([0.0, 0.0, b], [b])
    x = np.linspace(-1, 1, 100001)
    err = np.max(np.abs(np.abs(x) - r(x)))
    assert err <= 1 / b < 0.043689012692076362
    assert not r.is_rational_on((-1, 1))
    assert np.allclose(r.sign_changes(), [0.0])


def test_relaxed_remez_cannot_beat_minimax_and_gets_close_at_3_2():
    fit = relaxed_remez("relu", (3, 2), grid_points=1000, rounds=6)
    # a lower bound cannot be beaten (allow the check grid's rounding); with no sign change it is a rational
    assert fit.error >= RELU_32 * (1 - 1e-6)
    assert fit.error <= RELU_32 * 1.01
    assert fit.reference.size == 7
    assert fit.history[-1] <= fit.history[0]


def test_relaxed_remez_on_gapped_sign_respects_zolotarev():
    from rational_approx.representation.domain import Domain
    from rational_approx.verification.theory import zolotarev_sign

    dom = Domain.gapped(-1, 1, center=0.0, gap=0.1)
    fit = relaxed_remez("sign", (3, 2), dom, form="plain", grid_points=1000, rounds=6)
    exact = zolotarev_sign(3, 0.1).error
    assert exact * (1 - 1e-6) <= fit.error <= 2.0 * exact


def test_least_squares_fit_beats_minimax_in_mse_not_in_sup():
    t = np.linspace(-1, 1, 2001)
    y = np.maximum(t, 0)
    fit = least_squares_fit(t, y, (3, 2), random_starts=2)
    mm = SafePade(BNT_A, BNT_B)
    mse_mm = float(np.mean((y - mm(t)) ** 2))
    assert fit.mse < mse_mm
    assert fit.sup_error > RELU_32
    assert fit.mse == pytest.approx(1.337e-4, rel=0.02)  # the (3,2) grid-MSE optimum on [-1, 1]


def test_linearized_init_is_exact_for_a_rational():
    t = np.linspace(-1, 1, 101)
    y = (1 + t) / (1 + 0.5 * t**2)
    r = linearized_init(t, y, (1, 2))
    assert np.allclose(r.a, [1, 1]) and np.allclose(r.b, [0, 0.5])


def test_errors():
    with pytest.raises(RationalApproxError):
        SafePade([1.0], [1.0], form="nope")
    with pytest.raises(DegreeError):
        relaxed_remez("relu", (3, -1))
    with pytest.raises(DegreeError):
        least_squares_fit(np.linspace(-1, 1, 10), np.zeros(10), (2, 1), inits=[SafePade([0.0], [1.0])])


# ------------------------------------------------------------------------------ the free constant b_0
@given(st.lists(st.floats(-3, 3), min_size=1, max_size=5), st.lists(st.floats(-2, 2), min_size=1, max_size=4),
       st.floats(0.05, 5))
@settings(max_examples=60, deadline=None)
def test_from_rational_is_exact_where_q_is_positive(p, qtail, lift):
    """Any q > 0 on the interval, whatever its minimum, is followed exactly by 1 + |b_0 + Σ b_j t^j|."""
    x = np.linspace(-1, 1, 401)
    qpoly = np.concatenate([[0.0], qtail])
    q = qpoly.copy()
    q[0] = lift - np.min(np.polynomial.polynomial.polyval(x, qpoly))  # min q ≈ lift > 0 on [-1, 1]
    fine = np.linspace(-1, 1, 20001)
    if not np.min(np.polynomial.polynomial.polyval(fine, q)) > 0:
        return
    r = SafePade.from_rational(p, q, (-1, 1), margin=1e-6)
    want = np.polynomial.polynomial.polyval(x, p) / np.polynomial.polynomial.polyval(x, q)
    assert np.allclose(r(x), want, rtol=1e-10, atol=1e-12 * max(1.0, np.max(np.abs(want))))
    assert np.min(r.B(fine)) >= 1e-6 * (1 - 1e-6)  # B = s·q − 1 ≥ margin: |·| is inactive, r = p/q exactly
    assert np.min(r.B(fine)) <= 1e-3  # and s = (1 + margin)/min q is the smallest such scale
    assert r.is_rational_on((-1, 1))


def test_from_rational_rejects_a_pole_and_flips_a_negative_q():
    with pytest.raises(RationalApproxError, match="pole"):
        SafePade.from_rational([1.0], [0.1, 1.0], (-1, 1))  # q = 0.1 + t vanishes at −0.1
    r = SafePade.from_rational([1.0, 2.0], [-2.0, 0.0, -1.0], (-1, 1))  # (1 + 2t) / (−2 − t²)
    x = np.linspace(-1, 1, 11)
    assert np.allclose(r(x), (1 + 2 * x) / (-2 - x**2))
    assert r.b0 == pytest.approx(0.0) and r.to_dict()["b0"] == r.b0


def test_b0_moves_the_kink_of_the_safe_form():
    r = SafePade([1.0], [1.0], b0=-0.5)  # B = t − 0.5 changes sign at 0.5
    assert np.allclose(r.sign_changes(), [0.5]) and not r.is_rational_on((-1, 1))
    assert r(np.array([0.5]))[0] == 1.0 and r(np.array([1.0]))[0] == pytest.approx(1 / 1.5)


@pytest.mark.parametrize("gate", ["jumprelu", "topk"])
def test_gate_fits_reach_the_minimax_error_in_the_safe_form(gate):
    """Acceptance (issue 8): the (9, 8) safe-form fits of the JumpReLU and TopK gates (θ = τ = 0.5, gap 0.05)
    have the minimax error to relative 1e-6, measured on the safe form itself."""
    from rational_approx.fitting.activation import activation_coefficients

    c = activation_coefficients(gate)
    assert c.type == (9, 8) and c.method == "minimax" and c.safe_form_exact
    assert c.domain.intervals == ((-1.0, 0.45), (0.55, 1.0))
    assert abs(c.error / c.minimax_error - 1) < 1e-6
    assert c.minimax_error == pytest.approx(6.1031e-5, rel=1e-4)  # REFERENCE.md
    assert c.b0 > 1e4  # the minimum of q is far from t = 0: without b_0 the form could not follow it


@pytest.mark.parametrize("gate", ["jumprelu", "topk"])
def test_gate_fit_certificate(gate):
    """A rigorous certificate of the safe form (type (5, 4), fast; the (9, 8) one and its command are in
    docs/rational_activation.md): B > 0 on [−1, 1] proved, so the safe form is the rational P/(1 + B), and its sup
    error enclosed within relative 1e-6 of the minimax error."""
    from rational_approx.fitting.activation import activation_coefficients
    from rational_approx.verification.activation_certificate import certify_activation

    c = activation_coefficients(gate, (5, 4))
    cert = certify_activation(c, rtol=1e-7)
    assert cert["exact_form"] and cert["B_min_lower"] > 0 and cert["complete"]
    assert cert["lower"] <= c.error * (1 + 1e-9) and cert["lower"] <= cert["upper"]
    assert cert["upper"] <= c.minimax_error * (1 + 1e-6)
