"""SAEOutput.codes built lazily from the sparse support; the Trainer's counters and L0 taken from the support."""

from __future__ import annotations

import pytest
import torch

from rsae.core.config import TrainConfig
from rsae.core.sae import SAE, SAEOutput
from rsae.core.sparse import Support
from rsae.core.trainer import Trainer
from tests.rsae.conftest import make_config

SPARSE = ["topk", "batchtopk", "rational-topk", "rational-batchtopk"]


def _data(n: int = 2048, d: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    features = torch.randn(12, d, generator=g)
    codes = torch.rand(n, 12, generator=g) * (torch.rand(n, 12, generator=g) < 0.2)
    return codes @ features + 0.5


def _negative_heavy(sae: SAE) -> None:
    """Shift b_enc so that most pre-activations are negative: many top-k entries then have the value 0 (selected
    but not firing), the case where 'in the support' and 'non-zero code' differ."""
    with torch.no_grad():
        sae.b_enc.fill_(-2.0)


@pytest.mark.parametrize("name", SPARSE)
def test_lazy_codes_equal_the_eager_dense_codes(name: str) -> None:
    sae = SAE.from_config(make_config(name, d_sae=24), seed=0)
    _negative_heavy(sae)
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(1))
    out = sae(x)
    assert out.support is not None and out._codes is None  # nothing dense built by the forward pass
    eager = out.support.to_dense(out.values)
    assert 0 < int((out.values == 0).sum()) < len(out.support)  # some selected entries are exact zeros
    fired, l0 = out.fired_latents(), out.l0()
    assert out._codes is None  # neither needs the dense codes
    codes = out.codes
    assert out.codes is codes  # built once
    assert torch.equal(codes, eager) and codes.shape == (40, 24)
    assert codes.requires_grad and codes.grad_fn is not None  # the graph through the values, as before
    assert torch.equal(fired, codes.any(0))
    assert torch.equal(l0, (codes != 0).sum(-1).float().mean()) and l0.dtype == torch.float32
    # the graph of the lazily built codes reaches the encoder
    codes.sum().backward()
    assert sae.W_enc.grad is not None and bool(sae.W_enc.grad.abs().sum() > 0)


def test_lazy_codes_keep_the_forward_pass_grad_mode() -> None:
    sae = SAE.from_config(make_config("topk", d_sae=24), seed=0)
    x = torch.randn(8, 6)
    with torch.no_grad():
        out = sae(x)
    assert not out.codes.requires_grad  # read with grad enabled, built as under the forward's no_grad
    out = sae(x)
    with torch.no_grad():
        codes = out.codes
    assert codes.requires_grad  # read under no_grad, built as under the forward's grad mode
    with torch.inference_mode():
        out = sae(x)
    assert out.codes.is_inference()


def test_dense_path_output_unchanged_and_tuple_behaviour() -> None:
    sae = SAE.from_config(make_config("relu", d_sae=24), seed=0)  # ~50 % dense: no support
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(2))
    out = sae(x)
    assert out.support is None and out.values is None
    assert torch.equal(out.fired_latents(), out.codes.any(0))
    assert torch.equal(out.l0(), (out.codes != 0).sum(-1).float().mean())
    topk = SAE.from_config(make_config("topk", d_sae=24), seed=0)(x)
    for o in (out, topk):
        x_hat, codes, pre_acts, losses = o  # unpacks as the 4-tuple it was
        assert len(o) == 4 and o._fields == ("x_hat", "codes", "pre_acts", "losses")
        assert o[0] is x_hat is o.x_hat and o[1] is codes is o.codes and o[-1] is losses and o[2] is pre_acts
        assert o[1:3] == (codes, pre_acts)
        assert list(o._asdict()) == list(o._fields)
        replaced = o._replace(x_hat=x_hat * 2)
        assert torch.equal(replaced.codes, codes) and torch.equal(replaced.x_hat, x_hat * 2)
        assert o._replace(codes=codes + 1).codes is not codes
        assert "SAEOutput(" in repr(o)
    with pytest.raises(ValueError, match="no field"):
        out._replace(z=1)
    with pytest.raises(ValueError, match="support and values"):
        SAEOutput(x_hat, None, pre_acts, losses)


def _old_counters(monkeypatch) -> None:
    """The Trainer as before the change: fired latents and L0 from the dense codes."""
    monkeypatch.setattr(SAEOutput, "fired_latents", lambda self: self.codes.any(0))
    monkeypatch.setattr(SAEOutput, "l0", lambda self: (self.codes != 0).sum(-1).float().mean())


def _train(name: str) -> tuple[Trainer, list[dict[str, float]]]:
    sae = SAE.from_config(make_config(name, d_sae=48), seed=0)
    _negative_heavy(sae)
    cfg = TrainConfig(steps=16, batch_size=64, warmup_steps=2, lr=3e-3, log_every=1, dead_window_tokens=192,
                      init_sample_tokens=256, chunk_tokens=512, l0_target=0.4, l0_target_rate=0.5)
    trainer = Trainer(sae, cfg, _data(), progress=False)
    return trainer, trainer.train().history


@pytest.mark.parametrize("name", SPARSE)
def test_training_is_bit_identical_to_the_dense_codes_trainer(name: str, monkeypatch) -> None:
    """A few steps with fired latents and L0 from the support (and the dense codes never built) give exactly the
    weights, dead-latent counters, L0 multiplier and logged L0 of the Trainer that read them off the dense codes."""
    with monkeypatch.context() as patch:
        _old_counters(patch)
        before, history_before = _train(name)
    with monkeypatch.context() as patch:
        def refuse(self, values):
            raise AssertionError("the Trainer built the dense code matrix")

        patch.setattr(Support, "to_dense", refuse)
        after, history_after = _train(name)
    for (key, a), b in zip(before.sae.state_dict().items(), after.sae.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    assert torch.equal(before.tokens_since_fired, after.tokens_since_fired)
    assert torch.equal(before.sparsity_multiplier, after.sparsity_multiplier)
    assert history_before == history_after
    dead = after.tokens_since_fired >= 192
    assert bool(dead.any()) and not bool(dead.all())  # the counters were exercised (AuxK ran on dead latents)
    assert any(record["auxk"] > 0 for record in history_after)
    assert float(after.sparsity_multiplier) > 1.0  # the L0 (above the target 0.4) drove the multiplier
    assert {record["l0"] for record in history_after} != {3.0}  # selected zeros were not counted as firing
