"""The relu gate fused into the rational kernels (``rational_activation(..., positive=True)``).

The masked kernel must equal ``torch.where(h > 0, φ(h), 0)`` — the formulation it replaces — bit for bit in the
forward and in ∂/∂h, and to float rounding in the coefficient and scale gradients (the same per-element terms,
summed in the same kernel; only masked terms that were −0 or +0 may differ), eager and compiled alike.
"""

from __future__ import annotations

import pytest
import torch

from rsae.core.rational import configure_kernels, kernel_settings, rational_activation
from rsae.core.sae import SAE
from tests.rsae.conftest import make_config

F32_MAX = float(torch.finfo(torch.float32).max)


def _params(m: int, n: int, d: int, per_latent: bool, dtype: torch.dtype, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lead = (d,) if per_latent else ()
    a = torch.randn(*lead, m + 1, generator=gen, dtype=torch.float64)
    b = torch.randn(*lead, n, generator=gen, dtype=torch.float64)
    b0 = 0.3 * torch.randn(lead, generator=gen, dtype=torch.float64)
    lci = 0.2 * torch.randn(lead, generator=gen).to(dtype)
    lco = 0.2 * torch.randn(lead, generator=gen).to(dtype)
    return [a, b, lci, lco, b0]


def _run(h: torch.Tensor, params: list[torch.Tensor], masked: bool, tails) -> list[torch.Tensor]:
    inputs = [x.clone().requires_grad_() for x in (h, *params)]
    hh, a, b, lci, lco, b0 = inputs
    if masked:
        y = rational_activation(hh, a, b, lci, lco, b0, tails, positive=True)
    else:
        y = torch.where(hh > 0, rational_activation(hh, a, b, lci, lco, b0, tails), 0)
    g = torch.linspace(-1.0, 2.0, y.numel(), dtype=y.dtype).reshape(y.shape)
    y.backward(g)
    return [y.detach(), *(x.grad for x in inputs)]


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("per_latent", [False, True])
@pytest.mark.parametrize("tails", [None, (0.25, 1.0)])
def test_masked_kernel_equals_where_of_the_unmasked(compiled: bool, per_latent: bool, tails) -> None:
    """Forward and ∂/∂h bit for bit; the reductions (coefficients, scales) to float32 rounding. Extreme inputs
    (±F32_MAX, 0, a subnormal, NaN) included; NaN h is masked to 0 by both formulations, except with tails."""
    d = 48
    params = _params(3, 2, d, per_latent, torch.float32)
    h = torch.randn(64, d, generator=torch.Generator().manual_seed(1)) * 3
    h[0, :6] = torch.tensor([F32_MAX, -F32_MAX, 0.0, -0.0, 1e-40, float("nan")])
    with kernel_settings(compile=compiled, min_numel=0 if compiled else 1 << 18):
        new = _run(h, params, True, tails)
        old = _run(h, params, False, tails)
    if tails is not None:  # the eager right tail max(h − C_in, 0) is NaN at a NaN h: NaN propagates there
        assert torch.isnan(new[0][0, 5]) and float(old[0][0, 5]) == 0.0
        new[0][0, 5] = old[0][0, 5]
    for mine, theirs in zip(new[:2], old[:2], strict=True):  # bit for bit (NaN where NaN; ±0 alike)
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0, equal_nan=True)
    assert float(new[0][0, 5]) == 0.0 and bool((new[0][h <= 0] == 0).all())
    assert torch.isnan(new[1][0, 5])  # a NaN input keeps its NaN input gradient (module policy), as before
    for mine, theirs in zip(new[2:], old[2:], strict=True):  # NaN input: NaN reductions in both
        assert bool(torch.isnan(mine).any())
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0, equal_nan=True)
    h[0, 5] = 1.0  # without the NaN: the reductions agree to float rounding
    with kernel_settings(compile=compiled, min_numel=0 if compiled else 1 << 18):
        new = _run(h, params, True, tails)
        old = _run(h, params, False, tails)
    for mine, theirs in zip(new, old, strict=True):
        assert bool(torch.isfinite(mine).all())
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-6 * float(theirs.abs().max()))


@pytest.mark.parametrize("per_latent", [False, True])
@pytest.mark.parametrize("tails", [None, (0.3, 1.0)])
def test_gradcheck_masked_kernel(per_latent: bool, tails) -> None:
    """float64 gradcheck of the masked kernel in every argument (entries kept off the kinks at 0 and ±C_in)."""
    d = 3
    a, b, lci, lco, b0 = _params(3, 2, d, per_latent, torch.float64, seed=4)
    h = torch.randn(5, d, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2
    h = torch.where(h.abs() < 0.05, h + 0.2, h)
    h = torch.where((h.abs() - lci.exp()).abs() < 0.05, h + 0.2, h)
    assert bool((h <= 0).any()) and bool((h > 0).any())
    inputs = tuple(x.clone().requires_grad_() for x in (h, a, b, lci, lco, b0))

    def fn(hh, aa, bb, ci, co, c0):
        return rational_activation(hh, aa, bb, ci, co, c0, tails, positive=True)

    assert torch.autograd.gradcheck(fn, inputs)


def test_masked_overflow_saturates_and_stays_finite() -> None:
    """Inputs that overflow float32 send the call to the float64 path, as unmasked: saturated outputs, finite
    gradients, zeros on the masked side."""
    params = _params(9, 8, 2, False, torch.float32, seed=3)
    h = torch.tensor([[3e38, -3e38], [1e-40, -1e-40]])
    out = _run(h, params, True, None)
    ref = _run(h, params, False, None)
    assert all(bool(torch.isfinite(x).all()) for x in out)
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
    assert float(out[0][0, 1]) == 0.0 and float(out[1][0, 1]) == 0.0


@pytest.mark.parametrize("per_latent", [False, True])
def test_dense_relu_gate_sae_step_equals_the_where_formulation(per_latent: bool) -> None:
    """A dense rational relu-gate SAE (50 % of the codes non-zero, so no sparse path): loss and every
    parameter gradient of the fused gate equal those of the previous formulation z = where(h > 0, φ(h), 0)."""
    cfg = make_config("rational-relu", d_in=16, d_sae=64, l1_coefficient=1e-2, rational_tails=(0.0, 1.0),
                      rational_per_latent_scales=per_latent, rational_per_latent_coefficients=per_latent)
    sae = SAE.from_config(cfg)
    x = torch.randn(128, 16, generator=torch.Generator().manual_seed(0))
    act = sae.activation
    assert 0.3 < float((sae.pre_acts(x) > 0).float().mean()) < 0.7 and act.select(sae.pre_acts(x)) is None

    def step() -> tuple[torch.Tensor, list[torch.Tensor]]:
        sae.zero_grad()
        out = sae(x)
        loss = out.losses.total
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in sae.parameters() if p.grad is not None]

    loss_new, grads_new = step()
    fused = act.magnitude
    act.magnitude = lambda values, latents, positive=False: (  # the formulation before the fusion
        torch.where(values > 0, fused(values, latents), 0) if positive else fused(values, latents))
    try:
        loss_old, grads_old = step()
    finally:
        del act.magnitude
    assert torch.equal(loss_new, loss_old)
    assert len(grads_new) == len(grads_old) == len(list(sae.parameters()))
    for mine, theirs in zip(grads_new, grads_old, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-7 * float(theirs.abs().max()))


def teardown_module() -> None:
    configure_kernels(compile=True, min_numel=1 << 18)
