"""Each family's forward against a slow reference, the straight-through gradients, and exact sparsity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rsae.core.activations import Activation, Rational, jumprelu_ste, step_ste
from rsae.core.config import SAEConfig
from rsae.core.sae import SAE
from rsae.errors import ConfigError
from tests.rsae.conftest import RELU_A, RELU_B, make_config


def _phi_reference(h: np.ndarray, c_in: float, c_out: float, tails: tuple[float, float] | None = None) -> np.ndarray:
    out = np.empty_like(h)
    for idx, value in np.ndenumerate(h):
        t = value / c_in
        s = min(max(t, -1.0), 1.0) if tails else t
        p = sum(a * s**i for i, a in enumerate(RELU_A))
        q = sum(b * s ** (j + 1) for j, b in enumerate(RELU_B))
        tail = tails[1] * max(t - 1, 0.0) + tails[0] * min(t + 1, 0.0) if tails else 0.0
        out[idx] = c_out * (p / (1 + abs(q)) + tail)
    return out


def _topk_reference(h: np.ndarray, k: int) -> np.ndarray:
    keep = np.zeros_like(h, dtype=bool)
    for row in range(h.shape[0]):
        order = sorted(range(h.shape[1]), key=lambda j: -h[row, j])
        for j in order[:k]:
            keep[row, j] = h[row, j] > 0
    return keep


def _batchtopk_reference(h: np.ndarray, k: int) -> np.ndarray:
    flat = sorted(((h[i, j], i, j) for i in range(h.shape[0]) for j in range(h.shape[1])), reverse=True)
    keep = np.zeros_like(h, dtype=bool)
    for value, i, j in flat[: k * h.shape[0]]:
        keep[i, j] = value > 0
    return keep


def _reference_codes(sae: SAE, h: np.ndarray) -> np.ndarray:
    cfg = sae.cfg
    act = sae.activation
    if cfg.family == "rational":
        c_in = float(act.phi.log_c_in.detach().exp())
        c_out = float(act.phi.log_c_out.detach().exp())
        mag = _phi_reference(h, c_in, c_out, cfg.rational_tails)
    else:
        mag = h.copy()
    gate = cfg.gate
    if gate == "relu":
        keep = h > 0
    elif gate == "jumprelu":
        log_theta = act.log_threshold
        keep = h > log_theta.exp().detach().double().numpy()[None, :]
    elif gate == "topk":
        keep = _topk_reference(h, cfg.k)
    elif gate == "batchtopk":
        keep = _batchtopk_reference(h, cfg.k) if sae.training else h > 0
    else:  # cutoff
        keep = mag > float(act.log_cutoff.detach().exp())
    return np.where(keep, mag, 0.0)


@pytest.mark.parametrize("training", [True, False])
def test_forward_matches_slow_reference(family_name: str, training: bool) -> None:
    sae = SAE.from_config(make_config(family_name, dtype="float64"), seed=1)
    with torch.no_grad():
        sae.b_enc.normal_(0.0, 0.3)
        if sae.cfg.family == "rational":
            sae.activation.phi.log_c_in.fill_(math.log(1.7))
            sae.activation.phi.log_c_out.fill_(math.log(0.8))
        if sae.cfg.gate == "jumprelu":
            thresholds = torch.linspace(0.05, 0.6, sae.cfg.d_sae, dtype=torch.float64)
            log_theta = sae.activation.log_threshold
            log_theta.copy_(thresholds.log())
    sae.train(training)
    x = torch.randn(9, sae.cfg.d_in, dtype=torch.float64)
    with torch.no_grad():
        h = sae.pre_acts(x)
        codes = sae.encode(x)
    expected = _reference_codes(sae, h.numpy())
    np.testing.assert_allclose(codes.numpy(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        sae.decode(codes).detach().numpy(),
        expected @ sae.W_dec.detach().numpy() + sae.b_dec.detach().numpy(),
        rtol=1e-12,
        atol=1e-12,
    )


def test_codes_have_exact_zeros_and_topk_l0(family_name: str) -> None:
    sae = SAE.from_config(make_config(family_name, d_sae=40), seed=0)
    codes = sae.encode(torch.randn(64, sae.cfg.d_in)).detach()
    nonzero = (codes != 0).sum(-1)
    assert (codes == 0).any()
    if sae.cfg.gate == "topk":
        assert int(nonzero.max()) <= sae.cfg.k
    if sae.cfg.gate == "batchtopk":
        assert int(nonzero.sum()) <= sae.cfg.k * 64


def test_jumprelu_ste_gradients_match_rectangle_kernel() -> None:
    h = torch.tensor([[0.48, 0.52, 0.9], [0.1, 0.51, 0.47]], dtype=torch.float64)
    theta = torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64, requires_grad=True)
    upstream = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64)
    eps = 0.1
    (jumprelu_ste(h, theta, eps) * upstream).sum().backward()
    window = ((h - 0.5).abs() < eps / 2).double()
    expected = (upstream * window * (-0.5 / eps)).sum(0)
    torch.testing.assert_close(theta.grad, expected)
    theta.grad = None
    (step_ste(h, theta, eps) * upstream).sum().backward()
    torch.testing.assert_close(theta.grad, (upstream * window * (-1 / eps)).sum(0))


def test_jumprelu_input_gradient_is_heaviside() -> None:
    h = torch.tensor([0.2, 0.7], requires_grad=True)
    jumprelu_ste(h, torch.tensor(0.5), 0.1).sum().backward()
    torch.testing.assert_close(h.grad, torch.tensor([0.0, 1.0]))


def test_shared_cutoff_gradient_sums_over_latents() -> None:
    h = torch.tensor([[0.49, 0.505, 2.0]])
    tau = torch.tensor(0.5, requires_grad=True)
    step_ste(h, tau, 0.1).sum().backward()
    assert tau.grad.shape == ()
    torch.testing.assert_close(tau.grad, torch.tensor(-20.0))


def test_batchtopk_threshold_is_running_min_of_kept() -> None:
    sae = SAE.from_config(make_config("batchtopk", d_sae=10), seed=0)
    sae.train()
    x = torch.randn(8, sae.cfg.d_in)
    with torch.no_grad():
        h = sae.pre_acts(x)
        codes = sae.activation(h)
    kept = h[codes != 0]
    torch.testing.assert_close(sae.activation.threshold, torch.full((10,), float(kept.min())))
    sae.eval()
    with torch.no_grad():
        eval_codes = sae.encode(x)
    assert torch.equal(eval_codes != 0, h > kept.min())


def test_penalties() -> None:
    sae = SAE.from_config(make_config("relu", l1_coefficient=0.5), seed=0)
    x = torch.randn(5, sae.cfg.d_in)
    out = sae(x)
    torch.testing.assert_close(out.losses.sparsity, 0.5 * out.codes.abs().sum(-1).mean())
    jr = SAE.from_config(make_config("jumprelu", l0_coefficient=0.25), seed=0)
    out = jr(x)
    torch.testing.assert_close(out.losses.sparsity, 0.25 * (out.codes != 0).float().sum(-1).mean())
    torch.testing.assert_close(out.losses.mse, (out.x_hat - x).pow(2).sum(-1).mean())


def test_unknown_family_and_missing_k_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="family"):
        SAEConfig(d_in=2, d_sae=4, family="gated")
    with pytest.raises(ConfigError, match="needs an integer k"):
        SAEConfig(d_in=2, d_sae=4, family="rational", rational_gate="topk")
    with pytest.raises(ConfigError, match="1 <= k <= d_sae"):
        SAEConfig(d_in=2, d_sae=4, family="topk", k=5)


class _BandGate(Activation):
    """A gate Rational has never heard of: keep |h| > c (one shared buffer ``band``), penalty λ · mean count."""

    def __init__(self, cut: float) -> None:
        super().__init__()
        self.register_buffer("band", torch.tensor(cut))

    def gated(self, h, magnitude):
        return torch.where(h.abs() > self.band, magnitude(h, None), 0)

    def penalty(self, h, z, W_dec):
        return 0.5 * (h.abs() > self.band).to(h.dtype).sum(-1).mean()

    def file_tensors(self):
        return {"band": self.band.clone()}

    def load_file_tensors(self, tensors):
        self.band.copy_(tensors["band"])


def test_new_gate_plugs_into_rational_without_changes() -> None:
    cfg = make_config("rational-relu", dtype="float64")
    act = Rational(cfg, gate=_BandGate(0.3))
    h = torch.randn(7, cfg.d_sae, dtype=torch.float64, requires_grad=True)
    z = act(h)
    phi = act.phi(h.detach())
    torch.testing.assert_close(z.detach(), torch.where(h.detach().abs() > 0.3, phi, 0))
    assert float(act.penalty(h, z, torch.ones(cfg.d_sae, cfg.d_in))) == pytest.approx(
        0.5 * float((h.abs() > 0.3).double().sum(-1).mean()))
    z.sum().backward()  # φ's coefficients get gradients through the gate
    assert act.phi.a.grad is not None and act.select(h.detach()) is None
    assert "band" in act.file_tensors() and "gate_module.band" in act.state_dict()
    other = Rational(cfg, gate=_BandGate(0.9))
    other.load_file_tensors(act.file_tensors())
    assert float(other.gate_module.band) == pytest.approx(0.3)


def test_rational_gate_state_keys_are_those_of_old_checkpoints() -> None:
    keys = {
        "rational-jumprelu": {"log_threshold"},
        "rational-cutoff": {"log_cutoff"},
        "rational-batchtopk": {"batch.threshold", "batch.threshold_updates"},
    }
    for name, expected in keys.items():
        sae = SAE.from_config(make_config(name), seed=0)
        gate_keys = {k for k in sae.activation.state_dict() if not k.startswith("phi.")}
        assert gate_keys == expected
        again = SAE.from_config(make_config(name), seed=1)
        again.load_state_dict(sae.state_dict())  # strict: the old keys load into the gate module
        for key in expected:
            torch.testing.assert_close(again.activation.state_dict()[key], sae.activation.state_dict()[key])


def _sae_step_min_numels(name: str, gathered_min_numel: int, monkeypatch) -> list[int]:
    """The rational module's ``min_numel`` in force at every kernel decision of one training step (forward, AuxK
    and backward) of a small rational SAE with ``gathered_min_numel``, kernels eager."""
    import rsae.core.rational as rational

    seen: list[int] = []
    real = rational._use_compiled

    def spy(numel: int) -> bool:
        seen.append(rational._settings["min_numel"])
        return real(numel)

    monkeypatch.setattr(rational, "_use_compiled", spy)
    with rational.kernel_settings(compile=False):
        sae = SAE.from_config(make_config(name, d_in=8, d_sae=32), seed=0)
        sae.activation.gathered_min_numel = gathered_min_numel
        dead = torch.zeros(32, dtype=torch.bool)
        dead[:8] = True
        out = sae(torch.randn(16, 8), dead_mask=dead, auxk_coefficient=0.5)
        out.losses.total.backward()
    return seen


@pytest.mark.parametrize("name", ["rational-topk", "rational-batchtopk"])
def test_gathered_entries_take_the_gathered_kernel_setting_forward_and_backward(name: str, monkeypatch) -> None:
    """φ on the support and on the AuxK entries runs with ``min(gathered_min_numel, min_numel)``, and so does its
    backward (which runs after the forward's block has ended); the general setting is restored afterwards."""
    import rsae.core.rational as rational

    general = rational._settings["min_numel"]
    seen = _sae_step_min_numels(name, 5, monkeypatch)
    # forward and backward of the support's values and of the AuxK values (each asks once or more)
    assert len(seen) >= 4 and set(seen) == {5}
    assert rational._settings["min_numel"] == general
    # a larger gathered setting does not raise the general one
    assert set(_sae_step_min_numels(name, general * 4, monkeypatch)) == {general}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rational-topk", "rational-batchtopk"])
def test_fused_gathered_kernels_give_the_eager_step(name: str) -> None:
    """The fused kernels on the gathered entries give the losses and gradients of the eager code (float32
    rounding: rtol 1e-5)."""
    results = []
    x = torch.randn(64, 8)
    dead = torch.zeros(48, dtype=torch.bool)
    dead[:16] = True
    for gathered in (1 << 30, 1):
        sae = SAE.from_config(make_config(name, d_in=8, d_sae=48), seed=0)
        sae.activation.gathered_min_numel = gathered
        out = sae(x, dead_mask=dead, auxk_coefficient=0.5)
        out.losses.total.backward()
        results.append([out.losses.total.detach(), out.losses.auxk.detach(),
                        *(p.grad for p in sae.parameters() if p.grad is not None)])
    for eager, fused in zip(*results, strict=True):
        torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-6 * float(eager.abs().max()))
