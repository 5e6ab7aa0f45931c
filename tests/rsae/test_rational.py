"""Tests for rsae.core.rational: analytic gradients, overflow safety, high-precision accuracy, API and errors."""

from __future__ import annotations

import math
import warnings

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rsae.core.rational import (
    DEFAULT_TYPES,
    RationalActivation,
    configure_kernels,
    rational_activation,
    safe_pade,
)
from rsae.errors import ConfigError

F32_MAX = float(torch.finfo(torch.float32).max)
U32 = 2.0**-24
TYPES = [(3, 2), (9, 8), (2, 5), (5, 2), (0, 0), (4, 0), (0, 3)]

# The (3,2) best approximation of ReLU on [-1, 1] (REFERENCE.md; Boullé, Nakatsukasa, Townsend 2020).
RELU32_A = [0.021844506346038181, 0.5, 1.5957439419765594, 1.1914878839531187]
RELU32_B = [0.0, 2.3829757679062375]


def coefficients(m: int, n: int, seed: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(m + 1, generator=gen, dtype=dtype)
    b = torch.randn(n, generator=gen, dtype=dtype)
    return a, b


def reference(t: float, a: list[float], b: list[float]) -> tuple[mpmath.mpf, mpmath.mpf]:
    """r(t) and a first-order bound on float32 rounding errors, both in 100-digit arithmetic.

    Horner in precision u has |P̂ − P| ≤ γ Σ|a_i||t|^i (and likewise for B); rounding s = 1/t (reciprocal
    branch) perturbs the result by about u·|t r'(t)|. The bound is
    u·[(Σ|a_i||t|^i + |r| Σ|b_j||t|^j)/(1 + |B|) + |t r'(t)| + |r|]; tests multiply it by a constant × degree.
    """
    with mpmath.workdps(100):
        t = mpmath.mpf(t)
        p = mpmath.fsum(mpmath.mpf(c) * t**i for i, c in enumerate(a))
        q = mpmath.fsum(mpmath.mpf(c) * t ** (j + 1) for j, c in enumerate(b))
        d = 1 + abs(q)
        r = p / d
        p_abs = mpmath.fsum(abs(mpmath.mpf(c)) * abs(t) ** i for i, c in enumerate(a))
        q_abs = mpmath.fsum(abs(mpmath.mpf(c)) * abs(t) ** (j + 1) for j, c in enumerate(b))
        dp = mpmath.fsum(i * mpmath.mpf(c) * t ** (i - 1) for i, c in enumerate(a) if i)
        dq = mpmath.fsum((j + 1) * mpmath.mpf(c) * t**j for j, c in enumerate(b))
        dr = (dp - r * mpmath.sign(q) * dq) / d
        bound = U32 * ((p_abs + abs(r) * q_abs) / d + abs(t * dr) + abs(r))
        return r, bound


def assert_matches_reference(h: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    m, n = a.shape[0] - 1, b.shape[0]
    factor = 4 * (m + n + 2)
    for t, got in zip(h.tolist(), y.tolist(), strict=True):
        r, bound = reference(t, a.tolist(), b.tolist())
        if abs(r) > F32_MAX + factor * bound:
            assert got == math.copysign(F32_MAX, r), (t, got, r)
            continue
        tol = factor * bound + 2.0**-140
        assert abs(got - float(max(min(r, F32_MAX), -F32_MAX))) <= tol, (t, got, float(r), float(tol))


def naive(h: torch.Tensor, a: torch.Tensor, b: torch.Tensor, log_c_in: torch.Tensor,
          log_c_out: torch.Tensor, b0: torch.Tensor | None = None) -> torch.Tensor:
    """The plain formula (powers of t, autograd through |·|): a reference for moderate inputs."""
    t = h * torch.exp(-log_c_in)
    p = sum(a[i] * t**i for i in range(a.shape[0]))
    q = sum((b[j] * t ** (j + 1) for j in range(b.shape[0])), torch.zeros_like(t) if b0 is None else b0)
    return torch.exp(log_c_out) * p / (1 + q.abs())


def away_from_kinks(t: torch.Tensor, b: torch.Tensor, margin: float = 0.05) -> torch.Tensor:
    """Entries of t where |B(t)| > margin (gradcheck's finite differences must not straddle the |·| kink)."""
    q = sum((b[j] * t ** (j + 1) for j in range(b.shape[0])), torch.zeros_like(t))
    return t[(q.abs() > margin) | (b.shape[0] == 0)]


def gradcheck_inputs(m: int, n: int, d: int, per_latent: bool, seed: int) -> tuple[torch.Tensor, ...]:
    a, b = coefficients(m, n, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    shape = (d,) if per_latent else ()
    log_c_in = 0.3 * torch.randn(shape, generator=gen, dtype=torch.float64)
    log_c_out = 0.3 * torch.randn(shape, generator=gen, dtype=torch.float64)
    # t on both sides of |t| = 1 (both evaluation branches), well away from B = 0
    t = torch.cat([torch.linspace(-4, 4, 161, dtype=torch.float64), torch.tensor([30.0, -70.0, 1e3, -1e4])])
    t = away_from_kinks(t[(t.abs() - 1).abs() > 1e-3], b)
    t = t[torch.randperm(t.shape[0], generator=gen)][: 4 * d]
    h = t.reshape(-1, d) * torch.exp(log_c_in)
    return tuple(x.clone().requires_grad_() for x in (h, a, b, log_c_in, log_c_out))


# ------------------------------------------------------------------------------------------------ gradients


@pytest.mark.parametrize("per_latent", [False, True], ids=["shared", "per_latent"])
@pytest.mark.parametrize("mn", TYPES, ids=str)
def test_gradcheck_float64(mn: tuple[int, int], per_latent: bool) -> None:
    inputs = gradcheck_inputs(*mn, d=5, per_latent=per_latent, seed=sum(mn))
    assert torch.autograd.gradcheck(rational_activation, inputs)


def test_gradcheck_safe_pade() -> None:
    a, b = coefficients(9, 8, seed=3)
    t = away_from_kinks(torch.tensor([-50.0, -3.0, -1.5, -0.7, -0.1, 0.0, 0.2, 0.9, 1.2, 2.5, 8.0, 1e3],
                                     dtype=torch.float64), b)
    inputs = tuple(x.clone().requires_grad_() for x in (t, a, b))
    assert torch.autograd.gradcheck(safe_pade, inputs)


@pytest.mark.parametrize("per_latent", [False, True], ids=["shared", "per_latent"])
@pytest.mark.parametrize("mn", [(3, 2), (9, 8)], ids=str)
def test_float32_gradients_match_float64_autograd(mn: tuple[int, int], per_latent: bool) -> None:
    """The analytic float32 gradients agree with autograd through the plain formula in float64."""
    problem = gradcheck_inputs(*mn, d=8, per_latent=per_latent, seed=7)
    h64, a64, b64, lci64, lco64 = (x.detach() for x in problem)
    g = torch.randn(h64.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = [x.clone().requires_grad_() for x in (h64, a64, b64, lci64, lco64)]
    naive(*ref).backward(g)
    ours = [x.float().requires_grad_() for x in (h64, a64, b64, lci64, lco64)]
    y = rational_activation(*ours)
    y.backward(g.float())
    torch.testing.assert_close(y.double(), naive(*(x.detach() for x in ref)), rtol=2e-5, atol=2e-6)
    for mine, theirs in zip(ours, ref, strict=True):
        scale = theirs.grad.abs().max().item()
        assert (mine.grad.double() - theirs.grad).abs().max().item() <= 1e-4 * max(scale, 1.0)


def test_kink_uses_zero_subgradient() -> None:
    """At B(t) = 0 the gradient is the mean of the two one-sided derivatives (sign(0) = 0)."""
    a = torch.tensor([0.3, 1.0, -0.5, 0.25], dtype=torch.float64)
    b = torch.tensor([-2.0, 1.0], dtype=torch.float64)  # B(t) = t² − 2t = 0 at t = 0 and 2 (both branches)
    for t0 in (0.0, 2.0):
        t = torch.tensor([t0], dtype=torch.float64, requires_grad=True)
        aa, bb = a.clone().requires_grad_(), b.clone().requires_grad_()
        safe_pade(t, aa, bb).sum().backward()
        eps = 1e-7
        left = (safe_pade(t.detach(), a, b) - safe_pade(t.detach() - eps, a, b)) / eps
        right = (safe_pade(t.detach() + eps, a, b) - safe_pade(t.detach(), a, b)) / eps
        assert abs(left.item() - right.item()) > 0.1  # a genuine kink
        assert t.grad.item() == pytest.approx((left.item() + right.item()) / 2, abs=1e-5)
        assert torch.equal(bb.grad, torch.zeros(2, dtype=torch.float64))


# ------------------------------------------------------------------------------------ accuracy and overflow

SPECIAL = [0.0, -0.0, 1e-45, -1e-45, 1.1754944e-38, 1e-30, 0.5, 1.0, -1.0, 1.0000001, -0.99999994, 2.0, 1e4,
           -65504.0, 1e12, -1e20, 1e30, 3e38, -3e38, F32_MAX, -F32_MAX]


@pytest.mark.parametrize("mn", [(3, 2), (9, 8), (2, 5), (5, 2), (12, 1), (1, 9)], ids=str)
def test_matches_high_precision_reference(mn: tuple[int, int]) -> None:
    """float32 results agree with 100-digit values to a few units of the forward-error bound everywhere."""
    a, b = coefficients(*mn, seed=11, dtype=torch.float32)
    gen = np.random.default_rng(5)
    log_mag = gen.uniform(-45, 38.5, size=40)
    h = torch.tensor(SPECIAL + list(np.sign(gen.standard_normal(40)) * 10.0**log_mag), dtype=torch.float32)
    y = safe_pade(h, a, b)
    assert torch.isfinite(y).all()
    assert_matches_reference(h, y, a, b)


def test_saturates_instead_of_overflowing() -> None:
    """When the true value exceeds float32 range the output is ±float32 max and its gradients are zero."""
    a = torch.tensor([0.0, 0.0, 0.0, 1.0], requires_grad=True)  # r = t³ / (1 + |t|): grows like t²
    b = torch.tensor([1.0], requires_grad=True)
    h = torch.tensor([1e30, -1e30, 1e10], requires_grad=True)
    y = safe_pade(h, a, b)
    assert y[0].item() == F32_MAX and y[1].item() == -F32_MAX
    assert y[2].item() == pytest.approx(1e20, rel=1e-6)
    y.sum().backward()
    assert h.grad[:2].tolist() == [0.0, 0.0]
    assert h.grad[2].item() == pytest.approx(2e10, rel=1e-5)
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


def test_huge_upstream_gradient_saturates() -> None:
    a, b = coefficients(9, 8, seed=2, dtype=torch.float32)
    a.requires_grad_()
    b.requires_grad_()
    h = torch.tensor([3e38, -1e30, 0.5, 2.0, 0.0], requires_grad=True)
    safe_pade(h, a, b).backward(torch.full((5,), F32_MAX))
    for x in (h, a, b):
        assert torch.isfinite(x.grad).all()


def test_nan_propagates_and_finite_entries_are_unaffected() -> None:
    a, b = coefficients(3, 2, seed=4, dtype=torch.float32)
    h = torch.tensor([0.5, float("nan"), -2.0], requires_grad=True)
    y = safe_pade(h, a, b)
    assert torch.isnan(y[1]) and torch.isfinite(y[[0, 2]]).all()
    torch.testing.assert_close(y[[0, 2]], safe_pade(torch.tensor([0.5, -2.0]), a, b))
    y.sum().backward()
    assert torch.isnan(h.grad[1]) and torch.isfinite(h.grad[[0, 2]]).all()


finite_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
coefficient = st.floats(-10, 10, width=32)


@st.composite
def problems(draw: st.DrawFn, max_degree: int = 9, per_latent: bool = False) -> tuple[torch.Tensor, ...]:
    m = draw(st.integers(0, max_degree))
    n = draw(st.integers(0, max_degree))
    d = draw(st.integers(1, 4))
    rows = draw(st.integers(1, 4))
    h = draw(st.lists(finite_f32, min_size=rows * d, max_size=rows * d))
    a = draw(st.lists(coefficient, min_size=m + 1, max_size=m + 1))
    b = draw(st.lists(coefficient, min_size=n, max_size=n))
    k = d if per_latent else 1
    lci = draw(st.lists(st.floats(-3, 3), min_size=k, max_size=k))
    lco = draw(st.lists(st.floats(-3, 3), min_size=k, max_size=k))
    shape = (d,) if per_latent else ()
    return (torch.tensor(h, dtype=torch.float32).reshape(rows, d), torch.tensor(a), torch.tensor(b),
            torch.tensor(lci, dtype=torch.float32).reshape(shape),
            torch.tensor(lco, dtype=torch.float32).reshape(shape))


def check_finite_everywhere(problem: tuple[torch.Tensor, ...]) -> None:
    inputs = [x.clone().requires_grad_() for x in problem]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the last-resort sanitisation must not be needed either
        y = rational_activation(*inputs)
        y.sum().backward()
    assert torch.isfinite(y).all(), y
    for x in inputs:
        assert torch.isfinite(x.grad).all(), (x, x.grad)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_finite_for_every_finite_float32_input(problem: tuple[torch.Tensor, ...]) -> None:
    check_finite_everywhere(problem)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(problems(), problems(per_latent=True)))
def test_finite_for_every_finite_float32_input_thorough(problem: tuple[torch.Tensor, ...]) -> None:
    check_finite_everywhere(problem)


@settings(max_examples=40, deadline=None)
@given(st.lists(finite_f32, min_size=1, max_size=8), st.sampled_from([(3, 2), (9, 8)]), st.integers(0, 2**16))
def test_reference_agreement_property(h: list[float], mn: tuple[int, int], seed: int) -> None:
    a, b = coefficients(*mn, seed=seed, dtype=torch.float32)
    x = torch.tensor(h, dtype=torch.float32)
    assert_matches_reference(x, safe_pade(x, a, b), a, b)


# ----------------------------------------------------------------------------------------- dtypes and shapes


@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 0), (0, 5), (2, 3, 5)], ids=str)
def test_shapes(shape: tuple[int, ...]) -> None:
    a, b = coefficients(3, 2, seed=0, dtype=torch.float32)
    h = torch.randn(shape, requires_grad=True)
    y = safe_pade(h, a, b)
    assert y.shape == h.shape and y.dtype == h.dtype
    y.sum().backward()
    assert h.grad.shape == h.shape
    flat = safe_pade(h.detach().reshape(-1), a, b)
    torch.testing.assert_close(y.detach().reshape(-1), flat)


