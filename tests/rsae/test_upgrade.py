"""The two-stage upgrade: RSAE-init copies the teacher, calibration reproduces it, fine-tuning runs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rsae.core.config import SAEConfig, TrainConfig
from rsae.core.sae import SAE
from rsae.core.trainer import Trainer
from rsae.errors import ConfigError
from rsae.experiments.synthetic import SyntheticConfig, SyntheticSource
from rsae.experiments.upgrade import L0_BUDGET, L0_EPS, calibrate, rsae_init, upgrade
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
    cal = calibrate(student, teacher, tokens[:2000], max_iter=100)
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


# ------------------------------------------------------------------------------------- variants (issue 8)
@pytest.fixture(scope="module")
def jumprelu_teacher(tokens: torch.Tensor) -> SAE:
    return _teacher("jumprelu", tokens)


def _code_error(student: SAE, teacher: SAE, x: torch.Tensor) -> float:
    with torch.no_grad():
        zt, zs = teacher.encode(x), student.encode(x)
    return float((zs - zt).pow(2).sum() / zt.pow(2).sum())


def test_magnitude_student_starts_from_the_gates_own_fit(jumprelu_teacher: SAE, tokens: torch.Tensor) -> None:
    """Default init of a JumpReLU teacher: its (9, 8) minimax fit with b_0, per-latent C_in,j = θ_j / 0.5; after
    calibration on the teacher's support it keeps the teacher's support exactly and its MSE within 2 %."""
    student = rsae_init(jumprelu_teacher)
    cfg = student.cfg
    assert cfg.rational_init_gate == "jumprelu" and cfg.rational_type == (9, 8) and cfg.rational_b0 > 1e4
    assert cfg.rational_per_latent_scales and cfg.rational_gate == "jumprelu"
    cal = calibrate(student, jumprelu_teacher, tokens[:1000], max_iter=20)
    assert cal.support == "teacher" and cal.loss_after < 0.5 * cal.loss_before
    student.eval()
    x = tokens[5000:]
    with torch.no_grad():
        t_out, s_out = jumprelu_teacher(x), student(x)
    assert torch.equal(t_out.codes != 0, s_out.codes != 0)
    assert float(s_out.losses.mse) == pytest.approx(float(t_out.losses.mse), rel=0.05)


def test_paper_student_is_the_gate_and_starts_close_to_the_teacher(jumprelu_teacher: SAE,
                                                                    tokens: torch.Tensor) -> None:
    """The paper's reading: no hard mask (z = φ(h)), per-latent jumps at θ_j, calibrated on all entries. Measured:
    at the design scales the relative code error ‖z − z_T‖² / ‖z_T‖² is ≈ 2e-4 with the primitive's tails (the
    fit's error, mostly in its gap around each jump) and ≈ 0.3 with the bare rational (every pre-activation above
    2θ_j is extrapolated: r(5) = 0.75 for the (9, 8) fit); calibration keeps it there; the codes are dense."""
    x = tokens[5000:]
    theta = jumprelu_teacher.activation.threshold.double()
    errors = {}
    for tails in ("primitive", None):
        student = rsae_init(jumprelu_teacher, variant="paper", tails=tails)
        assert student.cfg.rational_gate == "none" and student.cfg.rational_per_latent_scales
        assert student.cfg.rational_tails == ((0.0, 1.0) if tails else None)
        with torch.no_grad():  # design scales: C_in,j = C_out,j = θ_j / 0.5 puts each latent's jump on the fit's
            student.activation.phi.log_c_in.copy_((theta / 0.5).log())
            student.activation.phi.log_c_out.copy_((theta / 0.5).log())
        errors[tails] = _code_error(student.eval(), jumprelu_teacher, x)
    assert errors["primitive"] < 1e-3 and errors[None] > 0.1
    student = rsae_init(jumprelu_teacher, variant="paper")
    cal = calibrate(student, jumprelu_teacher, tokens[:1000], max_iter=20)
    after = _code_error(student.eval(), jumprelu_teacher, x)
    assert cal.support == "all" and cal.n_entries == 1000 * 24
    assert after < 2e-3
    with torch.no_grad():
        assert float((student.encode(x) == 0).float().mean()) < 0.01


def test_upgrade_paper_variant_report(tokens: torch.Tensor) -> None:
    """variant="paper" end to end on a ReLU teacher: strict-JSON report, L0 three ways, the floor meets the
    teacher's budget on the held-in sample, and the over-budget flags agree with the metrics."""
    teacher = _teacher("relu", tokens)
    finetune = TrainConfig(steps=10, batch_size=256, lr=1e-3, warmup_steps=2, log_every=5)
    result = upgrade(teacher, tokens[:5000], tokens[5000:], finetune, calibration_tokens=500, variant="paper",
                     seed=3, calibration_iters=20)
    report = result.to_dict()
    json.dumps(report, allow_nan=False)
    assert report["variant"] == "paper" and report["seed"] == 3 and report["coefficient_sharing"] == "sae"
    assert report["rational_type"] == [3, 2] and report["l0_eps"] == L0_EPS
    rsae, floored, teacher_m = report["rsae"], report["rsae_floor"], report["teacher"]
    assert rsae["l0"] == 24.0 and rsae["l0_eps"] <= rsae["l0"]  # dense codes; ε-L0 counts only the large ones
    assert report["floor"] > 0 and floored["l0"] < rsae["l0"]
    limit = L0_BUDGET * teacher_m["l0"]
    assert report["flags"]["over_budget"] == (rsae["l0"] > limit)
    assert report["flags"]["floor_over_budget"] == (floored["l0"] > limit)
    assert report["flags"]["control_over_budget"] == (report["control"]["l0"] > limit)
    assert abs(report["rsae_init"]["mse"] / teacher_m["mse"] - 1) < 0.05


