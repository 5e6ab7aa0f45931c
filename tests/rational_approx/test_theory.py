"""Tests of rational_approx.verification.theory: each construction against an independent closed form, bound or
measure."""

import math
from itertools import pairwise

import mpmath
import numpy as np
import pytest

from rational_approx.errors import ConvergenceError, DegreeError, DomainError
from rational_approx.verification.theory import (
    BERNSTEIN_BETA,
    best_polynomial_abs,
    newman_bound,
    newman_rational,
    polynomial_remez,
    stahl_asymptote,
    zolotarev_asymptote,
    zolotarev_sign,
)

E2 = 0.043689012692076362  # best type-(2,2) error of |x| on [-1, 1] (REFERENCE.md)
E30 = 2.1739878201697943e-7


# ------------------------------------------------------------------------------------------ Newman
@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 30, 64, 100])
def test_newman_error_obeys_bound_and_not_the_best(n):
    r = newman_rational(n)
    e = r.error()
    assert e <= newman_bound(n)
    # an explicit construction cannot beat the best approximation of the same (or smaller) type
    if n == 2:
        assert e > E2
    if n == 30:
        assert e > E30


def test_newman_error_matches_brute_force_and_mp():
    r = newman_rational(16)
    x = np.linspace(-1, 1, 200001)
    brute = float(np.max(np.abs(np.abs(x) - r(x))))
    assert brute <= r.error() <= brute * (1 + 1e-3)
    for t in (0.3, -0.02, 1e-4):
        assert abs(float(r.eval_mp(t)) - float(r(t))) < 1e-15


def test_newman_small_cases_closed_form():
    # n = 1: p = x + 1, r = x², error max |x| − x² = 1/4
    assert newman_rational(1).error() == pytest.approx(0.25, rel=1e-12)
    assert newman_rational(1).type == (2, 0)
    assert newman_rational(7).type == (8, 6)
    assert newman_rational(8).type == (8, 8)


def test_newman_barycentric_form_is_the_same_rational():
    for n in (9, 30):
        r = newman_rational(n)
        b = r.to_barycentric()
        assert b.type == r.type and b.z.size == max(r.type) + 1
        x = np.concatenate([np.linspace(-1, 1, 301), np.logspace(-10, 0, 200)])
        assert np.max(np.abs(b(x) - r(x))) < 1e-12
        with mpmath.workdps(50):
            assert abs(b.eval_mp(mpmath.mpf("0.123")) - r.eval_mp("0.123")) < mpmath.mpf(10) ** -40


def test_newman_rejects_bad_degree():
    with pytest.raises(DegreeError):
        newman_rational(0)


# ------------------------------------------------------------------------------------------ Stahl
def test_stahl_ratio_at_known_points():
    # REFERENCE.md: E_n / (8 e^{-π√n}) ≈ 0.46 at n = 2, increasing toward 1
    assert E2 / stahl_asymptote(2) == pytest.approx(0.465, abs=0.005)
    assert 0.465 < E30 / stahl_asymptote(30) < 1.0


# ------------------------------------------------------------------------------------------ polynomials
def test_polynomial_remez_closed_forms():
    # best linear approximation of x² on [0, 1] is x − 1/8, error 1/8
    res = polynomial_remez(lambda x: x * x, 1, (0.0, 1.0))
    assert res.error == pytest.approx(0.125, rel=1e-12)
    assert np.allclose(res(np.array([0.0, 1.0])), [-0.125, 0.875])
    # best quadratic to |x| is x² + 1/8
    assert best_polynomial_abs(2).error == pytest.approx(0.125, rel=1e-12)
    assert best_polynomial_abs(3).error == best_polynomial_abs(2).error


def test_polynomial_remez_brackets_and_equioscillates():
    res = polynomial_remez(np.exp, 5, (-1.0, 1.0))
    assert res.level <= res.error <= res.level * (1 + 1e-9)
    e = np.exp(res.reference) - res(res.reference)
    assert np.all(np.sign(e[1:]) == -np.sign(e[:-1]))
    assert np.allclose(np.abs(e), res.error, rtol=1e-8)
    # a dense brute-force check of the sup
    x = np.linspace(-1, 1, 100001)
    assert np.max(np.abs(np.exp(x) - res(x))) <= res.error * (1 + 1e-9)


def test_polynomial_remez_reports_non_convergence():
    with pytest.raises(ConvergenceError) as info:
        polynomial_remez(np.abs, 10, (-1.0, 1.0), maxiter=1)
    assert info.value.best is not None and info.value.best.level <= info.value.best.error


