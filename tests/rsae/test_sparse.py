"""Sparse encoder/decoder passes (rsae.core.sparse) against the dense products they replace."""

from __future__ import annotations

import copy

import pytest
import torch

from rsae.core.config import SAEConfig
from rsae.core.sae import SAE
from rsae.core.sparse import Support, encoder_pre_acts, gather_pre_acts, sparse_decode
from tests.rsae.conftest import RELU_A, RELU_B

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _support(n_rows: int, n_cols: int, density: float, seed: int, device: str) -> Support:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n_rows, n_cols, generator=g) < density
    mask[0] = False  # an empty row
    mask[:, 1] = False  # a latent never selected
    return Support.from_flat(mask.reshape(-1).nonzero().squeeze(1).to(device), n_rows, n_cols)


@pytest.mark.parametrize("device", DEVICES)
def test_sparse_decode_gradcheck(device: str) -> None:
    support = _support(5, 7, 0.4, 0, device)
    values = torch.randn(len(support), dtype=torch.float64, device=device, requires_grad=True)
    W_dec = torch.randn(7, 3, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, w: sparse_decode(v, support, w), (values, W_dec))


@pytest.mark.parametrize("device", DEVICES)
def test_gather_pre_acts_gradcheck(device: str) -> None:
    support = _support(6, 8, 0.3, 1, device)
    x = torch.randn(6, 4, dtype=torch.float64, device=device, requires_grad=True)
    c = torch.randn(4, dtype=torch.float64, device=device, requires_grad=True)
    W = torch.randn(4, 8, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(8, dtype=torch.float64, device=device, requires_grad=True)

    def f(x, c, W, b):
        return gather_pre_acts(x, c, W, b, ((x - c) @ W + b).detach(), support)

    assert torch.autograd.gradcheck(f, (x, c, W, b))
    x.requires_grad_(False)  # as in training: then ∂/∂b_dec comes from the column sums
    assert torch.autograd.gradcheck(f, (x, c, W, b))
    # and it equals the dense gather, value and gradient
    c2, W2, b2 = (t.detach().clone().requires_grad_() for t in (c, W, b))
    dense = ((x - c2) @ W2 + b2).reshape(-1)[support.flat]
    g = torch.randn_like(dense)
    torch.autograd.backward(f(x, c, W, b), g)
    torch.autograd.backward(dense, g)
    for a, ref in ((c, c2), (W, W2), (b, b2)):
        torch.testing.assert_close(a.grad, ref.grad)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("with_b_dec", [True, False])
def test_encoder_pre_acts_gradcheck(device: str, with_b_dec: bool) -> None:
    x = torch.randn(5, 4, dtype=torch.float64, device=device, requires_grad=True)
    c = torch.randn(4, dtype=torch.float64, device=device, requires_grad=True) if with_b_dec else None
    W = torch.randn(4, 7, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(7, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(encoder_pre_acts, (x, c, W, b))
    x.requires_grad_(False)
    assert torch.autograd.gradcheck(encoder_pre_acts, (x, c, W, b))


def _dense_reference(sae: SAE, x: torch.Tensor, dead: torch.Tensor, alpha: float, k_aux: int) -> torch.Tensor:
    """The dense formulation: z = φ(h) on [B, d_sae], x̂ = z W_dec + b_dec, AuxK from a dense z_aux."""
    h = sae.pre_acts(x)
    z = sae.activation(h)
    x_hat = z @ sae.W_dec + sae.b_dec
    mse = (x_hat - x).pow(2).sum(-1).mean()
    masked = torch.where(dead, h, torch.finfo(h.dtype).min)
    idx = torch.topk(masked, k_aux, dim=-1).indices
    kept = h.gather(-1, idx)
    values = torch.where(kept > 0, sae.activation.magnitude(kept, idx), 0)
    z_aux = torch.zeros_like(h).scatter(-1, idx, values)
    auxk = alpha * (z_aux @ sae.W_dec - (x - x_hat).detach()).pow(2).sum(-1).mean()
    return mse + auxk, z


CASES = {
    "topk": dict(family="topk", k=3),
    "batchtopk": dict(family="batchtopk", k=3),
    "rational-topk": dict(family="rational", rational_gate="topk", k=3, rational_per_latent_scales=True,
                          rational_a=RELU_A, rational_b=RELU_B, rational_tails=(0.0, 1.0)),
    "rational-batchtopk": dict(family="rational", rational_gate="batchtopk", k=3, rational_a=RELU_A,
                               rational_b=RELU_B),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", list(CASES))
def test_sae_sparse_path_matches_dense(case: str, device: str) -> None:
    cfg = SAEConfig(d_in=6, d_sae=24, dtype="float64", device=device, apply_b_dec_to_input=True, **CASES[case])
    sae = SAE.from_config(cfg, seed=3)
    with torch.no_grad():
        sae.b_dec.normal_(0, 0.3)
        sae.b_enc.normal_(0, 0.3)
    ref = copy.deepcopy(sae)
    x = torch.randn(10, 6, dtype=torch.float64, device=device)
    dead = torch.zeros(24, dtype=torch.bool, device=device)
    dead[::3] = True
    out = sae(x, dead_mask=dead, auxk_coefficient=0.5, auxk_k=4)
    assert sae.activation.select(out.pre_acts.detach()) is not None  # the sparse path was taken
    total, z = _dense_reference(ref, x, dead, 0.5, 4)
    torch.testing.assert_close(out.codes, z)
    torch.testing.assert_close(out.losses.total, total)
    out.losses.total.backward()
    total.backward()
    grads = dict(ref.named_parameters())
    for name, p in sae.named_parameters():
        ref_grad = grads[name].grad
        if ref_grad is None:
            assert p.grad is None or not p.grad.any(), name
        else:
            torch.testing.assert_close(p.grad, ref_grad, msg=name)


THRESHOLD_CASES = {
    "relu": dict(family="relu", l1_coefficient=0.3, l1_weight_by_decoder_norm=True),
    "jumprelu": dict(family="jumprelu", threshold_init=0.3, jumprelu_bandwidth=0.5, l0_coefficient=0.2),
    "rational-relu": dict(family="rational", rational_gate="relu", rational_a=RELU_A, rational_b=RELU_B,
                          l1_coefficient=0.3),
    "rational-jumprelu": dict(family="rational", rational_gate="jumprelu", rational_a=RELU_A, rational_b=RELU_B,
                              threshold_init=0.3, jumprelu_bandwidth=0.5, l0_coefficient=0.2,
                              rational_per_latent_scales=True, rational_tails=(0.0, 1.0)),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", list(THRESHOLD_CASES))
def test_threshold_family_sparse_path_matches_dense(case: str, device: str) -> None:
    """ReLU/JumpReLU-style supports: the sparse path (forced by a density limit of 1) equals SAE.sparse = False,
    losses and every gradient, including the JumpReLU threshold's straight-through gradient from the window."""
    cfg = SAEConfig(d_in=6, d_sae=24, dtype="float64", device=device, **THRESHOLD_CASES[case])
    sae = SAE.from_config(cfg, seed=4)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.3)
    sae.activation.sparse_max_density = 1.0
    dense = copy.deepcopy(sae)
    dense.sparse = False
    x = torch.randn(16, 6, dtype=torch.float64, device=device)
    h = sae.pre_acts(x).detach()
    support = sae.activation.select(h)
    assert support is not None and 0 < len(support) < h.numel()
    out, ref = sae(x, sparsity_scale=0.7), dense(x, sparsity_scale=0.7)
    torch.testing.assert_close(out.codes, ref.codes)
    for a, b in zip(out.losses, ref.losses):
        torch.testing.assert_close(a, b)
    out.losses.total.backward()
    ref.losses.total.backward()
    ref_params = dict(dense.named_parameters())
    for name, p in sae.named_parameters():
        assert (p.grad is None) == (ref_params[name].grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(p.grad, ref_params[name].grad, msg=name)
    if "jumprelu" in case:
        assert ref_params[[n for n in ref_params if "log_threshold" in n][0]].grad.abs().sum() > 0


def test_threshold_family_dense_above_density_limit() -> None:
    sae = SAE.from_config(SAEConfig(d_in=6, d_sae=400, family="relu"), seed=0)
    limit = sae.activation.sparse_max_density
    h = -torch.ones(4, 400)
    h[:, : int(limit * 400) + 1] = 1
    assert sae.activation.select(h) is None  # just above the limit: dense
    h[:, int(limit * 400) :] = -1
    support = sae.activation.select(h)  # at most the limit: sparse, exactly the positive entries
    assert support is not None and torch.equal(support.to_dense(torch.ones(len(support))) > 0, h > 0)


def test_support_index_caches_equal_their_definitions() -> None:
    """The index tensors a support keeps (flat, row offsets, CSR row pointer, transposed COO indices) equal their
    definitions, for a per-row selection (offsets known without a count) and a flat one (uneven rows)."""
    g = torch.Generator().manual_seed(5)
    idx = torch.topk(torch.randn(7, 11, generator=g), 3, dim=-1, sorted=False).indices
    mask = torch.rand(7, 11, generator=g) < 0.3
    mask[2] = False  # an empty row
    for support in (Support.from_row_indices(idx, 11),
                    Support.from_flat(mask.reshape(-1).nonzero().squeeze(1), 7, 11),
                    Support.from_row_indices(idx[:, :0], 11)):
        counts = torch.bincount(support.rows, minlength=7)
        assert torch.equal(support.row_offsets(), torch.cumsum(counts, 0) - counts)
        assert support.row_offsets().dtype == torch.int64 and support.row_offsets() is support.row_offsets()
        assert torch.equal(support.flat, support.rows * 11 + support.latents)
        assert torch.equal(support.crow_indices(), torch.cat([support.row_offsets(), torch.tensor([len(support)])]))
        assert torch.equal(support.transposed_indices(), torch.stack([support.latents, support.rows]))


def test_sparse_backward_products_equal_the_library_calls_bit_for_bit() -> None:
    """The COO product (one zero fill, addmm with beta = 0) and the sampled product (out= the pattern) are the same
    CPU kernels as torch.sparse.mm and a plain sampled_addmm: equal bit for bit, not only to rounding."""
    import warnings

    from rsae.core.sparse import _sampled_products, _transposed_product

    g = torch.Generator().manual_seed(6)
    idx = torch.topk(torch.randn(64, 50, generator=g), 5, dim=-1, sorted=False).indices
    support = Support.from_row_indices(idx, 50)
    weights, dense = torch.randn(len(support), generator=g), torch.randn(64, 9, generator=g)
    z_t = torch.sparse_coo_tensor(torch.stack([support.latents, support.rows]), weights, (50, 64),
                                  check_invariants=True)
    assert torch.equal(_transposed_product(support, weights, dense), torch.sparse.mm(z_t, dense))
    table = torch.randn(50, 9, generator=g)
    crow = torch.cat([support.row_offsets(), torch.tensor([len(support)])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pattern = torch.sparse_csr_tensor(crow, support.latents, torch.zeros(len(support)), size=(64, 50))
    reference = torch.sparse.sampled_addmm(pattern, dense, table.T, beta=0.0).values()
    assert torch.equal(_sampled_products(dense, table, support), reference)
    torch.testing.assert_close(reference, (dense[support.rows] * table[support.latents]).sum(-1))


def test_sparse_products_of_an_empty_support_are_zero(monkeypatch) -> None:
    """No entries at all (e.g. ReLU codes of constant data: every latent off): the COO product is exact zeros, not
    the uninitialised buffer the beta = 0 kernel leaves untouched when there is nothing to add (the cause of a
    flaky 'training diverged' on constant data). Uninitialised memory is made NaN here, so garbage shows."""
    from rsae.core.sparse import _transposed_product

    new_empty = torch.Tensor.new_empty
    monkeypatch.setattr(torch.Tensor, "new_empty",
                        lambda self, *size, **kw: new_empty(self, *size, **kw).fill_(float("nan")))
    support = Support.from_row_indices(torch.zeros(64, 0, dtype=torch.long), 50)
    assert len(support) == 0
    assert torch.equal(_transposed_product(support, torch.zeros(0), torch.randn(64, 9)), torch.zeros(50, 9))
    one = Support.from_row_indices(torch.zeros(64, 1, dtype=torch.long), 50)  # a non-empty one is still exact
    dense = torch.randn(64, 9)
    expected = torch.zeros(50, 9)
    expected[0] = dense.sum(0)
    torch.testing.assert_close(_transposed_product(one, torch.ones(64), dense), expected)
