r"""The RSAE two-stage upgrade of a trained ReLU, JumpReLU, TopK or BatchTopK SAE (arXiv 2606.14990,
§Pipeline).

1. **RSAE-init.** Copy the teacher's W_enc, b_enc, W_dec, b_dec (and its gate: thresholds θ_j, k) into a
   rational SAE whose support is the teacher's own hard gate; plug in initial coefficients (a, b) (the
   rational approximation of the ReLU gate from ``rational_approx`` by default, or given explicitly); then
   *calibrate*
   (a, b, C_in, C_out) by ℓ2 on the teacher's real pre-activations h of a token sample:

   .. math:: \min_{a, b, C_{in}, C_{out}} \frac{1}{|S|}\sum_{(t, j) \in S} \big(\varphi(h_{tj}) -
   z^{T}_{tj}\big)^2,

   where S is the teacher's support (the kept entries, which the student shares) and z^T the teacher's codes.
   Outside S both codes are exactly 0, so the fit is exact there. C_in starts at the largest |h| on S so the
   kept pre-activations map into the design interval [−1, 1]. Optimised with L-BFGS (strong-Wolfe line
   search) in float64. The student's MSE is then checked against the teacher's on held-out tokens.
2. **Fine-tuning.** Train every parameter of the student with the teacher family's objective (MSE + the same
   sparsity penalty and coefficient; AuxK for top-k gates) using :class:`rsae.core.trainer.Trainer`. As a control,
   the teacher itself can be fine-tuned with the same settings, so any gain can be attributed to the rational
   rather than to extra training.

Example
-------
See :func:`upgrade` and docs/rsae.md for the synthetic-data table and its command.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from rsae.core.config import SAEConfig, TrainConfig
from rsae.core.data import as_source
from rsae.core.metrics import evaluate_sae
from rsae.core.rational import RationalActivation, rational_activation
from rsae.core.sae import SAE
from rsae.core.trainer import Trainer
from rsae.errors import ConfigError

__all__ = ["Calibration", "UpgradeResult", "rsae_init", "calibrate", "upgrade"]


class Calibration(NamedTuple):
    """Outcome of :func:`calibrate`."""

    loss_before: float
    """Mean squared code error on the support before fitting (initial coefficients, C_in = max |h|)."""
    loss_after: float
    """The same after fitting."""
    n_entries: int
    """Number of (token, latent) entries in the support used for the fit."""
    teacher_l0: float
    """The teacher's L0 (mean non-zero codes per token) on the calibration tokens."""
    a: list[float]
    """Fitted numerator coefficients."""
    b: list[float]
    """Fitted denominator coefficients."""
    c_in: float
    """Fitted C_in (shared)."""
    c_out: float
    """Fitted C_out (shared)."""


class UpgradeResult(NamedTuple):
    """Outcome of :func:`upgrade`: the models and their held-out metrics."""

    student_init: SAE
    """RSAE-init: teacher weights, calibrated rational."""
    student: SAE
    """Fine-tuned RSAE."""
    calibration: Calibration
    """What the calibration fit did."""
    teacher_metrics: dict[str, Any]
    """Held-out metrics of the teacher."""
    init_metrics: dict[str, Any]
    """Held-out metrics of RSAE-init."""
    student_metrics: dict[str, Any]
    """Held-out metrics of the fine-tuned RSAE."""
    control_metrics: dict[str, Any] | None
    """Held-out metrics of the teacher fine-tuned with the same settings (``None`` if not run)."""


