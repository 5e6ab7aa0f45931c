"""Tests of rational_approx.verification.rates: degree-needed tables, the Zolotarev gate bound, and the reverse gap."""

import math

import numpy as np
import pytest

from rational_approx.errors import DomainError, RationalApproxError
from rational_approx.verification.rates import (
    best_line_error,
    continuous_spline_error,
    degree_needed,
    fit_log_product,
    fit_log_squared,
    gate_degree_needed,
    gate_zolotarev_error,
    loglog_slope,
    min_linear_pieces,
    reverse_gap_constant,
    reverse_gap_grid,
    reverse_gap_target,
    reverse_gap_units,
)
from rational_approx.verification.theory import stahl_asymptote


def test_degree_needed_and_log_squared_fit_on_stahl_errors():
    table = {n: float(stahl_asymptote(n)) for n in range(1, 200)}
    assert degree_needed(table, 1.0) == 1
    assert degree_needed(table, 1e-300) is None
    eps = np.logspace(-2, -12, 11)
    n = [degree_needed(table, e) for e in eps]
    alpha, _ = fit_log_squared(eps, n)
    assert alpha == pytest.approx(1 / math.pi, rel=0.05)  # √n ≈ ln(8/ε)/π


def test_gate_bound_is_attained_by_the_explicit_rational():
    from rational_approx.verification.theory import zolotarev_sign

    theta, delta, n = 0.5, 0.05, 6
    s = max(1 + theta, 1 - theta)
    z = zolotarev_sign(n, delta / s)
    x = np.concatenate([np.linspace(-1, theta - delta, 20001), np.linspace(theta + delta, 1, 20001)])
    r = x * (1 + z((x - theta) / s)) / 2
    g = x * (x > theta)
    err = np.max(np.abs(g - r))
    bound = gate_zolotarev_error(n, delta, theta)
    assert err <= bound * (1 + 1e-9)
    assert err >= 0.5 * bound  # the bound is reached where |x| is near 1 (x → 1 side of the jump)


def test_gate_degree_needed_grows_like_log_product():
    eps = [1e-2, 1e-4, 1e-6]
    deltas = [0.1, 0.01, 0.001]
    E, D, N = [], [], []
    for d in deltas:
        for e in eps:
            n = gate_degree_needed(e, d)
            assert gate_zolotarev_error(n, d) <= e < gate_zolotarev_error(n - 1, d) if n > 1 else True
            E.append(e)
            D.append(d)
            N.append(n)
    c, _ = fit_log_product(E, D, N)
    assert 0.1 < c < 0.4  # theory: (2/π²) ≈ 0.20 with the log arguments' constants absorbed
    # monotone in both ε and δ
    assert gate_degree_needed(1e-6, 0.001) > gate_degree_needed(1e-6, 0.1) > gate_degree_needed(1e-2, 0.1)



def test_gate_degree_needed_is_the_leading_order_formula_with_ln_2_over_eps():
    """The gate error is E_n^Z/2 ≈ 2e^{−π²n/(2 ln(4s/δ))}, so n ≈ (2/π²)·ln(2/ε)·ln(4s/δ) — not ln(8/ε)."""
    s = 1.5  # max(1 ± θ) at θ = 0.5
    for d in (1e-2, 1e-3):
        for e in (1e-6, 1e-10):
            lead = 2 / math.pi**2 * math.log(4 * s / d)
            n = gate_degree_needed(e, d)
            assert n == math.ceil(lead * math.log(2 / e))
            assert n < lead * math.log(8 / e) - 1

def test_gate_rejects_gap_outside_domain():
    with pytest.raises(DomainError):
        gate_zolotarev_error(4, 0.6, theta=0.5)
    with pytest.raises(RationalApproxError):
        gate_degree_needed(2.0, 0.1)


def test_best_line_error_closed_forms():
    x = np.linspace(0, 1, 10001)
    assert best_line_error(x, x * x) == pytest.approx(0.125, rel=1e-6)  # x² − (x − 1/8)
    assert best_line_error(x, 3 * x - 1) == pytest.approx(0.0, abs=1e-12)
    assert best_line_error(x[:2], x[:2] ** 2) == 0.0


def test_min_linear_pieces_is_optimal_on_parabola():
    # x² on [0, 1]: a piece of length h has best linear error h²/8, so k pieces reach 1/(8k²) and no fewer do
    x = np.linspace(0, 1, 20001)
    for k in (3, 7):
        eps = 1 / (8 * k * k)
        assert len(min_linear_pieces(x, x * x, eps * 1.01)) == k
        assert len(min_linear_pieces(x, x * x, eps * 0.97)) == k + 1


def test_continuous_spline_error_matches_interpolation_theory():
    x = np.linspace(0, 1, 4001)
    # x² (f'' = 2) with equispaced knots: the interpolant shifted by half its error h²/4 is best, error h²/8
    knots = np.linspace(0, 1, 6)[1:-1]
    assert continuous_spline_error(lambda t: t * t, knots, x) == pytest.approx(0.2**2 / 8, rel=1e-3)


@pytest.mark.parametrize("eta", [0.3, 0.03])
def test_reverse_gap_slope_is_minus_one_half(eta):
    eps = [1e-2, 1e-3, 1e-4]
    pts = reverse_gap_units(eta, eps, grid_points=4001)
    units = [p.units_lower for p in pts]
    assert loglog_slope(eps, units) == pytest.approx(-0.5, abs=0.05)
    for p in pts:
        assert p.eps <= p.relu_error < 1.6 * p.eps  # the ReLU network nearly attains the lower bound
        # ε·(N+1)² approaches the predicted constant (∫√|R''|)²/16
        assert p.eps * p.pieces**2 == pytest.approx(reverse_gap_constant(eta), rel=0.35)


def test_reverse_gap_constant_tends_to_eta_free_limit():
    c = [reverse_gap_constant(eta) for eta in (0.3, 0.1, 0.01, 1e-4)]
    assert all(a < b for a, b in zip(c, c[1:], strict=False))
    assert c[-1] == pytest.approx(1.5315, abs=2e-3)
    # tiny η: the integrand spreads over decades and must still converge to the η → 0 limit
    assert reverse_gap_constant(1e-9) == pytest.approx(1.53152, abs=1e-4)


def test_reverse_gap_target_is_the_type_0_2_rational():
    f = reverse_gap_target(0.1)
    x = reverse_gap_grid(0.1, 501)
    assert np.allclose(f(x) * (x * x + 0.01), 0.01)
    with pytest.raises(DomainError):
        reverse_gap_target(0.0)