def test_per_latent_scales_act_per_column() -> None:
    act = RationalActivation(RELU32_A, RELU32_B, c_in=[1.0, 2.0, 4.0], c_out=[1.0, 3.0, 0.5], d_sae=3,
                             per_latent_scales=True)
    h = torch.randn(4, 2, 3)
    y = act(h).detach()
    a, b = torch.tensor(RELU32_A, dtype=torch.float32), torch.tensor(RELU32_B, dtype=torch.float32)
    for j, (ci, co) in enumerate([(1.0, 1.0), (2.0, 3.0), (4.0, 0.5)]):
        torch.testing.assert_close(y[..., j], co * safe_pade(h[..., j] / ci, a, b))
    act(h).sum().backward()
    assert act.log_c_in.grad.shape == (3,) and act.log_c_out.grad.shape == (3,)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_computed_in_float32(dtype: torch.dtype) -> None:
    a, b = coefficients(9, 8, seed=1, dtype=torch.float32)
    h = (torch.randn(64) * 3).to(dtype).requires_grad_()
    y = safe_pade(h, a, b)
    assert y.dtype == dtype
    torch.testing.assert_close(y, safe_pade(h.detach().float(), a, b).to(dtype))
    y.float().sum().backward()
    assert h.grad.dtype == dtype and torch.isfinite(h.grad).all()


