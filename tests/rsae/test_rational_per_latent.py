"""Per-latent rational coefficients: every latent j has its own (a_j, b_j, b_0,j) (rsae.core.rational, issue 8 §1).

References: a plain-torch evaluation of the same formula (powers of t, autograd through |·|), the shared path
with the same rational in every row, and the shared path on one latent at a time.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rsae.core.config import SAEConfig
from rsae.core.io import load_sae, save_sae
from rsae.core.rational import (
    RationalActivation,
    float32_error_bound,
    kernel_settings,
    rational_activation,
    safe_pade,
)
from rsae.core.sae import SAE
from rsae.errors import ConfigError, SAEFileError

F64 = torch.float64
TYPES = [(3, 2), (2, 5), (5, 2), (0, 3), (4, 0), (9, 8)]
RELU32_A = [0.021844506346038181, 0.5, 1.5957439419765594, 1.1914878839531187]
RELU32_B = [0.0, 2.3829757679062375]


def per_latent_coefficients(m: int, n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random a [d, m+1], b [d, n], b0 [d] in float64: a different rational in every latent."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(d, m + 1, generator=gen, dtype=F64), torch.randn(d, n, generator=gen, dtype=F64),
            0.5 * torch.randn(d, generator=gen, dtype=F64))


def plain(h: torch.Tensor, a: torch.Tensor, b: torch.Tensor, b0: torch.Tensor, log_c_in: torch.Tensor,
          log_c_out: torch.Tensor) -> torch.Tensor:
    """φ_j(h) = C_out,j · P_j(t) / (1 + |b_0,j + Σ_k b_jk t^k|), t = h / C_in,j, with powers of t (no branches)."""
    t = h * torch.exp(-log_c_in)
    p = sum(a[:, i] * t**i for i in range(a.shape[1]))
    q = sum((b[:, k] * t ** (k + 1) for k in range(b.shape[1])), b0 + torch.zeros_like(t))
    return torch.exp(log_c_out) * p / (1 + q.abs())


def column_inputs(b: torch.Tensor, b0: torch.Tensor, log_c_in: torch.Tensor, rows: int, seed: int) -> torch.Tensor:
    """h [rows, d]: per column, t = h / C_in,j on both sides of |t| = 1 and away from that latent's kinks
    (|B_j(t)| > 0.05, so finite differences do not straddle |·|)."""
    gen = torch.Generator().manual_seed(seed)
    grid = torch.cat([torch.linspace(-4, 4, 321, dtype=F64), torch.tensor([9.0, -13.0, 30.0, -70.0], dtype=F64)])
    grid = grid[(grid.abs() - 1).abs() > 1e-3]
    cols = []
    for j in range(b.shape[0]):
        q = sum((b[j, k] * grid ** (k + 1) for k in range(b.shape[1])), b0[j] + torch.zeros_like(grid))
        ok = grid[q.abs() > 0.05]
        inner, outer = ok[ok.abs() <= 1], ok[ok.abs() > 1]
        assert inner.numel() >= rows // 2 and outer.numel() >= rows - rows // 2, "too few points off the kinks"
        pick = torch.cat([inner[torch.randperm(inner.numel(), generator=gen)[: rows // 2]],
                          outer[torch.randperm(outer.numel(), generator=gen)[: rows - rows // 2]]])
        cols.append(pick)
    return torch.stack(cols, 1) * torch.exp(log_c_in)


@pytest.mark.parametrize("per_latent_scales", [False, True], ids=["shared_scales", "latent_scales"])
@pytest.mark.parametrize("mn", [(3, 2), (2, 5), (5, 2), (0, 3), (4, 0)], ids=str)
def test_gradcheck_float64_per_latent_coefficients(mn: tuple[int, int], per_latent_scales: bool) -> None:
    m, n = mn
    d = 3
    a, b, b0 = per_latent_coefficients(m, n, d, seed=7 * m + n)
    gen = torch.Generator().manual_seed(1)
    shape = (d,) if per_latent_scales else ()
    lci, lco = (0.3 * torch.randn(shape, generator=gen, dtype=F64) for _ in range(2))
    h = column_inputs(b, b0, lci, rows=6, seed=2)
    args = tuple(x.clone().requires_grad_() for x in (h, a, b, lci, lco, b0))

    def f(h, a, b, lci, lco, b0):
        return rational_activation(h, a, b, lci, lco, b0)

    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("mn", TYPES, ids=str)
def test_per_latent_matches_the_plain_formula_values_and_gradients(mn: tuple[int, int]) -> None:
    """Forward and every gradient against the plain formula, both branches (|t| ≤ 1 and |t| > 1), float64."""
    m, n = mn
    d = 4
    a, b, b0 = per_latent_coefficients(m, n, d, seed=100 + m + n)
    lci = torch.tensor([0.0, 0.4, -0.3, 1.0], dtype=F64)
    lco = torch.tensor([0.2, -0.1, 0.0, 0.5], dtype=F64)
    h = column_inputs(b, b0, lci, rows=8, seed=3)
    t = h * torch.exp(-lci)
    assert bool((t.abs() <= 1).any()) and bool((t.abs() > 1).any())
    g = torch.randn(h.shape, generator=torch.Generator().manual_seed(4), dtype=F64)
    ours = [x.clone().requires_grad_() for x in (h, a, b, lci, lco, b0)]
    ref = [x.clone().requires_grad_() for x in (h, a, b, lci, lco, b0)]
    y = rational_activation(ours[0], ours[1], ours[2], ours[3], ours[4], ours[5])
    y_ref = plain(*ref[:3], ref[5], ref[3], ref[4])
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    (y * g).sum().backward()
    (y_ref * g).sum().backward()
    for name, mine, theirs in zip(("h", "a", "b", "log_c_in", "log_c_out", "b0"), ours, ref, strict=True):
        expected = torch.zeros_like(theirs) if theirs.grad is None else theirs.grad  # b [d, 0] when n = 0
        assert mine.grad.shape == theirs.shape, name
        torch.testing.assert_close(mine.grad, expected, rtol=1e-8, atol=1e-10, msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=str)
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_equal_rows_are_bit_identical_to_the_shared_path(dtype: torch.dtype, compiled: bool) -> None:
    """Every row equal to the shared rational: the outputs and the input gradient are bit-identical (0 ulp; the
    Horner recurrence is the same arithmetic with a broadcast coefficient), and the per-latent coefficient
    gradients sum over latents to the shared ones (to rounding: the summation order differs)."""
    d = 8
    a = torch.tensor(RELU32_A, dtype=F64)
    b = torch.tensor(RELU32_B, dtype=F64)
    b0 = torch.tensor(0.1, dtype=F64)
    gen = torch.Generator().manual_seed(5)
    h = (torch.randn(64, d, generator=gen) * torch.logspace(-2, 3, d)).to(dtype)  # both branches
    lci = (0.2 * torch.randn(d, generator=gen)).to(dtype)
    lco = (0.2 * torch.randn(d, generator=gen)).to(dtype)
    g = torch.randn(h.shape, generator=gen).to(dtype)
    settings = {"min_numel": 0} if compiled else {"compile": False}
    with kernel_settings(**settings):
        shared = [x.clone().requires_grad_() for x in (h, a, b, b0)]
        y_shared = rational_activation(shared[0], shared[1], shared[2], lci, lco, shared[3])
        (y_shared * g).sum().backward()
        rows = [x.clone().requires_grad_() for x in (h, a.expand(d, -1), b.expand(d, -1), b0.expand(d))]
        y_rows = rational_activation(rows[0], rows[1], rows[2], lci, lco, rows[3])
        (y_rows * g).sum().backward()
    assert torch.equal(y_shared, y_rows)
    assert torch.equal(shared[0].grad, rows[0].grad)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for mine, theirs in zip(rows[1:], shared[1:], strict=True):
        torch.testing.assert_close(mine.grad.sum(0), theirs.grad, rtol=tol, atol=tol)


def test_each_latent_uses_its_own_row() -> None:
    """Column j of the per-latent call equals the shared path with row j's rational, for every j."""
    d = 5
    a, b, b0 = per_latent_coefficients(4, 3, d, seed=11)
    gen = torch.Generator().manual_seed(12)
    h = torch.randn(32, d, generator=gen) * 3
    y = rational_activation(h, a, b, torch.zeros(()), torch.zeros(()), b0)
    for j in range(d):
        col = rational_activation(h[:, j:j + 1], a[j], b[j], torch.zeros(()), torch.zeros(()), b0[j])
        assert torch.equal(y[:, j:j + 1], col), j
    # safe_pade broadcasts the rows over the last dimension too
    assert torch.equal(safe_pade(h, a, b, b0), y)


