"""Domain and Target: construction, sampling, and every typed error they raise."""

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rational_approx.errors import DomainError, RationalApproxError, TargetError
from rational_approx.representation.domain import Domain
from rational_approx.representation.targets import TARGET_NAMES, Target, get_target

# ---------------------------------------------------------------------------------------------------- Domain


def test_interval_and_gapped_basics():
    d = Domain.interval(-1, 1)
    assert d.is_interval and d.a == -1 and d.b == 1 and d.is_symmetric()
    g = Domain.gapped(-1, 1, center=0.0, gap=0.1)
    assert g.intervals == ((-1.0, -0.1), (0.1, 1.0))
    assert g.gaps() == [(-0.1, 0.1)]
    assert not g.contains(0.0) and g.contains(-0.1) and g.contains(0.5)
    assert g.is_symmetric() and not Domain.gapped(-1, 1, center=0.5, gap=0.1).is_symmetric()
    np.testing.assert_array_equal(g.endpoints, [-1, -0.1, 0.1, 1])
    assert repr(g) == "Domain([-1, -0.1] ∪ [0.1, 1])"


def test_union_sorts_and_parse_round_trips():
    u = Domain.union([(2, 3), (0, 1)])
    assert u.intervals == ((0.0, 1.0), (2.0, 3.0))
    assert Domain.parse("0,1;2,3") == u
    assert Domain.parse("-1,1") == Domain.interval(-1, 1)
    assert Domain.interval(-1, 2).scale(2.0).intervals == ((-2.0, 4.0),)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Domain(()),
        lambda: Domain(((0.0, math.inf),)),
        lambda: Domain(((1.0, 0.0),)),
        lambda: Domain(((0.0, 0.0),)),
        lambda: Domain(((0.0, 1.0), (1.0, 2.0))),  # touching
        lambda: Domain(((0.0, 1.5), (1.0, 2.0))),  # overlapping
        lambda: Domain((("a", 1.0),)),
        lambda: Domain.gapped(-1, 1, center=0.0, gap=0.0),
        lambda: Domain.gapped(-1, 1, center=0.0, gap=math.nan),
        lambda: Domain.gapped(-1, 1, center=0.95, gap=0.1),  # gap reaches the end
        lambda: Domain.parse("1,2,3"),
        lambda: Domain.parse("a,b"),
        lambda: Domain.parse(""),
        lambda: Domain.interval(0, 1).scale(-1.0),
        lambda: Domain.interval(0, 1).sample(1),
    ],
)
def test_domain_bad_inputs_raise_domain_error(build):
    with pytest.raises(DomainError):
        build()


def test_domain_error_is_value_error_and_package_error():
    with pytest.raises(ValueError):
        Domain(((1.0, 0.0),))
    with pytest.raises(RationalApproxError):
        Domain(((1.0, 0.0),))


def test_sample_clusters_at_kink_and_stays_in_domain():
    g = Domain.gapped(-1, 1, center=0.0, gap=0.05)
    x = g.sample(500, cluster=(0.3,), depth=20)
    assert np.all(g.contains(x)) and np.all(np.diff(x) > 0)
    assert np.min(np.abs(x - 0.3)) < 1e-15  # exponential clustering reaches far below uniform spacing
    assert np.min(np.abs(x - 0.05)) < 1e-15  # and at interval ends


@settings(max_examples=30, deadline=None)
@given(
    a=st.floats(-10, 10, allow_nan=False),
    width=st.floats(1e-3, 10),
    n=st.integers(2, 300),
)
def test_sample_is_sorted_unique_and_inside(a, width, n):
    d = Domain.interval(a, a + width)
    x = d.sample(n, depth=8)
    assert x.size >= 2 and np.all(np.diff(x) > 0) and np.all(d.contains(x))


# ---------------------------------------------------------------------------------------------------- Target


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_named_targets_float_and_mp_agree(name):
    t = get_target(name)
    dom = t.default_domain()
    t.check_domain(dom)
    x = dom.sample(50, depth=4)
    mp_vals = np.array([float(t.f_mp(mpmath.mpf(float(v)))) for v in x])
    np.testing.assert_allclose(t(x), mp_vals, rtol=0, atol=1e-15)


def test_target_values_and_metadata():
    x = np.array([-0.7, 0.0, 0.6])
    np.testing.assert_array_equal(get_target("abs")(x), [0.7, 0.0, 0.6])
    np.testing.assert_array_equal(get_target("relu")(x), [0.0, 0.0, 0.6])
    np.testing.assert_array_equal(get_target("sign")(x), [-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(get_target("jumprelu", theta=0.5)(x), [0.0, 0.0, 0.6])
    np.testing.assert_array_equal(get_target("heaviside", theta=0.1)(x), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(get_target("topk_gate", tau=0.5)(x), [0.0, 0.0, 0.6])
    assert get_target("abs").parity == "even" and get_target("sign").parity == "odd"
    assert get_target("jumprelu", theta=0.3).jumps == ((0.3, 0.3),)
    assert get_target("jumprelu", theta=0.0).is_continuous  # threshold 0: the gate is ReLU
    assert get_target("abs").default_domain() == Domain.interval(-1, 1)
    assert get_target("sign").default_domain(0.1) == Domain.gapped(-1, 1, center=0.0, gap=0.1)


@pytest.mark.parametrize(
    "build",
    [
        lambda: get_target("softplus"),
        lambda: get_target("jumprelu", theta=math.inf),
        lambda: get_target("topk_gate", tau=math.nan),
        lambda: Target.from_callable(3.0),
        lambda: Target.from_callable(np.sin, parity="weird"),
        lambda: Target.from_callable(np.abs, jumps=((0.0, 1.0), (0.5, 1.0))).default_domain(),
        lambda: get_target("sign").check_domain(Domain.interval(-1, 1)),  # jump inside
        lambda: get_target("jumprelu", theta=0.5).check_domain(Domain.gapped(-1, 1, center=0.0, gap=0.1)),
        lambda: Target.from_callable(lambda x: 1.0 / x).check_domain(Domain.interval(0, 1)),  # inf at 0
        lambda: Target.from_callable(np.log).check_domain(Domain.interval(-1, 1)),  # nan for x < 0
        lambda: Target("bad", lambda x: x[:1]).check_domain(Domain.interval(-1, 1)),  # wrong shape
    ],
)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_target_bad_inputs_raise_target_error(build):
    with pytest.raises(TargetError):
        build()


def test_from_callable_broadcasts_constants():
    t = Target.from_callable(lambda x: 2.0, name="two")
    np.testing.assert_array_equal(t(np.zeros(3)), [2.0, 2.0, 2.0])
    assert t.name == "two"
