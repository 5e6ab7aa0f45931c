"""The dense path's codes, L1 penalty and reconstruction in one autograd node (``l1_decode``; ReLU, the relu gate,
no gate) against the plain formulation, the gates' shared steps, and the density decision of the threshold
families' supports."""

from __future__ import annotations

import pytest
import torch

from rsae.core import activations
from rsae.core.activations import Activation, _l1, _threshold_support, l1_decode
from rsae.core.config import SAEConfig
from rsae.core.sae import SAE

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])  # the CUDA cases run where a device is present


def _plain(h, W_dec, b_dec, weight_by_norm, relu=True):
    z = torch.relu(h) if relu else h
    return z, z @ W_dec + b_dec, _l1(z, W_dec, weight_by_norm)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("weight_by_norm", [True, False])
def test_gradcheck_float64(weight_by_norm: bool, relu: bool, device: str) -> None:
    generator = torch.Generator().manual_seed(0)
    h, W, b = (torch.randn(*shape, dtype=torch.float64, generator=generator).to(device).requires_grad_()
               for shape in ((7, 6), (6, 4), (4,)))
    # every output used: reconstruction, codes and penalty
    assert torch.autograd.gradcheck(lambda h, W, b: l1_decode(h, W, b, weight_by_norm, relu)[:3], (h, W, b))
    # the codes unused (their gradient is None inside the node), then the reconstruction unused
    assert torch.autograd.gradcheck(lambda h, W, b: l1_decode(h, W, b, weight_by_norm, relu)[1:3:1], (h, W, b))
    assert torch.autograd.gradcheck(lambda h, W, b: l1_decode(h, W, b, weight_by_norm, relu)[0], (h, W, b))
    assert torch.autograd.gradcheck(lambda h, W, b: l1_decode(h, W, b, weight_by_norm, relu)[2], (h, W, b))


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("weight_by_norm", [True, False])
def test_equals_the_plain_formulation_float32(weight_by_norm: bool, relu: bool) -> None:
    generator = torch.Generator().manual_seed(1)
    h0 = torch.randn(512, 384, generator=generator)
    W0 = torch.randn(384, 48, generator=generator)
    b0 = torch.randn(48, generator=generator)
    g = torch.randn(512, 48, generator=generator)
    results = []
    for fn in (lambda h, W, b: l1_decode(h, W, b, weight_by_norm, relu)[:3], lambda h, W, b: _plain(
            h, W, b, weight_by_norm, relu)):
        h, W, b = (t.clone().requires_grad_() for t in (h0, W0, b0))
        z, x_hat, penalty = fn(h, W, b)
        ((x_hat * g).sum() + 3.0 * penalty).backward()
        results.append((z.detach(), x_hat.detach(), penalty.detach(), h.grad, W.grad, b.grad))
    for fused, plain in zip(*results):
        scale = plain.abs().max()
        assert torch.allclose(fused, plain, rtol=0, atol=2e-6 * float(scale)), (fused - plain).abs().max() / scale
    assert torch.equal(results[0][0], results[1][0])  # the codes are bit-identical


def test_fired_latents_and_leading_dimensions() -> None:
    generator = torch.Generator().manual_seed(2)
    h = torch.randn(3, 5, 40, generator=generator) - 2.0  # many latents never fire
    W, b = torch.randn(40, 8, generator=generator), torch.zeros(8)
    z, x_hat, penalty, fired = l1_decode(h, W, b, True, relu=True)
    assert z.shape == h.shape and x_hat.shape == (3, 5, 8)
    assert torch.equal(fired, (torch.relu(h) != 0).reshape(-1, 40).any(0))
    assert 0 < int(fired.sum()) < 40
    assert torch.allclose(penalty, _l1(torch.relu(h), W, True), rtol=1e-6)


@pytest.mark.parametrize("weight_by_norm", [True, False])
def test_relu_sae_dense_step_equals_the_plain_path(weight_by_norm: bool, monkeypatch) -> None:
    cfg = SAEConfig(d_in=24, d_sae=96, family="relu", l1_coefficient=0.7, l1_weight_by_decoder_norm=weight_by_norm)
    x = torch.randn(256, 24, generator=torch.Generator().manual_seed(3))
    outputs = []
    for plain in (False, True):
        if plain:  # the Activation base class: relu, then SAE.decode, then ReLU.penalty
            monkeypatch.setattr(activations.ReLU, "dense_forward", Activation.dense_forward)
        sae = SAE.from_config(cfg, seed=0)
        out = sae(x)
        assert out.support is None  # ~50 % dense codes: the dense path
        out.losses.total.backward()
        outputs.append((out.losses.total.detach(), out.codes.detach(), out.fired_latents(),
                        *(p.grad for p in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec))))
    fused, plain = outputs
    assert torch.equal(fused[1], plain[1]) and torch.equal(fused[2], plain[2])
    for a, b in zip(fused[:1] + fused[3:], plain[:1] + plain[3:]):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7 * float(b.abs().max()))