def test_finite_over_the_float32_range_per_latent() -> None:
    d = 6
    a, b, b0 = per_latent_coefficients(9, 8, d, seed=13)
    h = torch.tensor([0.0, 1e-30, -1e-30, 3e38, -3e38, 1e20, -1e20, 7.0], dtype=torch.float32)
    h = h[:, None].expand(-1, d).clone().requires_grad_()
    y = rational_activation(h, a, b, torch.zeros(d), torch.zeros(d), b0)
    y.sum().backward()
    assert bool(torch.isfinite(y).all()) and bool(torch.isfinite(h.grad).all())


def test_precision_follows_the_worst_latent() -> None:
    """float32_error_bound takes the worst latent, and the kernel's automatic precision follows it: one
    ill-conditioned latent sends the whole call to float64."""
    a = torch.tensor([RELU32_A, RELU32_A], dtype=F64)
    b = torch.tensor([RELU32_B, RELU32_B], dtype=F64)
    good = float32_error_bound(a, b, [0.0, 0.0])
    assert good == pytest.approx(float32_error_bound(RELU32_A, RELU32_B))
    bad_a = a.clone()
    bad_a[1] *= 1e4
    worst = float32_error_bound(bad_a, b, [0.0, 0.0])
    assert worst == pytest.approx(float32_error_bound(bad_a[1], RELU32_B))
    assert worst > 1e-5 > good
    # the computed dtype shows in the result: float64 Horner agrees with a float64 evaluation to ~1e-16
    h = torch.linspace(-0.9, 0.9, 101, dtype=torch.float32)[:, None].expand(-1, 2).contiguous()
    exact = plain(h.double(), bad_a, b, torch.zeros(2, dtype=F64), torch.zeros((), dtype=F64),
                  torch.zeros((), dtype=F64))
    y = rational_activation(h, bad_a, b, torch.zeros(()), torch.zeros(()))
    assert float((y.double() - exact).abs().max() / exact.abs().max()) <= 2**-24  # the final cast only


