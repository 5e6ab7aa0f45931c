"""The trainer: schedule, geometric median, decoder constraint, dead tracking, exact resume."""

from __future__ import annotations

import json

import pytest
import torch

from rsae.core.config import TrainConfig
from rsae.core.sae import SAE
from rsae.core.trainer import Trainer, geometric_median, learning_rate
from rsae.errors import ConfigError, DataError
from tests.rsae.conftest import make_config


def _data(n: int = 1500, d: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    features = torch.randn(12, d, generator=g)
    codes = torch.rand(n, 12, generator=g) * (torch.rand(n, 12, generator=g) < 0.2)
    return codes @ features + 0.5


def _cfg(**changes) -> TrainConfig:
    base = dict(
        steps=24,
        batch_size=128,
        warmup_steps=3,
        lr=3e-3,
        log_every=4,
        dead_window_tokens=300,
        init_sample_tokens=256,
        chunk_tokens=256,
        sparsity_warmup_steps=5,
    )
    base.update(changes)
    return TrainConfig(**base)


def test_learning_rate_schedule() -> None:
    cfg = TrainConfig(steps=100, lr=1.0, warmup_steps=10, decay_fraction=0.2)
    lrs = [learning_rate(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[50] == 1.0 and lrs[80] == pytest.approx(1.0) and lrs[90] == pytest.approx(0.5)
    assert lrs[99] == pytest.approx(0.05)


def test_geometric_median_is_robust_and_optimal() -> None:
    points = torch.cat(
        [torch.randn(200, 3, dtype=torch.float64), torch.full((20, 3), 1e3, dtype=torch.float64)]
    )
    median = geometric_median(points)
    assert median.norm() < 0.5  # the mean is pulled to ~90 by the outliers

    def cost(y: torch.Tensor) -> float:
        return float((points - y).norm(dim=1).sum())

    for _ in range(20):
        assert cost(median) <= cost(median + 1e-3 * torch.randn(3, dtype=torch.float64)) + 1e-9


@pytest.mark.parametrize(
    "name", ["relu", "jumprelu", "topk", "batchtopk", "rational-relu", "rational-topk", "rational-cutoff"]
)
def test_resume_continues_to_bit_identical_weights(tmp_path, name: str) -> None:
    x = _data()
    cfg = _cfg(steps=24)
    straight = Trainer(SAE.from_config(make_config(name), seed=0), cfg, x, progress=False).train()
    first = Trainer(
        SAE.from_config(make_config(name), seed=0), cfg, x, progress=False, checkpoint_dir=tmp_path
    )
    first.train(until=13)  # 1500 tokens / 128 = 11 batches per epoch, so the cut lies in epoch 2
    latest = json.loads((tmp_path / "latest.json").read_text())
    assert latest["step"] == 13
    resumed = Trainer.resume(tmp_path, x, progress=False).train()
    for (key, a), b in zip(straight.sae.state_dict().items(), resumed.sae.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    assert straight.history == resumed.history


def test_training_reduces_loss_and_keeps_unit_decoder_rows() -> None:
    x = _data()
    sae = SAE.from_config(make_config("topk"), seed=0)
    result = Trainer(sae, _cfg(steps=60), x, progress=False).train()
    assert result.history[-1]["mse"] < 0.5 * result.history[0]["mse"]
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(12))
    assert 0 <= result.final["dead_fraction"] <= 1 and result.final["l0"] <= 3


def test_parallel_gradient_component_is_removed() -> None:
    sae = SAE.from_config(make_config("relu"), seed=0)
    sae(torch.randn(10, 6)).losses.total.backward()
    sae.remove_parallel_decoder_grad_()
    dots = (sae.W_dec.grad * sae.W_dec).sum(1)
    torch.testing.assert_close(dots, torch.zeros(12), atol=1e-6, rtol=0)


def test_dead_latents_tracked_and_auxk_used() -> None:
    x = _data()
    sae = SAE.from_config(make_config("topk", d_sae=40), seed=0)
    trainer = Trainer(sae, _cfg(steps=12, dead_window_tokens=128), x, progress=False)
    result = trainer.train()
    dead = trainer.tokens_since_fired >= 128
    assert dead.any()
    assert any(record["auxk"] > 0 for record in result.history)


def test_checkpoints_are_pruned_and_complete(tmp_path) -> None:
    x = _data()
    trainer = Trainer(
        SAE.from_config(make_config("relu"), seed=0),
        _cfg(steps=20, checkpoint_every=5, keep_checkpoints=2),
        x,
        progress=False,
        checkpoint_dir=tmp_path,
    )
    trainer.train()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["latest.json", "step_0000015", "step_0000020"]
    assert sorted(p.name for p in (tmp_path / "step_0000020").iterdir()) == [
        "model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
    ]


def test_trainer_validates_its_inputs(tmp_path) -> None:
    sae = SAE.from_config(make_config("relu"), seed=0)
    with pytest.raises(DataError, match="d_in"):
        Trainer(sae, _cfg(), torch.randn(500, 5))
    with pytest.raises(DataError, match="fewer than one batch"):
        Trainer(sae, _cfg(), torch.randn(100, 6))
    with pytest.raises(ConfigError, match="GPU"):
        Trainer(sae, _cfg(autocast_bf16=True), torch.randn(500, 6))
    trainer = Trainer(sae, _cfg(steps=4), _data(), progress=False, checkpoint_dir=tmp_path)
    trainer.train()
    with pytest.raises(DataError, match="checkpoint was trained on"):
        Trainer.resume(tmp_path, torch.randn(700, 6))


def test_coefficient_lr_scale_sets_the_rational_coefficients_learning_rate():
    """coefficient_lr_scale = 0 freezes (a, b, b_0) while scales and weights train; other values scale their lr."""
    from rsae.core.config import SAEConfig

    x = torch.randn(512, 8, generator=torch.Generator().manual_seed(0))
    cfg = SAEConfig(d_in=8, d_sae=16, family="rational", rational_gate="jumprelu")
    moved = {}
    for scale in (0.0, 1.0, 0.25):
        sae = SAE.from_config(cfg, seed=0)
        before = {n: p.detach().clone() for n, p in sae.named_parameters()}
        tc = TrainConfig(steps=5, batch_size=128, lr=1e-2, warmup_steps=0, coefficient_lr_scale=scale)
        trainer = Trainer(sae, tc, x, progress=False)
        trainer.train()
        moved[scale] = {n: float((p.detach() - before[n]).abs().max()) for n, p in sae.named_parameters()}
        lrs = sorted(g["lr"] for g in trainer.optimizer.param_groups)
        assert len(lrs) == (1 if scale == 1.0 else 2)
    for name in ("activation.phi.a", "activation.phi.b", "activation.phi.b0"):
        assert moved[0.0][name] == 0.0
        assert moved[1.0][name] > 0.0 and 0.0 < moved[0.25][name] < moved[1.0][name]
    assert moved[0.0]["W_enc"] > 0 and moved[0.0]["activation.phi.log_c_out"] > 0
    with pytest.raises(ConfigError, match="coefficient_lr_scale"):
        TrainConfig(coefficient_lr_scale=-1.0)


@pytest.mark.parametrize("name", ["topk", "rational-relu"])
def test_train_in_pieces_equals_one_call(name: str) -> None:
    """train(until=...) called repeatedly continues one batch stream (no re-read of the current chunk): the
    weights, history and data position equal a single call's, across epoch boundaries (11 batches per epoch);
    moving the position from outside makes the next call start a fresh stream there."""
    x = _data()
    cfg = _cfg(steps=24)
    straight = Trainer(SAE.from_config(make_config(name), seed=0), cfg, x, progress=False)
    straight.train()
    pieces = Trainer(SAE.from_config(make_config(name), seed=0), cfg, x, progress=False)
    for until in (3, 4, 11, 12, 19, 24):
        pieces.train(until=until)
        assert pieces._stream is not None and pieces._stream_position == (pieces.epoch, pieces.batch_in_epoch)
    for (key, a), b in zip(straight.sae.state_dict().items(), pieces.sae.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    assert straight.history == pieces.history
    assert (straight.epoch, straight.batch_in_epoch) == (pieces.epoch, pieces.batch_in_epoch) == (2, 2)
    stream = pieces._stream
    pieces.batch_in_epoch = 0  # moved from outside: the old stream is dropped
    pieces.cfg = _cfg(steps=25)
    pieces.train(until=25)
    assert pieces._stream is not stream and pieces.batch_in_epoch == 1


def test_non_finite_weights_are_named() -> None:
    """The finite-sum shortcut of the weight check still stops at (and names) a parameter that became NaN or
    inf, and passes finite weights whose float32 sum would overflow."""
    from rsae.errors import TrainingError

    trainer = Trainer(SAE.from_config(make_config("relu"), seed=0), _cfg(), _data(), progress=False)
    with torch.no_grad():
        trainer.sae.W_dec.fill_(3e38)  # finite; its float32 sum overflows to inf, so the exact test decides
    trainer._check_finite_weights()
    with torch.no_grad():
        trainer.sae.W_dec[::2] = -3e38  # overflowing partial sums of both signs (inf - inf = NaN): still finite
    trainer._check_finite_weights()
    for bad in (float("nan"), float("inf"), float("-inf")):
        with torch.no_grad():
            trainer.sae.b_enc[3] = bad
        with pytest.raises(TrainingError, match="b_enc non-finite"):
            trainer._check_finite_weights()
        with torch.no_grad():
            trainer.sae.b_enc[3] = 0.0


@pytest.mark.parametrize("scale", [1e-3, 0.5, 10.0, float("nan"), float("inf")])
def test_clip_skips_only_a_multiplication_by_one(scale: float, monkeypatch) -> None:
    """The Trainer's gradient clipping equals torch's clip_grad_norm_ bit for bit (gradient norms within the
    limit, above it, non-finite), and within the limit it does not touch the gradients."""
    from rsae.core.trainer import _clip_grad_norm_

    g = torch.Generator().manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(40, 7, generator=g)) for _ in range(3)]
    for p in ours:
        p.grad = torch.randn(p.shape, generator=g) * scale
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    for p, q in zip(ours, ref, strict=True):
        q.grad = p.grad.clone()
    total = torch.nn.utils.clip_grad_norm_(ref, 1.0)
    clipped = []
    monkeypatch.setattr(torch.nn.utils, "clip_grads_with_norm_", lambda *a, _f=torch.nn.utils.clip_grads_with_norm_:
                        clipped.append(_f(*a)))
    _clip_grad_norm_(ours, 1.0)
    for p, q in zip(ours, ref, strict=True):
        assert torch.equal(p.grad, q.grad) or bool(p.grad.isnan().all() and q.grad.isnan().all())
    assert bool(clipped) == (not float(total) <= 1.0 - 1e-6)
