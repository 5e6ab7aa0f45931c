"""BarycentricRational: evaluation, poles/zeros/residues, coefficient conversions."""

import warnings

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rational_approx.errors import DegreeError, IllConditionedWarning, RationalApproxError
from rational_approx.representation.barycentric import BarycentricRational


def from_values(fn, z, w=None):
    z = np.asarray(z, dtype=float)
    w = np.ones_like(z) if w is None else np.asarray(w, dtype=float)
    return BarycentricRational(z, fn(z), w)


def interpolating_weights(z):
    """Weights of the polynomial interpolant through z: w_k = 1/Π_{j≠k}(z_k − z_j)."""
    z = np.asarray(z, dtype=float)
    return np.array([1.0 / np.prod([zk - zj for j, zj in enumerate(z) if j != k]) for k, zk in enumerate(z)])


def known_rational():
    """r(x) = (x − 0.5)(x + 0.25) / ((x − 2)(x + 3)): zeros 0.5, −0.25, poles 2, −3, as a barycentric form.

    With 3 support points the weights w_k = q(z_k)·Π_{j≠k} 1/(z_k − z_j) give D = q/ℓ, N = p/ℓ.
    """
    z = np.array([-1.0, 0.0, 1.0])
    p = lambda x: (x - 0.5) * (x + 0.25)  # noqa: E731
    q = lambda x: (x - 2.0) * (x + 3.0)  # noqa: E731
    w = q(z) * interpolating_weights(z)
    return BarycentricRational(z, p(z) / q(z), w), p, q


def test_exact_at_support_points_and_vectorised():
    r = from_values(np.cos, [-1.0, -0.3, 0.2, 0.9], w=[1.0, -2.0, 3.0, -1.5])
    assert np.array_equal(r(r.z), r.f)
    X = np.linspace(-1, 1, 12).reshape(3, 4)
    assert r(X).shape == (3, 4)
    assert isinstance(r(0.5), np.floating | float)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1, 1, allow_nan=False), min_size=2, max_size=8, unique=True))
def test_support_values_reproduced_for_any_weights(z):
    z = np.array(sorted(z))
    if np.min(np.diff(z)) < 1e-6:
        return
    w = np.cos(7 * z) + 1.5  # arbitrary non-zero weights
    r = BarycentricRational(z, np.sin(3 * z), w)
    assert np.array_equal(r(z), np.sin(3 * z))


def test_polynomial_interpolant_reproduces_polynomial():
    z = np.cos(np.pi * np.arange(6) / 5)
    r = BarycentricRational(z, z**5 - 2 * z**2, interpolating_weights(z))
    x = np.linspace(-1, 1, 101)
    assert np.max(np.abs(r(x) - (x**5 - 2 * x**2))) < 1e-13


def test_poles_zeros_residues_of_known_rational():
    r, p, q = known_rational()
    x = np.linspace(-1, 1, 51)
    assert np.max(np.abs(r(x) - p(x) / q(x))) < 1e-14
    np.testing.assert_allclose(np.sort(r.poles().real), [-3.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(np.sort(r.zeros().real), [-0.25, 0.5], atol=1e-12)
    # residue at 2: p(2)/q'(2) = (1.5·2.25)/5; at −3: p(−3)/q'(−3) = (−3.5·−2.75)/(−5)
    res = r.residues(np.array([2.0, -3.0], dtype=complex))
    np.testing.assert_allclose(res.real, [1.5 * 2.25 / 5, 3.5 * 2.75 / -5], rtol=1e-11)
    np.testing.assert_allclose(r.real_poles_in([(-4.0, -2.5)]), [-3.0], atol=1e-12)
    assert r.real_poles_in([(-1.0, 1.0)]).size == 0


def test_complex_evaluation_matches_formula():
    r, p, q = known_rational()
    s = np.array([0.3 + 0.4j, -2.0 + 1j])
    np.testing.assert_allclose(r(s), p(s) / q(s), rtol=1e-13)


def test_eval_mp_matches_float_and_is_exact_at_support():
    r, p, q = known_rational()
    assert float(r.eval_mp(0.37, dps=30)) == pytest.approx(float(r(0.37)), rel=1e-14)
    assert r.eval_mp(r.z[1]) == mpmath.mpf(float(r.f[1]))
    vals = r.eval_mp([0.1, 0.2])
    assert len(vals) == 2


@pytest.mark.parametrize("basis", ["monomial", "chebyshev"])
def test_coefficient_round_trip_well_conditioned(basis):
    r, p, q = known_rational()
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedWarning)
        pq = r.to_monomial((-1.0, 1.0)) if basis == "monomial" else r.to_chebyshev((-1.0, 1.0))
    x = np.linspace(-1, 1, 201)
    assert pq.conversion_error < 1e-12
    assert np.max(np.abs(pq(x) - p(x) / q(x))) < 1e-12
    if basis == "monomial":
        # q(0) = 1 normalisation: p/q = (x² − 0.25x − 0.125)/(x² + x − 6) → divide by −6
        np.testing.assert_allclose(pq.q, np.array([-6.0, 1.0, 1.0]) / -6.0, atol=1e-12)
        np.testing.assert_allclose(pq.p, np.array([-0.125, -0.25, 1.0]) / -6.0, atol=1e-12)


def test_coefficient_conversion_warns_when_ill_conditioned():
    from rational_approx.fitting.aaa import aaa

    r = aaa("abs", degree=40).r
    with pytest.warns(IllConditionedWarning):
        pq = r.to_monomial((-1.0, 1.0))
    assert pq.conversion_error > 1e-8


def test_bad_inputs_raise_typed_errors():
    with pytest.raises(RationalApproxError):
        BarycentricRational([0.0, 1.0], [1.0], [1.0, 1.0])
    with pytest.raises(RationalApproxError):
        BarycentricRational([0.0, 0.0], [1.0, 2.0], [1.0, 1.0])
    with pytest.raises(RationalApproxError):
        BarycentricRational([0.0, np.nan], [1.0, 2.0], [1.0, 1.0])
    with pytest.raises(RationalApproxError):
        BarycentricRational([], [], [])
    with pytest.raises(DegreeError):
        BarycentricRational([0.0, 1.0], [1.0, 2.0], [1.0, -1.0], type=(-1, 1))
    r, _, _ = known_rational()
    with pytest.raises(RationalApproxError):
        r.to_chebyshev((1.0, -1.0))


def test_to_dict_is_json_ready():
    import json

    r, _, _ = known_rational()
    d = json.loads(json.dumps(r.to_dict()))
    assert d["type"] == [2, 2] and len(d["support"]) == 3
