"""The two-stage upgrade: RSAE-init copies the teacher, calibration reproduces it, fine-tuning runs."""

from __future__ import annotations

import pytest
import torch

from rsae.core.config import TrainConfig
from rsae.core.sae import SAE
from rsae.core.trainer import Trainer
from rsae.errors import ConfigError
from rsae.experiments.synthetic import SyntheticConfig, SyntheticSource
from rsae.experiments.upgrade import calibrate, rsae_init, upgrade
from tests.rsae.conftest import RELU_A, RELU_B, make_config


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    return SyntheticSource(SyntheticConfig(d_in=8, n_features=24, true_l0=3.0), n_tokens=6000).materialize().data


def _teacher(name: str, tokens: torch.Tensor) -> SAE:
    settings = {"relu": {"l1_coefficient": 0.3}, "jumprelu": {"l0_coefficient": 0.05}, "topk": {}}[name]
    sae = SAE.from_config(make_config(name, d_in=8, d_sae=24, **settings), seed=0)
    cfg = TrainConfig(steps=60, batch_size=256, warmup_steps=5, log_every=20, init_sample_tokens=512)
    return Trainer(sae, cfg, tokens[:5000], progress=False).train().sae.eval()


@pytest.mark.parametrize("name", ["relu", "jumprelu", "topk"])
def test_rsae_init_reproduces_the_teacher(name: str, tokens: torch.Tensor) -> None:
    teacher = _teacher(name, tokens)
    student = rsae_init(teacher, coefficients=(RELU_A, RELU_B))
    assert student.cfg.family == "rational" and student.cfg.gate == teacher.cfg.gate
    for key in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert torch.equal(getattr(student, key), getattr(teacher, key))
    cal = calibrate(student, teacher, tokens[:2000])
    assert cal.loss_after < 1e-3 * cal.loss_before
    student.eval()
    x = tokens[5000:]
    with torch.no_grad():
        t_out, s_out = teacher(x), student(x)
    assert torch.equal(t_out.codes != 0, s_out.codes != 0)
    assert float(s_out.losses.mse) == pytest.approx(float(t_out.losses.mse), rel=0.02)


def test_upgrade_end_to_end_with_control(tokens: torch.Tensor) -> None:
    teacher = _teacher("relu", tokens)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    finetune = TrainConfig(steps=30, batch_size=256, lr=1e-3, warmup_steps=3, log_every=10)
    result = upgrade(
        teacher,
        tokens[:5000],
        tokens[5000:],
        finetune,
        coefficients=(RELU_A, RELU_B),
        calibration_tokens=1000,
    )
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert result.init_metrics["mse"] == pytest.approx(result.teacher_metrics["mse"], rel=0.02)
    assert result.control_metrics is not None
    assert result.calibration.teacher_l0 > 0
    assert not torch.equal(result.student.W_enc, result.student_init.W_enc)


def test_upgrade_rejects_rational_teacher() -> None:
    sae = SAE.from_config(make_config("rational-relu"), seed=0)
    with pytest.raises(ConfigError, match="already a rational"):
        rsae_init(sae, coefficients=(RELU_A, RELU_B))


def test_l0_target_raises_the_penalty_until_l0_drops(tokens: torch.Tensor) -> None:
    finals = {}
    for target in (None, 3.0):
        sae = SAE.from_config(make_config("relu", d_in=8, d_sae=24, l1_coefficient=0.01), seed=0)
        cfg = TrainConfig(
            steps=100,
            batch_size=256,
            lr=1e-2,
            warmup_steps=5,
            log_every=10,
            l0_target=target,
            l0_target_rate=0.05,
            init_sample_tokens=512,
        )
        finals[target] = Trainer(sae, cfg, tokens, progress=False).train().final
    assert finals[None]["sparsity_multiplier"] == 1.0
    assert finals[3.0]["sparsity_multiplier"] > 10
    assert finals[3.0]["l0"] < 0.8 * finals[None]["l0"]


def test_frozen_encoder_keeps_the_teacher_support(tokens: torch.Tensor) -> None:
    teacher = _teacher("relu", tokens)
    finetune = TrainConfig(steps=20, batch_size=256, lr=1e-3, warmup_steps=2, log_every=10)
    result = upgrade(
        teacher,
        tokens[:5000],
        tokens[5000:],
        finetune,
        coefficients=(RELU_A, RELU_B),
        calibration_tokens=1000,
        control=False,
        train_encoder=False,
    )
    student = result.student
    for key in ("W_enc", "b_enc", "b_dec"):
        assert torch.equal(getattr(student, key), getattr(teacher, key))
        assert getattr(student, key).requires_grad
    assert not torch.equal(student.W_dec, teacher.W_dec)
    assert result.student_metrics["l0"] == result.teacher_metrics["l0"]