def test_bernstein_constant_trend():
    n_values = [10, 20, 40, 80]
    a = [n * best_polynomial_abs(n).error for n in n_values]
    # n·E_n increases toward β from below, with β − n·E_n ≈ C/n² (C ≈ 0.176)
    assert all(x < y < BERNSTEIN_BETA for x, y in pairwise(a))
    gaps = [BERNSTEIN_BETA - v for v in a]
    for g0, g1 in pairwise(gaps):
        assert g0 / g1 == pytest.approx(4.0, rel=0.05)
    richardson = (4 * a[-1] - a[-2]) / 3
    assert richardson == pytest.approx(BERNSTEIN_BETA, abs=1e-7)
    assert abs(a[-1] - BERNSTEIN_BETA) > 1e-5  # the limit is not reached at n = 80: extrapolation matters


# ------------------------------------------------------------------------------------------ Zolotarev
@pytest.mark.parametrize("n, ell", [(1, 0.3), (2, 0.1), (3, 0.1), (6, 0.05), (9, 0.01), (14, 1e-3)])
def test_zolotarev_exact_error_matches_measurement(n, ell):
    z = zolotarev_sign(n, ell)
    measured = z.measured_error()
    assert measured == pytest.approx(z.error, rel=1e-9, abs=1e-15)
    # equioscillation: sign − Z alternates with equal magnitude at the n + 1 extremal points of [ℓ, 1]
    e = 1.0 - z(z.extremal_points)
    assert np.allclose(np.abs(e), z.error, rtol=1e-9)
    assert np.all(np.sign(e[1:]) == -np.sign(e[:-1]))
    # odd: the negative half is the mirror image
    assert np.allclose(z(-z.extremal_points), -z(z.extremal_points))


def test_zolotarev_closed_forms_small_n():
    ell = 0.2
    # n = 1: best Mx, error (1 − ℓ)/(1 + ℓ)
    assert zolotarev_sign(1, ell).error == pytest.approx((1 - ell) / (1 + ell), rel=1e-14)
    # n = 2: Ẑ = x/(x² + ℓ), error ((1 − √ℓ)/(1 + √ℓ))²
    z2 = zolotarev_sign(2, ell)
    assert float(z2.den_c[0]) == pytest.approx(ell, rel=1e-14)
    assert z2.error == pytest.approx(((1 - math.sqrt(ell)) / (1 + math.sqrt(ell))) ** 2, rel=1e-14)


def test_zolotarev_asymptotic_formula():
    for ell in (0.5, 0.1, 0.01):
        ratios = [zolotarev_sign(n, ell).error / zolotarev_asymptote(n, ell) for n in (2, 4, 8, 16)]
        # exact / asymptotic → 1 from below, monotonically
        assert all(r0 <= r1 + 1e-13 and r1 <= 1 + 1e-13 for r0, r1 in pairwise(ratios))
        assert ratios[-1] == pytest.approx(1.0, abs=1e-6)
    # the small-ℓ form of REFERENCE.md is accurate for small ℓ only
    z = zolotarev_sign(12, 1e-3)
    assert z.error / zolotarev_asymptote(12, 1e-3, small_ell=True) == pytest.approx(1.0, abs=1e-3)
    z = zolotarev_sign(12, 0.5)
    assert z.error / zolotarev_asymptote(12, 0.5, small_ell=True) < 0.5


def test_zolotarev_error_decreases_with_degree_and_gap():
    errs = [zolotarev_sign(n, 0.05).error for n in range(1, 12)]
    assert all(e1 < e0 for e0, e1 in pairwise(errs))
    assert zolotarev_sign(6, 0.2).error < zolotarev_sign(6, 0.02).error


def test_zolotarev_barycentric_form():
    z = zolotarev_sign(9, 0.01)
    b = z.to_barycentric()
    assert b.type == (9, 8)
    x = np.concatenate([np.geomspace(0.01, 1, 300), -np.geomspace(0.01, 1, 300)])
    assert np.max(np.abs(b(x) - z(x))) < 1e-12
    assert b.real_poles_in([(-1, -0.01), (0.01, 1)]).size == 0


def test_zolotarev_rejects_bad_arguments():
    with pytest.raises(DomainError):
        zolotarev_sign(3, 1.5)
    with pytest.raises(DegreeError):
        zolotarev_sign(0, 0.1)