def test_threshold_projection_and_floor_meet_the_budget(jumprelu_teacher: SAE, tokens: torch.Tensor) -> None:
    from rsae.experiments.upgrade import _choose_floor, _l0, _project_thresholds

    x = tokens[:1000]
    model = SAE(jumprelu_teacher.cfg)
    model.load_state_dict(jumprelu_teacher.state_dict())
    model.eval()
    teacher_l0 = _l0(jumprelu_teacher, x)
    assert _project_thresholds(model, x, 1.05 * teacher_l0) == 1.0  # within budget: untouched
    with torch.no_grad():
        model.activation.log_threshold.sub_(1.0)  # thresholds / e: L0 overshoots
    assert _l0(model, x) > 1.05 * teacher_l0
    c = _project_thresholds(model, x, 1.05 * teacher_l0)
    assert c is not None and c > 1 and _l0(model, x) <= 1.05 * teacher_l0
    assert _project_thresholds(_teacher("topk", tokens), x, 1.0) is None  # nothing to project for top-k
    paper = rsae_init(jumprelu_teacher, variant="paper").eval()
    tau = _choose_floor(paper, x, 2.5)
    floored = SAE(paper.cfg.replace(rational_floor=tau))
    floored.load_state_dict(paper.state_dict())
    assert _l0(floored.eval(), x) <= 2.5 < _l0(paper, x)


def test_variant_options_are_checked(tokens: torch.Tensor) -> None:
    teacher = _teacher("topk", tokens)
    with pytest.raises(ConfigError, match="variant"):
        rsae_init(teacher, variant="nope")
    with pytest.raises(ConfigError, match="coefficient_sharing"):
        rsae_init(teacher, coefficient_sharing="feature")
    student = rsae_init(teacher, coefficient_sharing="latent")
    assert student.cfg.rational_per_latent_scales and student.cfg.rational_init_gate == "topk_gate"
    assert not student.cfg.rational_per_latent_coefficients
    with pytest.raises(ConfigError, match="coefficient_sharing"):
        upgrade(teacher, tokens[:100], tokens[100:200], TrainConfig(steps=1), coefficient_sharing="coefficients")


# ------------------------------------------------------------------ per-latent coefficients (issue 8 §1)
def test_rsae_init_latent_coefficients_repeats_the_fit_per_latent(jumprelu_teacher: SAE) -> None:
    student = rsae_init(jumprelu_teacher, coefficient_sharing="latent_coefficients")
    shared = rsae_init(jumprelu_teacher, coefficient_sharing="latent")
    cfg, phi, phi_shared = student.cfg, student.activation.phi, shared.activation.phi
    assert cfg.rational_per_latent_coefficients and cfg.rational_per_latent_scales
    assert phi.a.shape == (24, 10) and phi.b.shape == (24, 8) and phi.b0.shape == (24,)
    assert torch.equal(phi.a, phi_shared.a.expand(24, -1)) and torch.equal(phi.b0, phi_shared.b0.expand(24))
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(student.eval().encode(x), shared.eval().encode(x))


