"""Gradient checks of whole SAEs (float64) and the no-NaN property of the rational family's codes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from rsae.core.sae import SAE
from tests.rsae.conftest import make_config


@pytest.mark.parametrize("name", ["relu", "topk", "rational-relu", "rational-topk", "rational-batchtopk"])
def test_gradcheck_full_sae(name: str) -> None:
    sae = SAE.from_config(make_config(name, d_in=4, d_sae=6, dtype="float64"), seed=2)
    with torch.no_grad():
        sae.b_enc.fill_(0.05)
        if sae.cfg.family == "rational":
            sae.activation.phi.log_c_in.fill_(math.log(1.3))
    x = torch.randn(5, 4, dtype=torch.float64)
    params = [p for p in sae.parameters() if p.requires_grad]
    names = [n for n, p in sae.named_parameters() if p.requires_grad]

    def loss(*values: torch.Tensor) -> torch.Tensor:
        state = dict(zip(names, values, strict=True))
        out = torch.func.functional_call(sae, state, (x,))
        return out.losses.mse + out.losses.sparsity

    inputs = tuple(p.detach().clone().requires_grad_(True) for p in params)
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


_finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None)
@given(
    h=arrays(np.float32, (3, 6), elements=_finite32),
    a=arrays(np.float32, 4, elements=st.floats(-100, 100, width=32)),
    b=arrays(np.float32, 2, elements=st.floats(-100, 100, width=32)),
    log_c=st.floats(-5, 5),
    gate=st.sampled_from(["relu", "jumprelu", "topk", "batchtopk", "cutoff"]),
    per_latent=st.booleans(),
)
def test_rational_codes_and_gradients_are_finite(h, a, b, log_c, gate, per_latent) -> None:
    sae = SAE.from_config(
        make_config(
            f"rational-{gate}",
            d_in=2,
            d_sae=6,
            rational_a=tuple(map(float, a)),
            rational_b=tuple(map(float, b)),
            rational_per_latent_scales=per_latent,
        ),
        seed=0,
    )
    act = sae.activation
    with torch.no_grad():
        act.phi.log_c_in.fill_(log_c)
        act.phi.log_c_out.fill_(-log_c / 2)
    pre = torch.tensor(h, requires_grad=True)
    codes = act(pre)
    assert torch.isfinite(codes).all()
    (codes * torch.linspace(-1, 1, 6)).sum().backward()
    assert torch.isfinite(pre.grad).all()
    for p in act.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()