def rsae_init(
    teacher: SAE,
    *,
    rational_type: tuple[int, int] = (3, 2),
    init_gate: str = "relu",
    coefficients: tuple[Any, Any] | None = None,
    l1_on: str = "codes",
) -> SAE:
    """A rational SAE with the teacher's weights and gate and uncalibrated initial coefficients.

    Parameters
    ----------
    teacher : SAE
        A ``relu``, ``jumprelu``, ``topk`` or ``batchtopk`` SAE.
    rational_type : (int, int)
        Type (m, n) of the rational.
    init_gate : str
        Gate whose rational approximation gives the initial (a, b) (``rational_approx``), unless
        ``coefficients`` is given.
    coefficients : (a, b), optional
        Explicit initial coefficients a_0..a_m and b_1..b_n.
    l1_on : str
        ``SAEConfig.rational_l1_on`` for a ReLU teacher (default ``codes``, the paper's λ‖z‖₁ on z = φ(h)).
    """
    tc = teacher.cfg
    if tc.family == "rational":
        raise ConfigError("the teacher is already a rational SAE; upgrade a relu/jumprelu/topk/batchtopk SAE")
    if coefficients is None:
        init = RationalActivation.from_gate(init_gate, tuple(rational_type))
        a, b = init.a.detach().double().tolist(), init.b.detach().double().tolist()
    else:
        a, b = (torch.as_tensor(c, dtype=torch.float64).tolist() for c in coefficients)
    with torch.no_grad():
        unit_rows = bool(((teacher.W_dec.norm(dim=1) - 1).abs() < 1e-3).all())
    cfg = SAEConfig(
        d_in=tc.d_in,
        d_sae=tc.d_sae,
        family="rational",
        k=tc.k,
        rational_gate=tc.gate,
        l1_coefficient=tc.l1_coefficient,
        l1_weight_by_decoder_norm=tc.l1_weight_by_decoder_norm,
        rational_l1_on=l1_on,
        l0_coefficient=tc.l0_coefficient,
        jumprelu_bandwidth=tc.jumprelu_bandwidth,
        threshold_init=tc.threshold_init,
        batchtopk_threshold_momentum=tc.batchtopk_threshold_momentum,
        rational_type=tuple(rational_type),
        rational_init_gate=init_gate,
        rational_a=tuple(a),
        rational_b=tuple(b),
        apply_b_dec_to_input=tc.apply_b_dec_to_input,
        normalize_decoder=tc.normalize_decoder and unit_rows,
        dtype=tc.dtype,
        device=str(teacher.device),
    )
    student = SAE(cfg).to(teacher.device)
    with torch.no_grad():
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            getattr(student, name).copy_(getattr(teacher, name))
        gate_tensors = {k: v for k, v in teacher.activation.file_tensors().items() if k == "threshold"}
        act = student.activation
        if tc.gate == "jumprelu":
            act.log_threshold.copy_(gate_tensors["threshold"].log())
        elif tc.gate == "batchtopk":
            act.batch.load_file_tensors(gate_tensors)
    return student


def calibrate(student: SAE, teacher: SAE, x: Tensor, *, max_iter: int = 300) -> Calibration:
    """Fit the student's (a, b, C_in, C_out) so φ(h) matches the teacher's codes on the teacher's support.

    Parameters
    ----------
    student : SAE
        Output of :func:`rsae_init` (shared scales).
    teacher : SAE
        The teacher.
    x : Tensor
        Calibration tokens [n, d_in].
    max_iter : int
        L-BFGS iterations.
    """
    phi = student.activation.phi
    if phi.log_c_in.dim():
        raise ConfigError("calibration fits shared scales; build the student with rational_per_latent_scales=False")
    teacher_mode = teacher.training
    teacher.eval()
    with torch.no_grad():
        x = x.to(teacher.device, teacher.dtype)
        h = teacher.pre_acts(x)
        z_teacher = teacher.activation(h)
        support = z_teacher != 0
        teacher_l0 = float(support.sum(-1).float().mean())
        h_kept = h[support].double()
        target = z_teacher[support].double()
    teacher.train(teacher_mode)
    if h_kept.numel() == 0:
        raise ConfigError("the teacher's codes are all zero on the calibration tokens; nothing to calibrate")
    a = phi.a.detach().double().clone().requires_grad_(True)
    b = phi.b.detach().double().clone().requires_grad_(True)
    log_c_in = torch.tensor(math.log(float(h_kept.abs().max())), dtype=torch.float64, requires_grad=True)
    log_c_out = torch.zeros((), dtype=torch.float64, requires_grad=True)
    params = [a, b, log_c_in, log_c_out]
    scale = float(target.pow(2).mean())

    def loss_fn() -> Tensor:
        return (rational_activation(h_kept, a, b, log_c_in, log_c_out) - target).pow(2).mean() / scale

    with torch.no_grad():
        before = float(loss_fn()) * scale
    optimizer = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        after = float(loss_fn()) * scale
        if not math.isfinite(after) or after > before:
            raise ConfigError(
                f"calibration diverged (loss {before:.3g} -> {after:.3g}); try more "
                "calibration tokens or other initial coefficients"
            )
        phi.a.copy_(a)
        phi.b.copy_(b)
        phi.log_c_in.fill_(float(log_c_in.detach()))
        phi.log_c_out.fill_(float(log_c_out.detach()))
    return Calibration(
        before,
        after,
        int(h_kept.numel()),
        teacher_l0,
        a.detach().tolist(),
        b.detach().tolist(),
        math.exp(float(log_c_in.detach())),
        math.exp(float(log_c_out.detach())),
    )