def test_shape_errors() -> None:
    a, b, b0 = per_latent_coefficients(3, 2, 4, seed=0)
    zero = torch.zeros(())
    with pytest.raises(ConfigError, match="last dimension is 5"):
        rational_activation(torch.randn(2, 5), a, b, zero, zero, b0)
    with pytest.raises(ConfigError, match=r"b must be \[4, n\]"):
        rational_activation(torch.randn(2, 4), a, b[0], zero, zero, b0)
    with pytest.raises(ConfigError, match=r"b0 must have shape \[4\]"):
        rational_activation(torch.randn(2, 4), a, b, zero, zero, b0[0])
    with pytest.raises(ConfigError, match="b0 must be a 0-d tensor when a is shared"):
        rational_activation(torch.randn(2, 4), a[0], b[0], zero, zero, b0)


# ---------------------------------------------------------------------------------------------- the module


def test_module_per_latent_coefficients() -> None:
    act = RationalActivation(RELU32_A, RELU32_B, d_sae=3, per_latent_coefficients=True, b0=0.25)
    assert act.a.shape == (3, 4) and act.b.shape == (3, 2) and act.b0.shape == (3,)
    assert act.a.dtype == F64 and act.type == (3, 2)
    assert "per_latent_coefficients=True" in repr(act)
    coef = act.coefficients()
    assert coef.a.shape == (3, 4) and np.array_equal(coef.b0, [0.25] * 3)
    shared = RationalActivation(RELU32_A, RELU32_B, d_sae=3, b0=0.25)
    h = torch.randn(10, 3) * 4
    assert torch.equal(act(h), shared(h))
    # each row trains separately
    loss = (act(h) * torch.tensor([1.0, 0.0, 0.0])).sum()
    loss.backward()
    assert bool(act.a.grad[0].abs().sum() > 0) and bool((act.a.grad[1:] == 0).all())
    # explicit rows; the float cast keeps them float64
    rows = np.arange(12, dtype=np.float64).reshape(3, 4) / 10
    act2 = RationalActivation(rows, np.zeros((3, 2)), d_sae=3, per_latent_coefficients=True,
                              b0=[0.0, 0.1, 0.2]).float()
    assert act2.a.dtype == F64 and torch.equal(act2.a, torch.as_tensor(rows))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"per_latent_coefficients": True}, "needs d_sae"),
        ({"per_latent_coefficients": True, "d_sae": 2, "a": np.zeros((3, 4))}, "must have 2 rows"),
        ({"d_sae": 2, "a": np.zeros((2, 4))}, "per_latent_coefficients=True"),
        ({"per_latent_coefficients": True, "d_sae": 2, "b0": [0.0, 1.0, 2.0]}, "must have 2 rows"),
    ],
)
def test_module_rejects_bad_per_latent_configuration(kwargs: dict, match: str) -> None:
    kwargs = {"a": RELU32_A, "b": RELU32_B, **kwargs}
    with pytest.raises(ConfigError, match=match):
        RationalActivation(**kwargs)


