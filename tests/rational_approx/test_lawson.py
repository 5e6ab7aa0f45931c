"""AAA-Lawson: near-best errors against known minimax values, monotonicity in degree, outputs for Remez."""

import numpy as np
import pytest

from rational_approx.errors import DegreeError, RationalApproxError
from rational_approx.fitting.aaa import aaa
from rational_approx.fitting.lawson import lawson
from rational_approx.representation.barycentric import parse_type

E2_ABS = 0.043689012692076362  # best type-(2, 2) error for |x| on [−1, 1] (Chebfun's minimax tests)
E32_RELU = 0.021844506346038181  # best type-(3, 2) error for ReLU on [−1, 1] = E2_ABS / 2


def alternation_count(x: np.ndarray, e: np.ndarray, level: float) -> int:
    """Number of sign alternations among points where |e| ≥ level (end points included)."""
    signs = np.sign(e[np.abs(e) >= level])
    signs = signs[signs != 0]
    return int(1 + np.count_nonzero(np.diff(signs))) if signs.size else 0


def test_abs_type_2_is_near_best():
    res = lawson("abs", 2)
    assert res.converged and res.real_poles_in_domain.size == 0
    assert E2_ABS * (1 - 1e-6) <= res.error <= E2_ABS * 1.005
    # near-equioscillation: at least m + n + 2 = 6 alternating near-extremal points for a Remez start
    assert alternation_count(res.samples, res.residual, 0.97 * res.error) >= 6


def test_relu_type_3_2_is_near_best_and_has_the_declared_type():
    res = lawson("relu", (3, 2))
    assert res.type == (3, 2) and res.r.type == (3, 2)
    assert E32_RELU * (1 - 1e-6) <= res.error <= E32_RELU * 1.02
    X = 1e4  # numerator degree 3 over denominator degree 2: r(2X)/r(X) → 2
    assert res.r(2 * X) / res.r(X) == pytest.approx(2.0, rel=1e-2)


def test_denominator_heavier_type_decays_at_infinity():
    res = lawson(lambda x: 1.0 / (1.0 + 4.0 * x**2), (1, 2))
    assert res.error < 1e-12  # the target is itself of type (0, 2)
    X = 1e4
    assert res.r(2 * X) / res.r(X) == pytest.approx(0.25, rel=1e-2)


def test_error_decreases_from_type_2_to_type_4_on_abs():
    e2, e4 = lawson("abs", 2).error, lawson("abs", 4).error
    assert e4 < e2 / 4


@pytest.mark.slow
def test_error_never_increases_with_degree_on_abs():
    errors = [lawson("abs", n).error for n in (2, 4, 6, 8, 10)]
    assert all(b < a for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 6e-4


def test_outputs_for_remez_reference_selection():
    res = lawson("abs", 2)
    assert np.all(np.diff(res.samples) > 0)
    np.testing.assert_allclose(res.residual, np.abs(res.samples) - res.r(res.samples), atol=1e-15)
    assert np.max(np.abs(res.residual)) == res.error
    assert res.weights.shape == res.samples.shape and np.all(res.weights >= 0)
    assert res.weights.sum() == pytest.approx(1.0)
    assert np.all(res.weights[np.isin(res.samples, res.r.z.real)] == 0)  # support points are not LS rows
    assert res.history.size == res.iterations and res.seconds > 0


def test_init_with_support_points_or_a_rational():
    z = aaa("abs", degree=2, tol=0.0, refine=False).r
    a = lawson("abs", 2, init=z)
    b = lawson("abs", 2, init=np.sort(z.z.real))
    assert a.error == pytest.approx(b.error, rel=1e-12)
    assert a.error <= E2_ABS * 1.005


def test_gapped_sign_type_8():
    res = lawson("sign", 8)
    assert res.real_poles_in_domain.size == 0
    assert res.error < 0.2


@pytest.mark.parametrize("bad", [(-1, 2), (1, 2, 3), "a", "1,x", "-1,2", 2.5, (1.0, 2), True, None])
def test_bad_types_raise_degree_error(bad):
    with pytest.raises(DegreeError):
        parse_type(bad)


def test_bad_arguments_raise_typed_errors():
    with pytest.raises(DegreeError):
        lawson("abs", 2, init=[-1.0, 0.0, 0.5, 1.0])  # type (2, 2) needs 3 support points
    with pytest.raises(RationalApproxError):
        lawson("abs", 2, maxiter=0)
    with pytest.raises(RationalApproxError):
        lawson("abs", 2, tol=2.0)
    assert parse_type(3) == (3, 3) and parse_type((3, 2)) == (3, 2)