def upgrade(
    teacher: SAE,
    train_data: Any,
    eval_data: Any,
    finetune: TrainConfig,
    *,
    rational_type: tuple[int, int] = (3, 2),
    init_gate: str = "relu",
    coefficients: tuple[Any, Any] | None = None,
    l1_on: str = "codes",
    train_encoder: bool = True,
    calibration_tokens: int = 8192,
    eval_tokens: int | None = None,
    l0_budget: float | None = None,
    control: bool = True,
    progress: bool = False,
) -> UpgradeResult:
    """Run the two-stage upgrade and evaluate teacher, RSAE-init, fine-tuned RSAE (and the control).

    Parameters
    ----------
    teacher : SAE
        The trained teacher (left unchanged).
    train_data, eval_data
        Token sources (tensor, store path or :mod:`rsae.core.data` source) for calibration + fine-tuning and for
        the held-out metrics.
    finetune : TrainConfig
        Fine-tuning settings (its ``init_*`` data initialisations are switched off: weights come from the
        teacher).
    rational_type, init_gate, coefficients, l1_on
        See :func:`rsae_init`.
    train_encoder : bool
        Fine-tune W_enc, b_enc and b_dec too (the paper: everything). ``False`` freezes them, so the student
        keeps exactly the teacher's support (and L0) and only φ, W_dec learn; the control is then frozen alike.
    calibration_tokens : int
        Tokens of ``train_data`` used by :func:`calibrate`.
    eval_tokens : int, optional
        Cap on the held-out tokens evaluated.
    l0_budget : float, optional
        Fine-tune under the constraint L0 ≤ l0_budget · (the teacher's L0 on the calibration tokens), enforced
        by the trainer's dual-ascent multiplier on the sparsity penalty (``TrainConfig.l0_target``); ``None``
        (default) keeps the teacher's penalty unchanged. Top-k gates have a fixed L0 and no penalty, so it does nothing
        there.
    control : bool
        Also fine-tune a copy of the teacher with the same settings.
    progress : bool
        Progress bars on stderr.
    """
    train_src = as_source(train_data)
    student = rsae_init(
        teacher, rational_type=rational_type, init_gate=init_gate, coefficients=coefficients, l1_on=l1_on
    )
    sample = train_src.sample(min(calibration_tokens, train_src.n_tokens), seed=finetune.seed)
    calibration = calibrate(student, teacher, sample)
    student.eval()
    student_init = SAE(student.cfg).to(student.device)
    student_init.load_state_dict(student.state_dict())
    student_init.eval()

    def metrics(model: SAE) -> dict[str, Any]:
        return evaluate_sae(model, eval_data, max_tokens=eval_tokens)

    teacher_metrics = metrics(teacher)
    init_metrics = metrics(student_init)
    tune = finetune.replace(init_b_dec_geometric_median=False, init_rational_scale_from_data=False)
    if l0_budget is not None:
        tune = tune.replace(l0_target=l0_budget * calibration.teacher_l0)
    _fine_tune(student, tune, train_src, train_encoder, progress)
    student.eval()
    student_metrics = metrics(student)
    control_metrics = None
    if control:
        copy = SAE(teacher.cfg).to(teacher.device)
        copy.load_state_dict(teacher.state_dict())
        _fine_tune(copy, tune, train_src, train_encoder, progress)
        control_metrics = metrics(copy.eval())
    return UpgradeResult(
        student_init, student, calibration, teacher_metrics, init_metrics, student_metrics, control_metrics
    )


def _fine_tune(sae: SAE, cfg: TrainConfig, source: Any, train_encoder: bool, progress: bool) -> None:
    """Train ``sae``; with ``train_encoder=False`` the parameters that set the support (W_enc, b_enc, b_dec)
    get no gradient, so Adam leaves them unchanged."""
    frozen = [] if train_encoder else [sae.W_enc, sae.b_enc, sae.b_dec]
    for p in frozen:
        p.requires_grad_(False)
    try:
        Trainer(sae, cfg, source, progress=progress).train()
    finally:
        for p in frozen:
            p.requires_grad_(True)