def test_upgrade_latent_coefficients_starts_from_the_shared_calibration(tokens: torch.Tensor, tmp_path) -> None:
    """``latent_coefficients``: the calibration is the shared one of ``latent`` (same numbers), RSAE-init gives
    the same codes and metrics bit for bit, and the fine-tune then moves every latent's rational separately;
    the student round-trips through an SAE folder exactly."""
    from rsae.core.io import load_sae, save_sae

    teacher = _teacher("relu", tokens)
    finetune = TrainConfig(steps=15, batch_size=256, lr=1e-3, warmup_steps=2, log_every=5)
    results = {
        sharing: upgrade(teacher, tokens[:5000], tokens[5000:], finetune, coefficients=(RELU_A, RELU_B),
                         calibration_tokens=500, calibration_iters=20, control=False, seed=1,
                         coefficient_sharing=sharing)
        for sharing in ("latent", "latent_coefficients")
    }
    shared, per_latent = results["latent"], results["latent_coefficients"]
    assert per_latent.calibration == shared.calibration
    assert per_latent.init_metrics == shared.init_metrics
    phi_init = per_latent.student_init.activation.phi
    assert phi_init.per_latent_coefficients and phi_init.a.shape == (24, 4)
    assert torch.equal(phi_init.a, torch.tensor(shared.calibration.a, dtype=torch.float64).expand(24, -1))
    with torch.no_grad():
        x = tokens[5000:5500]
        assert torch.equal(per_latent.student_init.encode(x), shared.student_init.encode(x))
    a = per_latent.student.activation.phi.a.detach()
    assert not torch.equal(a, a[:1].expand_as(a))  # the rows moved apart
    report = per_latent.to_dict()
    json.dumps(report, allow_nan=False)
    assert report["coefficient_sharing"] == "latent_coefficients"
    loaded = load_sae(save_sae(per_latent.student, tmp_path / "student"))
    assert loaded.cfg == per_latent.student.cfg
    for key, value in per_latent.student.state_dict().items():
        if "log_c" in key:  # files hold C = exp(log C) at the model's dtype: log(exp(·)) is exact only to rounding
            torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=1e-6)
        else:  # the coefficients are stored in float64 as they are, the weights at their own dtype
            assert torch.equal(loaded.state_dict()[key], value), key


def test_l0_budget_drives_the_magnitude_fine_tune_only(jumprelu_teacher: SAE, tokens: torch.Tensor) -> None:
    """The paper student's codes are dense (exact L0 = d_sae): the L0 target must not reach its fine-tune, whose
    multiplier would jump to its cap and crush the codes; the magnitude student keeps it."""
    finetune = TrainConfig(steps=6, batch_size=256, lr=1e-3, warmup_steps=1, log_every=3)
    reports = {v: upgrade(jumprelu_teacher, tokens[:4000], tokens[4000:], finetune, calibration_tokens=400,
                          variant=v, seed=0, calibration_iters=10, l0_budget=1.05, control=False)
               for v in ("magnitude", "paper")}
    assert reports["paper"].budget["l0_target"] is None
    target = reports["magnitude"].budget["l0_target"]
    assert target is not None and target == pytest.approx(1.05 * reports["magnitude"].calibration.teacher_l0)
    paper = reports["paper"]
    assert paper.student_metrics["mse"] < 2 * paper.teacher_metrics["mse"]


def test_calibrate_refuses_a_per_latent_coefficient_student_with_a_way_out(jumprelu_teacher: SAE,
                                                                          tokens: torch.Tensor) -> None:
    student = rsae_init(jumprelu_teacher, coefficient_sharing="latent_coefficients")
    with pytest.raises(ConfigError, match="per_latent_coefficients"):
        calibrate(student, jumprelu_teacher, tokens[:200], max_iter=2)


def test_bad_tails_are_refused_with_a_clear_error(jumprelu_teacher: SAE) -> None:
    """rsae_init(tails=) takes "primitive", two slopes or None; SAEConfig.rational_tails two finite slopes."""
    with pytest.raises(ConfigError, match="tails must be 'primitive'"):
        rsae_init(jumprelu_teacher, tails="linear")
    with pytest.raises(ConfigError, match="tails"):
        rsae_init(jumprelu_teacher, tails=(0.0, math.inf))
    assert rsae_init(jumprelu_teacher, tails=(0.0, 0.5)).cfg.rational_tails == (0.0, 0.5)
    assert rsae_init(jumprelu_teacher, tails=None).cfg.rational_tails is None
    with pytest.raises(ConfigError, match="tails"):
        SAEConfig(d_in=4, d_sae=8, family="rational", rational_tails=(1.0,))


def test_topk_design_scale_is_the_exact_quantile_and_ignores_the_global_rng():
    """τ_k (the initial C_in of a top-k student) is the (1 − k/d_sae) quantile of all pre-activations, also past
    torch.quantile's 2²⁴ entries, and does not depend on the global RNG (a subsample drawn from it made resumed and
    fresh runs of ``rsae reproduce`` calibrate differently)."""
    from rsae.core.metrics import quantile
    from rsae.experiments.upgrade import DESIGN_THRESHOLD, _design_scales

    teacher = SAE.from_config(SAEConfig(d_in=8, d_sae=4096, family="topk", k=16), seed=0)
    student = rsae_init(teacher)
    h = torch.randn(4097, 4096, generator=torch.Generator().manual_seed(1))  # 2²⁴ + 4096 entries
    scales = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        scales.append(float(_design_scales(student, teacher, h, None)))
    assert scales[0] == scales[1] == float(quantile(h, 1 - 16 / 4096)) / DESIGN_THRESHOLD