@pytest.mark.parametrize("density", [0.0, 0.004, 0.009, 0.0105, 0.02, 0.3])
@pytest.mark.parametrize("dense_head", [False, True])
def test_threshold_support_decision_equals_the_full_count(density: float, dense_head: bool) -> None:
    """The first-rows shortcut gives the answer of counting the whole mask, also when the head is unrepresentative."""
    generator = torch.Generator().manual_seed(4)
    h = torch.rand(640, 200, generator=generator)
    mask = h < density
    if dense_head:  # all set entries of the batch in its first rows
        mask = mask.reshape(-1).sort(descending=True).values.reshape(mask.shape)
    h = mask.float()
    support = _threshold_support(h, lambda rows: rows > 0, 0.01)
    expected_dense = int(mask.sum()) > 0.01 * mask.numel()
    assert (support is None) == expected_dense
    if support is not None:
        assert torch.equal(support.to_dense(torch.ones(support.latents.numel())).bool(), mask)


GATES = {
    "rational/relu-gate": dict(family="rational", rational_gate="relu", l1_coefficient=0.7,
                               l1_weight_by_decoder_norm=True),
    "rational/relu-gate-unweighted": dict(family="rational", rational_gate="relu", l1_coefficient=0.7),
    "rational/no-gate": dict(family="rational", rational_gate="none", l1_coefficient=0.7,
                             l1_weight_by_decoder_norm=True),
    "rational/jumprelu-gate": dict(family="rational", rational_gate="jumprelu", l0_coefficient=0.3,
                                   jumprelu_bandwidth=0.5),
    "rational/cutoff-gate": dict(family="rational", rational_gate="cutoff", l0_coefficient=0.3),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", list(GATES))
def test_rational_gate_dense_step_equals_the_plain_path(case: str, device: str, monkeypatch) -> None:
    """Each gate's ``gated_dense_forward`` (one L1-and-decode node, or the step shared by codes and penalty)
    against gated(), SAE.decode and gated_penalty() computed apart, float64: loss, codes and every gradient."""
    cfg = SAEConfig(d_in=12, d_sae=40, dtype="float64", device=device, **GATES[case])
    x = torch.randn(64, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(5)).to(device)
    outputs = []
    for plain in (False, True):
        if plain:
            monkeypatch.setattr(activations.Rational, "dense_forward", Activation.dense_forward)
        sae = SAE.from_config(cfg, seed=1)
        with torch.no_grad():
            sae.b_enc.copy_(torch.randn(40, dtype=torch.float64, generator=torch.Generator().manual_seed(6)) * 0.3)
        out = sae(x)
        assert out.support is None  # the dense path
        out.losses.total.backward()
        grads = {name: p.grad.clone() for name, p in sae.named_parameters() if p.grad is not None}
        outputs.append((out.losses, out.codes.detach(), out.fired_latents(), grads))
    (losses, codes, fired, grads), (losses_ref, codes_ref, fired_ref, grads_ref) = outputs
    assert torch.equal(codes, codes_ref) and torch.equal(fired, fired_ref)
    assert 0 < float(losses_ref.sparsity.detach())
    for a, b in zip(losses, losses_ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert grads.keys() == grads_ref.keys() and len(grads) >= 5  # W_enc, b_enc, W_dec, b_dec and φ's parameters
    for name in grads:
        torch.testing.assert_close(grads[name], grads_ref[name], rtol=1e-10, atol=1e-12, msg=name)
        if "threshold" in name or "cutoff" in name:  # the shared step's straight-through gradient is exercised
            assert grads[name].abs().max() > 0, name


@pytest.mark.parametrize("relu", [True, False])
def test_under_autocast_the_plain_operations_run(relu: bool) -> None:
    """Under autocast the node would see mixed dtypes; l1_decode runs the plain operations (each cast by autocast)
    and gives what they give, gradients included."""
    generator = torch.Generator().manual_seed(7)
    h0, W0, b0 = torch.randn(32, 20, generator=generator), torch.randn(20, 6, generator=generator), torch.randn(6)
    results = []
    for fused in (True, False):
        h, W, b = (t.clone().requires_grad_() for t in (h0, W0, b0))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if fused:
                z, x_hat, penalty, fired = l1_decode(h, W, b, True, relu=relu)
            else:
                z, x_hat, penalty = _plain(h, W, b, True, relu)
                fired = (z != 0).any(0)
        assert not torch.equal(x_hat, z.detach().float() @ W0 + b0)  # autocast cast the decoder product to bf16
        (x_hat.float().sum() + penalty).backward()
        results.append((z.detach(), x_hat.detach(), penalty.detach(), fired, h.grad, W.grad, b.grad))
    for fused, plain in zip(*results):
        assert torch.equal(fused, plain)
