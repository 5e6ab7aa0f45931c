"""minimax: known values (REFERENCE.md), equioscillation, monotonicity in the degree, typed errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rational_approx.errors import ConvergenceError, DegreeError, DomainError, RationalApproxError, TargetError
from rational_approx.fitting.minimax import minimax
from rational_approx.representation.domain import Domain
from rational_approx.representation.targets import Target

E2 = 0.043689012692076362
E30 = 2.1739878201697943e-7
RELU32 = 0.021844506346038181
# Boullé, Nakatsukasa & Townsend (2020), via REFERENCE.md: P ascending, Q = 1 + q2 x²
BOULLE_P = [0.021844506346038181, 0.5, 1.5957439419765594, 1.1914878839531187]
BOULLE_Q = [1.0, 0.0, 2.3829757679062375]


def sig_digits(a: float, b: float) -> float:
    return -math.log10(abs(a - b) / abs(b)) if a != b else 17.0


def test_abs_type_2_2_known_value():
    res = minimax("abs", (2, 2))
    assert res.converged
    assert sig_digits(res.error, E2) >= 10
    assert res.alternations >= res.expected_alternations


def test_abs_type_30_30_known_value():
    res = minimax("abs", (30, 30))
    assert res.converged and res.symmetry == "even"
    assert sig_digits(res.error, E30) >= 10


def test_relu_3_2_error_and_boulle_coefficients():
    res = minimax("relu", (3, 2))
    assert sig_digits(res.error, RELU32) >= 10
    pq = res.r.to_monomial((-1.0, 1.0))
    np.testing.assert_allclose(pq.p, BOULLE_P, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(pq.q, BOULLE_Q, rtol=1e-10, atol=1e-13)


def test_relu_without_symmetry_matches_symmetric_reduction():
    a = minimax("relu", (5, 4), symmetry="relu")
    b = minimax("relu", (5, 4), symmetry="none")
    assert sig_digits(b.error, a.error) >= 8
    x = np.linspace(-1, 1, 1001)
    assert np.max(np.abs(a.r(x) - b.r(x))) < 1e-8


def test_relu_2_2_closed_form():
    # (7 − 4√3)/2: the best type-(2, 2) error of ReLU on [−1, 1]
    res = minimax("relu", (2, 2))
    assert sig_digits(res.error, (7 - 4 * math.sqrt(3)) / 2) >= 9


def test_error_scales_with_the_interval():
    res = minimax("abs", (6, 6), (-3.0, 3.0))
    ref = minimax("abs", (6, 6))
    assert sig_digits(res.error, 3 * ref.error) >= 9


def test_extremal_points_equioscillate():
    res = minimax("relu", (6, 6))
    e = res.target(res.extremal_points) - res.r(res.extremal_points)
    assert res.extremal_points.size >= res.expected_alternations
    assert np.all(np.sign(e[1:]) != np.sign(e[:-1]))
    np.testing.assert_allclose(np.abs(e), res.error, rtol=1e-6)


def test_error_is_not_read_off_a_grid():
    # the located sup norm is at least the max over any fine grid, and attained near the extremal points
    res = minimax("abs", (20, 20))
    x = np.concatenate([np.linspace(-1, 1, 200001), np.logspace(-12, 0, 5000)])
    grid_max = np.max(np.abs(np.abs(x) - res.r(x)))
    assert res.error >= grid_max * (1 - 1e-9)


def test_gapped_gates_converge_and_have_no_real_poles_in_domain():
    for name, kw in [("sign", {}), ("heaviside", {}), ("jumprelu", {"theta": 0.5}), ("topk_gate", {"tau": 0.3})]:
        res = minimax(name, (9, 8), gap=0.05, **kw)
        assert res.converged, name
        assert res.r.real_poles_in(res.domain.intervals).size == 0, name
        x = res.domain.sample(2000)
        assert np.max(np.abs(res.target(x) - res.r(x))) <= res.error * (1 + 1e-9)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=st.floats(-2, 2), b=st.floats(-2, 2), c=st.floats(0.05, 0.9), d=st.floats(1.3, 4.0))
def test_rational_of_lower_type_is_reproduced(a, b, c, d):
    # f = (a + b x + c x²)/(d + x) has type (2, 1) and no pole on [−1, 1]; the best type-(3, 2) error is 0
    f = Target.from_callable(lambda x: (a + b * x + c * x**2) / (d + x), name="rational21")
    res = minimax(f, (3, 2), (-1.0, 1.0), raise_on_failure=False)
    x = np.linspace(-1, 1, 2001)
    scale = np.max(np.abs(f(x)))
    assert np.max(np.abs(f(x) - res.r(x))) <= 1e-10 * scale


@settings(max_examples=6, deadline=None)
@given(n=st.integers(1, 7), target=st.sampled_from(["abs", "relu"]))
def test_error_never_increases_with_degree(n, target):
    lo = minimax(target, (n, n), raise_on_failure=False).error
    hi = minimax(target, (n + 1, n + 1), raise_on_failure=False).error
    assert hi <= lo * (1 + 1e-9)


def test_typed_errors_for_bad_input():
    with pytest.raises(DegreeError):
        minimax("abs", (-1, 2))
    with pytest.raises(DegreeError):
        minimax("abs", (2.5, 2))
    with pytest.raises(DegreeError):
        minimax("abs", "3,x")
    with pytest.raises(TargetError):
        minimax("nope", (2, 2))
    with pytest.raises(TargetError, match="half the jump"):
        minimax("sign", (4, 4), Domain.interval(-1, 1))
    with pytest.raises(TargetError, match="not finite"):
        minimax(lambda x: 1 / x, (2, 2), (-1.0, 1.0))
    with pytest.raises(DomainError):
        minimax("abs", (2, 2), (1.0, -1.0))
    with pytest.raises(RationalApproxError, match="symmetry"):
        minimax("relu", (4, 4), symmetry="even")
    with pytest.raises(RationalApproxError, match="symmetry"):
        minimax("abs", (4, 4), symmetry="sideways")


def test_non_convergence_raises_with_best_result():
    with pytest.raises(ConvergenceError) as info:
        minimax("abs", (40, 40), maxiter=1)
    best = info.value.best
    assert best is not None and not best.converged and np.isfinite(best.error)


@pytest.mark.slow
def test_abs_converges_for_every_even_n_to_80():
    prev = math.inf
    for n in range(2, 81, 2):
        res = minimax("abs", (n, n))
        assert res.converged and res.alternations >= res.expected_alternations, n
        assert res.error < prev
        # Stahl: E_n/(8e^{−π√n}) rises slowly from ≈0.46 (n = 2) to ≈0.88 (n = 80)
        ratio = res.error / (8 * math.exp(-math.pi * math.sqrt(n)))
        assert 0.4 < ratio < 0.9, (n, ratio)
        prev = res.error


@pytest.mark.slow
def test_relu_converges_at_types_2k_plus_1_2k_and_n_n():
    for k in range(1, 21):
        res = minimax("relu", (2 * k + 1, 2 * k))
        assert res.converged and res.alternations >= res.expected_alternations, k
    for n in range(1, 21):
        res = minimax("relu", (n, n))
        assert res.converged and res.alternations >= res.expected_alternations, n


def test_golden_section_max_finds_known_maxima_in_floats_arrays_and_balls():
    from flint import arb, ctx

    from rational_approx.representation.extrema import golden_section_max

    # float: the vertex of a parabola (flat maximum: the abscissa to ≈ √eps, the value to rounding)
    x = golden_section_max(lambda t: -((t - 0.3) ** 2), 0.0, 1.0, iters=75)
    assert abs(x - 0.3) < 1e-7 and -((x - 0.3) ** 2) > -1e-15
    # arrays: independent searches, one per entry: sin(t + s) peaks at π/2 − s
    lo, hi, s = np.array([0.0, 1.0, -0.5]), np.array([3.0, 2.0, 0.2]), np.array([0.0, 0.0, math.pi / 2])
    xs = golden_section_max(lambda t: np.sin(t + s), lo, hi, xtol=4e-16)
    assert np.allclose(xs, [math.pi / 2, math.pi / 2, 0.0], atol=1e-7)
    # a maximum at the end of the bracket is approached, not missed
    assert golden_section_max(lambda t: t, 0.0, 1.0, iters=75) > 1 - 1e-14
    # balls: the ratio at the working precision resolves a 300-bit maximum far below double precision
    old = ctx.prec
    try:
        ctx.prec = 300
        third = arb(1) / 3
        xb = golden_section_max(lambda t: -((t - third) ** 2), arb(0), arb(1), iters=400)
        assert xb.rad() == 0 and abs(float(xb - third)) < 1e-80
        xs = golden_section_max(lambda t: t.sin(), arb(0), arb(3), iters=400)
        assert abs(float(xs - arb.pi() / 2)) < 1e-40  # flat maximum: √(2^-300) ≈ 1e-45
    finally:
        ctx.prec = old