def test_float16_output_saturates_at_its_range() -> None:
    a, b = torch.tensor([0.0, 1.0, 0.0, 1.0]), torch.tensor([0.0, 0.001])
    h = torch.tensor([1e4, 1.0], dtype=torch.float16, requires_grad=True)
    y = safe_pade(h, a, b)
    assert y[0].item() == float(torch.finfo(torch.float16).max)
    y.sum().backward()
    assert h.grad[0].item() == 0.0 and h.grad[1].item() > 0


def test_bf16_autocast() -> None:
    act = RationalActivation(RELU32_A, RELU32_B, d_sae=6)
    lin = torch.nn.Linear(5, 6)
    x = torch.randn(3, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = lin(x)
        y = act(h)
    assert h.dtype == torch.bfloat16 and y.dtype == torch.bfloat16
    torch.testing.assert_close(y, act(h.detach().float()).to(torch.bfloat16))
    y.float().sum().backward()
    assert act.a.grad.dtype == torch.float64 and torch.isfinite(act.a.grad).all()  # coefficients are float64
    assert torch.isfinite(lin.weight.grad).all()


def test_eager_chunks_agree_with_one_pass() -> None:
    """Without compilation large tensors run in row chunks; the reductions add up across chunks."""
    act = RationalActivation(*coefficients(9, 8, seed=5), c_in=2.0, d_sae=50, per_latent_scales=True)
    h = torch.randn(45, 50) * 3
    configure_kernels(compile=False, chunk_numel=500)  # 10 rows per block: 5 blocks
    try:
        act(h).square().sum().backward()
    finally:
        configure_kernels(compile=True, chunk_numel=1 << 18)
    grads = [p.grad.clone() for p in act.parameters()]
    ref = [p.detach().clone().requires_grad_() for p in act.parameters()]
    naive(h, *ref).square().sum().backward()
    for mine, theirs in zip(grads, ref, strict=True):
        torch.testing.assert_close(mine, theirs.grad, rtol=1e-3, atol=1e-3 * theirs.grad.abs().max().item())


@pytest.mark.slow
def test_compiled_kernels_agree_with_eager() -> None:
    """The torch.compile kernels (used for large tensors) give the eager results, extreme inputs included."""
    a, b = coefficients(9, 8, seed=8, dtype=torch.float32)
    h = torch.randn(64, 48) * 3
    h[0, :4] = torch.tensor([3e38, -1e30, 0.0, 1e-40])
    results = []
    for compiled in (False, True):
        configure_kernels(compile=compiled, min_numel=0)
        inputs = [x.clone().requires_grad_() for x in (h, a, b, torch.tensor(0.2), torch.tensor(-0.1))]
        y = rational_activation(*inputs)
        y.backward(torch.ones_like(y))
        results.append([y.detach(), *(x.grad for x in inputs)])
    configure_kernels(compile=True, min_numel=1 << 18)
    for eager, comp in zip(*results, strict=True):
        torch.testing.assert_close(comp, eager, rtol=1e-5, atol=1e-5 * eager.abs().max().item())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    act = RationalActivation(*coefficients(3, 2, seed=0), d_sae=16)
    h = torch.randn(8, 16) * 2
    torch.testing.assert_close(act.cuda()(h.cuda()).cpu(), act.cpu()(h), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- the module


def test_configure_kernels_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match="chunk_numel must be an int >= 1"):
        configure_kernels(chunk_numel=0)
    with pytest.raises(ConfigError, match="min_numel must be an int >= 0"):
        configure_kernels(min_numel=-1)


def test_module_parameters_repr_and_coefficients() -> None:
    act = RationalActivation(RELU32_A, RELU32_B, c_in=2.0, c_out=0.5, d_sae=4)
    assert dict(act.named_parameters()).keys() == {"a", "b", "log_c_in", "log_c_out", "b0"}
    assert act.type == (3, 2)
    assert "type=(3, 2)" in repr(act) and "d_sae=4" in repr(act) and "c_in=2" in repr(act)
    coef = act.coefficients()
    a, b, c_in, c_out, b0 = coef
    assert b0 == 0.0
    assert isinstance(a, np.ndarray) and a.dtype == np.float64
    np.testing.assert_allclose(a, RELU32_A, rtol=1e-7)
    np.testing.assert_allclose(b, RELU32_B, rtol=1e-7)
    assert float(c_in) == pytest.approx(2.0) and float(c_out) == pytest.approx(0.5)
    # the (3,2) ReLU fit: error 0.0218 on [-1, 1], i.e. on [-2, 2] in h with C_in = 2 (and C_out scales it)
    h = torch.linspace(-2, 2, 4001).reshape(-1, 1).expand(-1, 4)
    err = (act(h).detach() / 0.5 - torch.relu(h / 2)).abs().max().item()
    assert err == pytest.approx(0.021844506, rel=1e-3)


def test_per_latent_module_repr_and_shapes() -> None:
    act = RationalActivation(RELU32_A, RELU32_B, c_in=np.full(5, 2.0), d_sae=5, per_latent_scales=True)
    assert act.log_c_in.shape == (5,) and act.log_c_out.shape == (5,)
    assert "c_in=[5]" in repr(act)
    assert act.coefficients().c_in.shape == (5,)


def test_scales_stay_positive_under_training() -> None:
    act = RationalActivation(RELU32_A, RELU32_B)
    opt = torch.optim.SGD(act.parameters(), lr=10.0)
    for _ in range(5):
        opt.zero_grad()
        act(torch.randn(32) * 3).sum().backward()
        opt.step()
    coef = act.coefficients()
    assert coef.c_in > 0 and coef.c_out > 0


def test_from_gate_needs_type_for_unknown_gate() -> None:
    assert DEFAULT_TYPES["relu"] == (3, 2) and DEFAULT_TYPES["jumprelu"] == (9, 8) == DEFAULT_TYPES["topk"]
    with pytest.raises(ConfigError, match="no default rational type"):
        RationalActivation.from_gate("softsign")
    with pytest.raises(ConfigError, match="pair of non-negative ints"):
        RationalActivation.from_gate("relu", (3, -1))


def test_from_gate_uses_rational_approx() -> None:
    """from_gate takes (a, b) from rational_approx.activation_coefficients and evaluates the same function."""
    from rational_approx import activation_coefficients

    fit = activation_coefficients("relu", (3, 2))
    act = RationalActivation.from_gate("relu", d_sae=4)
    assert act.type == (3, 2)
    np.testing.assert_allclose(act.coefficients().a, np.asarray(fit.a), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(act.coefficients().b, np.asarray(fit.b), rtol=1e-6, atol=1e-7)
    t = np.concatenate([np.linspace(lo, hi, 2001) for lo, hi in fit.domain.intervals])
    h = torch.tensor(t, dtype=torch.float32).reshape(-1, 1).expand(-1, 4)
    ours = act(h).detach()[:, 0].double().numpy()
    np.testing.assert_allclose(ours, fit(t), rtol=1e-5, atol=1e-6)
    # the sup error of the safe form on the domain, as rational_approx reports it (0.0218 for ReLU, (3,2))
    err = np.max(np.abs(ours - np.maximum(t, 0.0)))
    assert 0.99 * fit.error <= err <= 1.001 * fit.error + 1e-6
    assert RationalActivation.from_gate("jumprelu", d_sae=4).type == (9, 8)


# ---------------------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"a": [[1.0, 2.0]], "b": [1.0]}, "a must be 1-D"),
        ({"a": [], "b": [1.0]}, "at least a_0"),
        ({"a": [1.0], "b": [[1.0]]}, "b must be 1-D"),
        ({"a": [1.0, float("nan")], "b": [1.0]}, "non-finite"),
        ({"a": [1.0], "b": [1.0], "c_in": 0.0}, "c_in must be finite and > 0"),
        ({"a": [1.0], "b": [1.0], "c_out": -2.0}, "c_out must be finite and > 0"),
        ({"a": [1.0], "b": [1.0], "c_in": [1.0, -1.0], "d_sae": 2, "per_latent_scales": True}, "> 0"),
        ({"a": [1.0], "b": [1.0], "per_latent_scales": True}, "needs d_sae"),
        ({"a": [1.0], "b": [1.0], "c_in": [1.0, 2.0]}, "per_latent_scales=False"),
        ({"a": [1.0], "b": [1.0], "c_in": [1.0, 2.0], "d_sae": 3, "per_latent_scales": True},
         r"shape \[d_sae\]"),
        ({"a": [1.0], "b": [1.0], "d_sae": 0}, "d_sae must be a positive int"),
        ({"a": "abc", "b": [1.0]}, "a must be a sequence of real numbers"),
    ],
)
def test_constructor_rejects_bad_configuration(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RationalActivation(**kwargs)


def test_forward_rejects_mismatched_d_sae_and_bad_inputs() -> None:
    act = RationalActivation(RELU32_A, RELU32_B, d_sae=4)
    with pytest.raises(ConfigError, match="d_sae = 4"):
        act(torch.randn(3, 5))
    with pytest.raises(ConfigError, match="floating-point"):
        act(torch.ones(3, 4, dtype=torch.int64))
    a, b = torch.tensor(RELU32_A), torch.tensor(RELU32_B)
    with pytest.raises(ConfigError, match=r"a must be a tensor \[m\+1\]"):
        safe_pade(torch.randn(3), a.reshape(1, 2, 2), b)
    with pytest.raises(ConfigError, match=r"b must be \[2, n\]"):
        safe_pade(torch.randn(3, 2), a.reshape(2, 2), b)
    with pytest.raises(ConfigError, match="the input's last dimension is 3"):
        safe_pade(torch.randn(3), a.reshape(2, 2), b.reshape(2, 1))
    with pytest.raises(ConfigError, match="b must be a 1-D"):
        safe_pade(torch.randn(3), a, b.reshape(1, 2))
    with pytest.raises(ConfigError, match="log_c_in must be a scalar or have shape"):
        rational_activation(torch.randn(3, 4), a, b, torch.zeros(3), torch.zeros(3))
    with pytest.raises(ConfigError, match="is on meta"):
        safe_pade(torch.randn(3), a.to("meta"), b)


# ------------------------------------------------------------------------------- the free constant b_0


def naive_b0(h: torch.Tensor, a: torch.Tensor, b: torch.Tensor, log_c_in: torch.Tensor, log_c_out: torch.Tensor,
             b0: torch.Tensor) -> torch.Tensor:
    return naive(h, a, b, log_c_in, log_c_out, b0)


@pytest.mark.parametrize("per_latent", [False, True], ids=["shared", "per_latent"])
@pytest.mark.parametrize("mn", [(3, 2), (9, 8), (2, 0)], ids=str)
def test_gradcheck_float64_with_b0(mn: tuple[int, int], per_latent: bool) -> None:
    """∂/∂b_0 and every other gradient of the form 1 + |b_0 + B(t)|, both branches (|t| ≤ 1 and > 1)."""
    h, a, b, lci, lco = (x.detach() for x in gradcheck_inputs(*mn, d=5, per_latent=per_latent, seed=11))
    b0 = torch.tensor(0.7, dtype=torch.float64)
    c = torch.cat([b0.reshape(1), b])
    t = (h * torch.exp(-lci)).detach()
    q = sum(c[j] * t**j for j in range(c.shape[0]))
    h = torch.where(q.abs() > 0.05, h, h + 0.3)  # keep finite differences off the kink B = 0
    inputs = tuple(x.clone().requires_grad_() for x in (h, a, b, lci, lco, b0))
    assert torch.autograd.gradcheck(rational_activation, inputs)
    assert torch.autograd.gradcheck(safe_pade, (inputs[0].reshape(-1)[:12].detach().requires_grad_(), *inputs[1:3],
                                                inputs[5]))


def test_b0_matches_the_plain_formula_and_reaches_b0_gradient() -> None:
    a, b = coefficients(5, 4, seed=4)
    b0 = torch.tensor(-1.3, dtype=torch.float64, requires_grad=True)
    h = torch.linspace(-3, 3, 61, dtype=torch.float64).reshape(-1, 1)
    zero = torch.zeros((), dtype=torch.float64)
    y = rational_activation(h, a, b, zero, zero, b0)
    ref_b0 = b0.detach().clone().requires_grad_()
    ref = naive(h, a, b, zero, zero, ref_b0)
    torch.testing.assert_close(y, ref)
    y.sum().backward()
    ref.sum().backward()
    assert b0.grad is not None and float(b0.grad) != 0.0
    torch.testing.assert_close(b0.grad, ref_b0.grad)


def test_b0_finite_over_the_float32_range() -> None:
    """Finite outputs and gradients for extreme float32 inputs with the (9, 8) gate fit's large coefficients."""
    from rational_approx import activation_coefficients

    fit = activation_coefficients("jumprelu")
    act = RationalActivation(fit.a, fit.b, b0=fit.b0, d_sae=3)
    vals = [F32_MAX, -F32_MAX, 1e30, -1e-30, 1e-45, 0.0, 0.5, 0.4999, 0.55, 1.0, -1.0, 3e4, -7e12]
    h = torch.tensor(vals, dtype=torch.float32).reshape(-1, 1).expand(-1, 3).contiguous().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = act(h)
        y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(h.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in act.parameters())


def test_float32_kernel_keeps_the_9_8_gate_fit_accurate() -> None:
    """The (9, 8) JumpReLU fit's monomial coefficients reach 1.5e7 and cancel: float32 Horner would have sup error
    0.015 on the gapped domain. The kernel sees the ill-conditioning (float32_error_bound > tolerance), computes
    in float64 from float64 coefficients, and its float32 output keeps the minimax error up to output rounding."""
    from rational_approx import activation_coefficients
    from rsae.core.rational import float32_error_bound

    fit = activation_coefficients("jumprelu")
    assert float32_error_bound(fit.a, fit.b, fit.b0) > 1e-5
    act = RationalActivation(fit.a, fit.b, b0=fit.b0).float()
    assert act.a.dtype == torch.float64  # a module cast leaves the coefficients in float64
    t = np.concatenate([np.linspace(lo, hi, 50001) for lo, hi in fit.domain.intervals]).astype(np.float32)
    y = act(torch.from_numpy(t)).detach()
    assert y.dtype == torch.float32
    t64 = t.astype(np.float64)
    err = np.max(np.abs(y.double().numpy() - np.where(t64 > 0.5, t64, 0.0)))
    assert fit.minimax_error * (1 - 1e-3) <= err <= fit.minimax_error + 2 * 2.0**-24  # + output rounding
    configure_kernels(precision="float32")
    try:
        forced = act(torch.from_numpy(t)).detach().double().numpy()
    finally:
        configure_kernels(precision="auto")
    assert np.max(np.abs(forced - np.where(t64 > 0.5, t64, 0.0))) > 100 * fit.minimax_error


def test_state_dict_without_b0_loads_as_the_old_form() -> None:
    act = RationalActivation(RELU32_A, RELU32_B, b0=0.25)
    state = {k: v for k, v in act.state_dict().items() if k != "b0"}
    fresh = RationalActivation(RELU32_A, RELU32_B, b0=0.9)
    fresh.load_state_dict(state)
    assert float(fresh.b0.detach()) == 0.0
    with pytest.raises(ConfigError, match="precision"):
        configure_kernels(precision="half")


def test_sae_file_without_b0_loads_as_the_old_form(tmp_path) -> None:
    """A rational SAE folder written before b_0 existed (no ``rational_b0`` tensor) loads with b_0 = 0, and a new
    one round-trips b_0 and the float64 coefficients exactly."""
    from safetensors.torch import load_file, save_file

    from rsae.core.config import SAEConfig
    from rsae.core.io import WEIGHTS_FILE, load_sae, save_sae
    from rsae.core.sae import SAE

    cfg = SAEConfig(d_in=4, d_sae=6, family="rational", rational_a=tuple(RELU32_A), rational_b=tuple(RELU32_B),
                    rational_b0=0.125)
    sae = SAE.from_config(cfg, seed=0)
    save_sae(sae, tmp_path / "new")
    again = load_sae(tmp_path / "new")
    assert float(again.activation.phi.b0.detach()) == 0.125
    assert again.activation.phi.a.dtype == torch.float64
    assert again.activation.phi.a.tolist() == RELU32_A
    save_sae(sae, tmp_path / "old")
    tensors = load_file(str(tmp_path / "old" / WEIGHTS_FILE))
    del tensors["rational_b0"]
    save_file(tensors, str(tmp_path / "old" / WEIGHTS_FILE))
    old = load_sae(tmp_path / "old")
    assert float(old.activation.phi.b0.detach()) == 0.0 and old.cfg.rational_b0 == 0.0


def test_tails_follow_the_primitive_outside_the_design_interval() -> None:
    """tails=(s_left, s_right): r on [−1, 1], straight lines of those slopes beyond, continuous at ±1 — checked
    against the formula, and the (9, 8) JumpReLU fit stays within its error of t·H(t − 0.5) at t = −30 and 5,
    where the bare rational is off by O(1)."""
    from rational_approx import activation_coefficients

    fit = activation_coefficients("jumprelu")
    zero = torch.zeros((), dtype=torch.float64)
    a, b, b0 = (torch.as_tensor(v, dtype=torch.float64) for v in (fit.a, fit.b, fit.b0))
    t = torch.tensor([-30.0, -1.0 - 1e-12, -1.0, 0.7, 1.0, 1.0 + 1e-12, 5.0], dtype=torch.float64)
    bare = rational_activation(t, a, b, zero, zero, b0)
    tailed = rational_activation(t, a, b, zero, zero, b0, (0.0, 1.0))
    primitive = t * (t > 0.5)
    assert (tailed - primitive).abs().max() < 2 * fit.error
    assert (bare - primitive)[[0, 6]].abs().min() > 0.5
    torch.testing.assert_close(tailed[1:6], bare[1:6], atol=1e-9, rtol=0)  # continuous at ±1
    lci, lco = torch.tensor(0.4, dtype=torch.float64), torch.tensor(-0.3, dtype=torch.float64)
    h = torch.tensor([-9.0, -2.0, 0.3, 1.2, 8.0], dtype=torch.float64)
    c_in, c_out = math.exp(0.4), math.exp(-0.3)
    expect = c_out * rational_activation(torch.clamp(h / c_in, -1, 1), a, b, zero, zero, b0)
    expect = expect + c_out * (0.5 * torch.relu(h / c_in - 1) - (-0.25) * torch.relu(-1 - h / c_in))
    torch.testing.assert_close(rational_activation(h, a, b, lci, lco, b0, (-0.25, 0.5)), expect)


@pytest.mark.parametrize("per_latent", [False, True])
def test_gradcheck_with_tails(per_latent: bool) -> None:
    a, b = coefficients(3, 2, seed=7)
    gen = torch.Generator().manual_seed(3)
    h = torch.randn(4, 3, generator=gen, dtype=torch.float64) * 3
    h = torch.where((h.abs() - 1.1).abs() < 0.05, h + 0.2, h)  # finite differences off the kinks at ±C_in
    shape = (3,) if per_latent else ()
    lci = torch.full(shape, 0.1, dtype=torch.float64)
    lco = torch.full(shape, -0.2, dtype=torch.float64)
    b0 = torch.tensor(0.3, dtype=torch.float64)
    inputs = tuple(x.clone().requires_grad_() for x in (h, a, b, lci, lco, b0))
    assert torch.autograd.gradcheck(lambda *v: rational_activation(*v[:5], v[5], (0.3, 1.0)), inputs)


def test_tails_stay_finite_and_reject_bad_slopes() -> None:
    act = RationalActivation.from_gate("jumprelu", d_sae=2, tails=(0.0, 1.0))
    with torch.no_grad():
        act.log_c_in.fill_(-3.0)
    h = torch.tensor([[F32_MAX, -F32_MAX]], dtype=torch.float32, requires_grad=True)
    y = act(h)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(h.grad).all() and float(y.detach()[0, 0]) == F32_MAX
    assert "tails=(0.0, 1.0)" in repr(act)
    for bad in ((0.0,), (math.nan, 1.0), "ab", 3):
        with pytest.raises(ConfigError, match="tails"):
            RationalActivation([0.0, 1.0], [], tails=bad)


def test_compiling_a_kernel_raises_dynamos_recompile_limit() -> None:
    """Past torch's default of 8 variants per kernel, dynamo would run the fused kernels eagerly without a word."""
    import torch._dynamo

    from rsae.core import rational

    config = torch._dynamo.config
    key = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    before = getattr(config, key)
    try:
        setattr(config, key, 8)
        rational._compiled.pop("test-kernel", None)
        with rational.kernel_settings(compile=True, min_numel=0):
            assert rational._compiled_or_eager("test-kernel", torch.sin, 10) is not None
        assert getattr(config, key) >= rational.RECOMPILE_LIMIT >= 32
    finally:
        rational._compiled.pop("test-kernel", None)
        setattr(config, key, max(before, rational.RECOMPILE_LIMIT))