# --------------------------------------------------------------------------------------- SAE, files, sparse


def _sae(gate: str = "relu", **extra) -> SAE:
    cfg = SAEConfig(d_in=6, d_sae=12, family="rational", rational_gate=gate, rational_a=tuple(RELU32_A),
                    rational_b=tuple(RELU32_B), rational_per_latent_coefficients=True,
                    rational_per_latent_scales=True, k=3 if gate == "topk" else None, **extra)
    sae = SAE.from_config(cfg, seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a different rational in every latent
        phi = sae.activation.phi
        phi.a.add_(0.1 * torch.randn(phi.a.shape, generator=gen, dtype=F64))
        phi.b.add_(0.1 * torch.randn(phi.b.shape, generator=gen, dtype=F64))
        phi.b0.add_(0.1 * torch.randn(phi.b0.shape, generator=gen, dtype=F64))
        phi.log_c_in.add_(0.1 * torch.randn(phi.log_c_in.shape, generator=gen))
        phi.log_c_out.add_(0.1 * torch.randn(phi.log_c_out.shape, generator=gen))
    return sae


def test_sae_file_round_trip_is_exact(tmp_path) -> None:
    sae = _sae()
    folder = save_sae(sae, tmp_path / "sae")
    loaded = load_sae(folder)
    assert loaded.cfg == sae.cfg
    for name in ("a", "b", "b0"):  # stored in float64 as they are: exact
        mine, theirs = getattr(loaded.activation.phi, name), getattr(sae.activation.phi, name)
        assert mine.shape == theirs.shape and torch.equal(mine, theirs), name
    for name, value in sae.state_dict().items():  # scales: files hold C = exp(log C), exact only to rounding
        torch.testing.assert_close(loaded.state_dict()[name], value, rtol=0, atol=1e-6)
    x = torch.randn(20, 6, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(loaded.encode(x), sae.eval().encode(x), rtol=1e-6, atol=1e-6)


def test_sae_file_with_shared_tensors_is_refused_for_per_latent_config(tmp_path) -> None:
    sae = _sae()
    folder = save_sae(sae, tmp_path / "sae")
    shared = SAE(sae.cfg.replace(rational_per_latent_coefficients=False))
    save_sae(shared, tmp_path / "shared")
    (folder / "sae_weights.safetensors").write_bytes((tmp_path / "shared" / "sae_weights.safetensors").read_bytes())
    with pytest.raises(SAEFileError, match=r"'rational_a' \[12, 4\]"):
        load_sae(folder)


@pytest.mark.parametrize("gate", ["relu", "topk"])
def test_sparse_path_gathers_per_latent_coefficients(gate: str) -> None:
    """The sparse path gathers each kept entry's rational; it agrees with the dense path in values and in
    the coefficient gradients."""
    sae = _sae(gate)
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(3))
    grads = {}
    for sparse in (True, False):
        sae.zero_grad()
        sae.sparse = sparse
        if gate == "relu":
            sae.activation.sparse_max_density = 1.0  # always the sparse path when sparse
        recon = sae(x).x_hat
        recon.pow(2).sum().backward()
        phi = sae.activation.phi
        grads[sparse] = (recon.detach().clone(), phi.a.grad.clone(), phi.b.grad.clone(), phi.b0.grad.clone())
    for mine, theirs in zip(grads[True], grads[False], strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
    assert bool(grads[True][1].abs().sum(1).gt(0).sum() > 1)  # several latents got their own gradient


def test_saelens_plugin_round_trip(tmp_path) -> None:
    pytest.importorskip("sae_lens")
    from sae_lens import SAE as SAELensSAE

    import rsae.saelens  # noqa: F401 - registers the architecture

    sae = _sae()
    folder = save_sae(sae, tmp_path / "sae")
    theirs = SAELensSAE.load_from_disk(str(folder))
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(theirs.encode(x), sae.eval().encode(x), rtol=0, atol=1e-6)
    theirs.save_model(str(tmp_path / "back"))
    again = load_sae(tmp_path / "back")
    # SAELens' disk loader casts every tensor to the model's dtype (float32 here) before the plug-in sees it,
    # shared coefficients alike: the per-latent rows come back with their shape, rounded to float32
    for name in ("a", "b", "b0"):
        ours = getattr(sae.activation.phi, name)
        assert torch.equal(getattr(again.activation.phi, name), ours.float().double()), name
