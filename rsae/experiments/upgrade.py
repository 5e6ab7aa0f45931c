r"""The RSAE two-stage upgrade of a trained ReLU, JumpReLU, TopK or BatchTopK SAE (arXiv 2606.14990,
§Pipeline), in two readings (docs/rsae.md, "Upgrade variants", has the maths and the measurements).

Both start from the teacher's W_enc, b_enc, W_dec, b_dec, copied exactly, and from the minimax rational of the
teacher's *own* gate in the safe form 1 + |b_0 + Σ_j b_j tʲ| (``rational_approx.activation_coefficients``, one table
of default types: ReLU (3, 2); JumpReLU and supplied-threshold TopK (9, 8) on the gapped design set θ = τ = 0.5,
gap 0.05), i.e. r(t) ≈ t·H(t − 0.5) or max(t, 0) on [−1, 1]; outside [−1, 1] the students follow the primitive's
own tails, r̃(t) = r(clamp(t, −1, 1)) + max(t − 1, 0) (:data:`PRIMITIVE_TAILS`, ``SAEConfig.rational_tails``), not
the rational's extrapolation.

``variant="magnitude"``
    The teacher's hard gate gives the support (its thresholds θ_j or its k) and φ(h) = C_out·r(h/C_in) only the
    magnitudes, z = 1[gate] · φ(h). Calibration fits (a, b, b_0, C_in, C_out) by ℓ2 on the teacher's support:

    .. math:: \min \frac{1}{|S|}\sum_{(t, j) \in S} (\varphi_j(h_{tj}) - z^{T}_{tj})^2 .

    Off S both codes are exactly 0, so RSAE-init reproduces the teacher up to the calibration residual. Fine-tuned
    with the teacher family's objective (MSE + its sparsity penalty; AuxK for top-k gates).
``variant="paper"``
    φ itself is the gate: no hard mask, z = C_out·r(h/C_in) with r ≈ the teacher's whole primitive. Calibrated on
    *all* (token, latent) entries of a token sample (S = everything above), then every parameter fine-tuned with
    MSE + λ‖z‖₁. Per-latent JumpReLU thresholds: C_in,j = C_out,j = θ_j / θ_design (θ_design = 0.5), so that every
    latent's jump lands on the fit's jump and φ_j(h) = C_in,j·r(h/C_in,j) ≈ h·H(h − θ_j) for |h| ≤ 2θ_j, with the
    coefficients (a, b, b_0) shared. TopK teachers get one supplied threshold τ_k, the (1 − k/d_sae) quantile of
    the calibration pre-activations (so that on average k latents per token exceed it), C = τ_k / τ_design. A
    smooth r is almost never exactly 0, so the codes are dense: L0 is reported as exact non-zeros (``l0``), as
    |z| > ε·max|z| with ε = :data:`L0_EPS` (``l0_eps``), and, separately, with an inference floor τ that zeros
    |z| < τ, τ chosen on a held-in sample so that L0 ≤ :data:`L0_BUDGET` × the teacher's (``rsae_floor``).

Coefficient sharing. ``coefficient_sharing="sae"`` (the paper's "handful of scalars") shares (a, b, b_0) by all
latents; scales are shared except where per-latent thresholds need them (JumpReLU). ``"latent"`` gives every latent
its own C_in and C_out, with (a, b, b_0) shared. ``"latent_coefficients"`` gives every latent its own scales *and*
its own rational (a_j, b_j, b_0,j): calibration is that of ``"latent"`` (one shared rational fitted, per-latent
scales), then the fitted rational is copied into every latent's row, so RSAE-init computes exactly what the
``"latent"`` calibration gives, and the fine-tune moves each latent's rational separately.

L0 budget. A fine-tune must end with held-out L0 ≤ :data:`L0_BUDGET` × the teacher's. For JumpReLU gates (student
and control alike) a final projection multiplies all thresholds by the smallest c ≥ 1 that brings the L0 of a
held-in sample within the budget; rows still above it are flagged ``over_budget`` in :meth:`UpgradeResult.to_dict`.

Example
-------
See :func:`upgrade`; docs/rsae.md has the synthetic-data table and its command.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from rsae.core.config import SAEConfig, TrainConfig
from rsae.core.data import as_source
from rsae.core.metrics import evaluate_sae, quantile
from rsae.core.rational import kernel_settings, rational_activation
from rsae.core.sae import SAE
from rsae.core.strict_json import finite
from rsae.core.trainer import Trainer
from rsae.errors import ConfigError

__all__ = ["Calibration", "UpgradeResult", "rsae_init", "calibrate", "upgrade", "VARIANTS", "COEFFICIENT_SHARING",
           "L0_BUDGET", "L0_EPS", "DESIGN_THRESHOLD", "PRIMITIVE_TAILS", "fit_gate", "copy_sae",
           "per_latent_coefficients"]

VARIANTS = ("magnitude", "paper")
"""The two readings of the upgrade (module docstring)."""
COEFFICIENT_SHARING = ("sae", "latent", "latent_coefficients")
"""``sae``: one (a, b, b_0, C_in, C_out) per SAE (per-latent scales only for JumpReLU); ``latent``: per-latent
scales C_in,j, C_out,j with (a, b, b_0) shared; ``latent_coefficients``: per-latent scales and per-latent
(a_j, b_j, b_0,j), each starting from the one shared calibrated rational."""
L0_BUDGET = 1.05
"""A fine-tuned model may have at most this factor times the teacher's held-out L0 (else ``over_budget``)."""
L0_EPS = 1e-3
"""``l0_eps`` counts |z| > L0_EPS · max|z| (max over all evaluated codes)."""
DESIGN_THRESHOLD = 0.5
"""θ = τ = 0.5: where the JumpReLU and TopK gate fits jump in design units (``rational_approx`` defaults)."""

_FIT_GATE = {"relu": "relu", "jumprelu": "jumprelu", "topk": "topk_gate", "batchtopk": "topk_gate"}
PRIMITIVE_TAILS = {"relu": (0.0, 1.0), "jumprelu": (0.0, 1.0), "topk_gate": (0.0, 1.0)}
"""Slopes (s_left, s_right) of the fitted primitives outside the design interval [−1, 1] (0 below, t above): the
students' ``SAEConfig.rational_tails``, so that φ follows the primitive on every pre-activation, not only on
those that C_in maps into [−1, 1] (the (9, 8) JumpReLU fit evaluated at t = 5 gives 0.75 instead of 5, and at
t = −30 gives −1.3 instead of 0)."""


def fit_gate(teacher_gate: str) -> str:
    """The ``rational_approx`` target whose minimax fit initialises the student of a teacher with this gate."""
    if teacher_gate not in _FIT_GATE:
        raise ConfigError(f"cannot upgrade a {teacher_gate!r} teacher; expected one of {sorted(_FIT_GATE)}")
    return _FIT_GATE[teacher_gate]


class Calibration(NamedTuple):
    """Outcome of :func:`calibrate`."""

    loss_before: float
    """Mean squared code error on the fitted entries before fitting (initial coefficients and scales)."""
    loss_after: float
    """The same after fitting."""
    n_entries: int
    """Number of (token, latent) entries sampled for the fit (:func:`calibrate`, Notes)."""
    teacher_l0: float
    """The teacher's L0 (mean non-zero codes per token) on the calibration tokens."""
    a: list[float]
    """Fitted numerator coefficients."""
    b: list[float]
    """Fitted denominator coefficients b_1..b_n."""
    c_in: float
    """Fitted C_in (the median over latents for per-latent scales)."""
    c_out: float
    """Fitted C_out (the median over latents for per-latent scales)."""
    b0: float = 0.0
    """Fitted free constant b_0 of the denominator."""
    support: str = "teacher"
    """Which entries were fitted: ``teacher`` (the teacher's support, variant magnitude) or ``all``."""
    loss_scales_only: float | None = None
    """The loss after the first stage, which fits only the scales (the second fits everything and is kept only
    where it is lower)."""
    n_represented: int | None = None
    """Number of entries the sample stands for: |S| (``support="teacher"``) or every (token, latent) entry."""


class UpgradeResult(NamedTuple):
    """Outcome of :func:`upgrade`: the models and their held-out metrics. :meth:`to_dict` is the report format."""

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
    variant: str = "magnitude"
    """``magnitude`` or ``paper`` (module docstring)."""
    coefficient_sharing: str = "sae"
    """``sae``, ``latent`` or ``latent_coefficients`` (:data:`COEFFICIENT_SHARING`)."""
    seed: int | None = None
    """Seed of the calibration sample and the fine-tune order (``None``: ``finetune.seed``)."""
    floor: float | None = None
    """Inference floor τ of the paper variant (codes |z| < τ zeroed), chosen on a held-in sample."""
    floor_metrics: dict[str, Any] | None = None
    """Held-out metrics of the fine-tuned RSAE with the floor τ (paper variant)."""
    budget: dict[str, Any] | None = None
    """L0 budget bookkeeping: ``factor``, the teacher's held-out ``teacher_l0``, the threshold ``projection``
    factors applied (student, control) and the ``over_budget`` flags."""
    control: SAE | None = None
    """The control model: the teacher fine-tuned with the same settings (``None`` if not run)."""

    def to_dict(self) -> dict[str, Any]:
        """The one report format (strict JSON: non-finite numbers become ``null``).

        Keys: ``variant``, ``coefficient_sharing``, ``seed``, ``family`` (the teacher's gate), ``rational_type``,
        ``teacher``, ``rsae_init``, ``rsae``, ``rsae_floor``, ``control`` (metric dicts or ``null``), ``floor``,
        ``l0_eps`` (the ε of the ``l0_eps`` metric), ``calibration``, ``budget`` and ``flags``: ``over_budget``
        (the fine-tuned RSAE's held-out L0 exceeds :data:`L0_BUDGET` × the teacher's; such a row is excluded from
        wins), ``floor_over_budget``, ``control_over_budget`` and ``init_close`` (RSAE-init MSE within 2 % of
        the teacher's).
        """
        budget = dict(self.budget or {})
        teacher = self.teacher_metrics
        flags = {
            "over_budget": budget.get("over_budget", False),
            "floor_over_budget": budget.get("floor_over_budget"),
            "control_over_budget": budget.get("control_over_budget"),
            "init_close": bool(abs(self.init_metrics["mse"] / teacher["mse"] - 1) <= 0.02)
            if teacher["mse"] > 0 else None,
        }
        return finite({
            "variant": self.variant,
            "coefficient_sharing": self.coefficient_sharing,
            "seed": self.seed,
            "family": self.student.cfg.rational_gate if self.variant == "magnitude" else _teacher_gate(self),
            "rational_type": list(self.student.cfg.rational_type),
            "teacher": teacher,
            "rsae_init": self.init_metrics,
            "rsae": self.student_metrics,
            "rsae_floor": self.floor_metrics,
            "control": self.control_metrics,
            "floor": self.floor,
            "l0_eps": L0_EPS,
            "calibration": self.calibration._asdict(),
            "budget": budget,
            "flags": flags,
        })


def _teacher_gate(result: UpgradeResult) -> str:
    return str((result.budget or {}).get("teacher_gate", result.student.cfg.rational_gate))


def _initial_coefficients(gate: str, rational_type: tuple[int, int] | None,
                          coefficients: tuple[Any, ...] | None) -> tuple[tuple[int, int], list, list, float]:
    """(type, a, b, b_0): explicit ``coefficients`` (a, b[, b_0]) or the minimax fit of ``gate``."""
    if coefficients is not None:
        a, b = (torch.as_tensor(c, dtype=torch.float64).tolist() for c in coefficients[:2])
        b0 = float(coefficients[2]) if len(coefficients) > 2 else 0.0
        typ = (len(a) - 1, len(b))
        if rational_type is not None and tuple(rational_type) != typ:
            raise ConfigError(f"coefficients have type {typ} but rational_type={tuple(rational_type)}")
        return typ, a, b, b0
    from rational_approx import activation_coefficients

    fit = activation_coefficients(gate, None if rational_type is None else tuple(rational_type))
    return fit.type, fit.a.tolist(), fit.b.tolist(), float(fit.b0)


def rsae_init(
    teacher: SAE,
    *,
    rational_type: tuple[int, int] | None = None,
    init_gate: str | None = None,
    coefficients: tuple[Any, ...] | None = None,
    l1_on: str = "codes",
    variant: str = "magnitude",
    coefficient_sharing: str = "sae",
    l1_coefficient: float | None = None,
    tails: str | tuple[float, float] | None = "primitive",
) -> SAE:
    """A rational SAE with the teacher's weights and uncalibrated initial coefficients.

    Parameters
    ----------
    teacher : SAE
        A ``relu``, ``jumprelu``, ``topk`` or ``batchtopk`` SAE.
    rational_type : (int, int), optional
        Type (m, n) of the rational; default ``rational_approx.default_type(init_gate)``.
    init_gate : str, optional
        Gate whose minimax rational gives the initial (a, b, b_0), unless ``coefficients`` is given; default the
        teacher's own gate (:func:`fit_gate`), or ``relu`` with explicit ``coefficients``.
    coefficients : (a, b) or (a, b, b_0), optional
        Explicit initial coefficients a_0..a_m, b_1..b_n (and b_0, default 0).
    l1_on : str
        ``SAEConfig.rational_l1_on`` for a ReLU teacher (default ``codes``, the paper's λ‖z‖₁ on z = φ(h)).
    variant, coefficient_sharing
        See the module docstring. The ``magnitude`` student keeps the teacher's gate (and copies its thresholds);
        the ``paper`` student has ``rational_gate="none"``. With ``"latent_coefficients"`` every latent's row
        holds the initial rational; :func:`calibrate` fits one shared rational, so :func:`upgrade` calibrates
        the ``"latent"`` student and then copies the fit into every row (:func:`per_latent_coefficients`).
    l1_coefficient : float, optional
        λ of the paper variant's λ‖z‖₁ (default: the teacher's ``l1_coefficient``).
    tails : "primitive", (s_left, s_right) or None
        ``SAEConfig.rational_tails`` of the student: ``"primitive"`` (default) the fitted gate's own tails
        (:data:`PRIMITIVE_TAILS`; ``None`` for a gate not listed there), explicit slopes, or ``None`` for the
        bare rational on every input.
    """
    tc = teacher.cfg
    if tc.family == "rational":
        raise ConfigError("the teacher is already a rational SAE; upgrade a relu/jumprelu/topk/batchtopk SAE")
    if variant not in VARIANTS:
        raise ConfigError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if coefficient_sharing not in COEFFICIENT_SHARING:
        raise ConfigError(f"coefficient_sharing must be one of {COEFFICIENT_SHARING}, got {coefficient_sharing!r}")
    # explicit coefficients are read as a ReLU-like magnitude (initial scale max |h|) unless init_gate names their gate
    gate = init_gate if init_gate is not None else ("relu" if coefficients is not None else fit_gate(tc.gate))
    typ, a, b, b0 = _initial_coefficients(gate, rational_type, coefficients)
    if isinstance(tails, str):
        if tails != "primitive":
            raise ConfigError(f"tails must be 'primitive', two slopes or None, got {tails!r}")
        tails = PRIMITIVE_TAILS.get(gate)
    with torch.no_grad():
        unit_rows = bool(((teacher.W_dec.norm(dim=1) - 1).abs() < 1e-3).all())
    per_latent = coefficient_sharing in ("latent", "latent_coefficients") or tc.gate == "jumprelu"
    cfg = SAEConfig(
        d_in=tc.d_in,
        d_sae=tc.d_sae,
        family="rational",
        k=tc.k if variant == "magnitude" else None,
        rational_gate=tc.gate if variant == "magnitude" else "none",
        l1_coefficient=tc.l1_coefficient if l1_coefficient is None else l1_coefficient,
        l1_weight_by_decoder_norm=tc.l1_weight_by_decoder_norm,
        rational_l1_on=l1_on,
        l0_coefficient=tc.l0_coefficient,
        jumprelu_bandwidth=tc.jumprelu_bandwidth,
        threshold_init=tc.threshold_init,
        batchtopk_threshold_momentum=tc.batchtopk_threshold_momentum,
        rational_type=typ,
        rational_init_gate=gate,
        rational_a=tuple(a),
        rational_b=tuple(b),
        rational_b0=b0,
        rational_per_latent_scales=per_latent,
        rational_per_latent_coefficients=coefficient_sharing == "latent_coefficients",
        rational_tails=tails,
        apply_b_dec_to_input=tc.apply_b_dec_to_input,
        normalize_decoder=tc.normalize_decoder and unit_rows,
        dtype=tc.dtype,
        device=str(teacher.device),
    )
    student = SAE(cfg).to(teacher.device)
    with torch.no_grad():
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            getattr(student, name).copy_(getattr(teacher, name))
        if variant == "magnitude":
            # the student's gate is the teacher's family: it takes the teacher's thresholds (if it has any)
            student.activation.gate_module.load_file_tensors(teacher.activation.file_tensors())
    return student


def _design_scales(student: SAE, teacher: SAE, h: Tensor, support: Tensor | None) -> Tensor:
    """Initial C_in (= C_out) per the module docstring: θ_j / θ_design for a JumpReLU teacher, τ_k / τ_design for
    a top-k teacher fitted with the TopK gate, else max |h| over the fitted entries (so they map into [−1, 1])."""
    gate, fit = teacher.cfg.gate, student.cfg.rational_init_gate
    if fit == "jumprelu" and gate == "jumprelu":
        return teacher.activation.threshold.detach().double() / DESIGN_THRESHOLD
    if fit == "topk_gate" and teacher.cfg.k is not None:
        # over every entry (an exact selection, no sample): a random subsample drawn from the global RNG made
        # τ_k, hence the calibrated scales, depend on what the process had run before
        tau = float(quantile(h.float(), 1.0 - teacher.cfg.k / teacher.cfg.d_sae))
        return torch.tensor(max(tau, 1e-12) / DESIGN_THRESHOLD, dtype=torch.float64)
    kept = h[support] if support is not None else h
    return torch.tensor(max(float(kept.abs().max()), 1e-12), dtype=torch.float64)


def calibrate(student: SAE, teacher: SAE, x: Tensor, *, max_iter: int = 100, support: str | None = None,
              max_entries: int = 1 << 16, seed: int = 0) -> Calibration:
    r"""Fit the student's (a, b, b_0, C_in, C_out) so φ(h) matches the teacher's codes by least squares.

    Parameters
    ----------
    student : SAE
        Output of :func:`rsae_init`.
    teacher : SAE
        The teacher.
    x : Tensor
        Calibration tokens [n, d_in].
    max_iter : int
        L-BFGS iterations per stage.
    support : {"teacher", "all"}, optional
        The fitted entries: the teacher's support S = {(t, j): z^T_tj ≠ 0} (default for a student with a hard
        gate) or every (token, latent) entry (default for ``rational_gate="none"``).
    max_entries : int
        At most this many (token, latent) entries enter the fit (a seeded sample, below).
    seed : int
        Seed of the entry sample.

    Notes
    -----
    The objective is the mean squared code error over the chosen entries (all of S, or all n·d_sae entries).
    It is estimated from a stratified sample of at most ``max_entries`` entries: up to ``max_entries`` of S for
    ``support="teacher"``; for ``support="all"`` up to half of them from S and the rest from its complement,
    each stratum weighted by (stratum size / sampled count), so the weighted mean is an unbiased estimate of the
    full mean while the few entries where the gate is open are not drowned by the many where it is closed.
    Only the sampled entries are evaluated (one fused kernel pass on a [1, N] row, per-latent scales gathered per
    entry), so the cost does not grow with d_sae. Two L-BFGS stages in float64 (strong-Wolfe line search): the
    scales alone (well conditioned), then every parameter; the second is kept only where it lowers the loss, since
    the monomial coefficients of a (9, 8) gate fit reach 1e7 and a full step can make things worse.
    ``loss_before`` and ``loss_after`` are that estimate; ``n_entries`` is the number of sampled entries and
    ``n_represented`` the number of entries they stand for.
    """
    phi = student.activation.phi
    if phi.a.dim() > 1:
        raise ConfigError("calibrate() fits one shared rational; this student has per-latent coefficients. Calibrate "
                          "the student of coefficient_sharing='latent' and copy its fit to every latent with "
                          "per_latent_coefficients(student) (what upgrade(coefficient_sharing='latent_coefficients') "
                          "does)")
    if support is None:
        support = "all" if student.cfg.rational_gate == "none" else "teacher"
    if support not in ("teacher", "all"):
        raise ConfigError(f"support must be 'teacher' or 'all', got {support!r}")
    if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 2:
        raise ConfigError(f"max_entries must be an int >= 2, got {max_entries!r}")
    teacher_mode = teacher.training
    teacher.eval()
    with torch.no_grad():
        x = x.to(teacher.device, teacher.dtype)
        h = torch.cat([teacher.pre_acts(x[i: i + 4096]) for i in range(0, x.shape[0], 4096)])
        z_teacher = torch.cat([teacher.activation(h[i: i + 4096]) for i in range(0, h.shape[0], 4096)])
        mask = z_teacher != 0
        teacher_l0 = float(mask.sum(-1).float().mean())
    teacher.train(teacher_mode)
    if not bool(mask.any()):
        raise ConfigError("the teacher's codes are all zero on the calibration tokens; nothing to calibrate")
    d_sae = teacher.cfg.d_sae
    per_latent = phi.log_c_in.dim() > 0
    with torch.no_grad():
        c0 = _design_scales(student, teacher, h, mask)
        c0 = c0.expand(d_sae).clone() if per_latent else c0.reshape(())
        gen = torch.Generator().manual_seed(int(seed))
        flat_mask = mask.flatten().cpu()
        strata = [flat_mask.nonzero().squeeze(1)]
        if support == "all":
            strata.append((~flat_mask).nonzero().squeeze(1))
        budgets = [max_entries] if support == "teacher" else [max_entries // 2, max_entries - max_entries // 2]
        if support == "all" and strata[0].numel() < budgets[0]:  # give S's unused share to the complement
            budgets = [strata[0].numel(), max_entries - strata[0].numel()]
        chosen, weights = [], []
        for idx, budget in zip(strata, budgets, strict=True):
            if idx.numel() == 0:
                continue
            take = idx if idx.numel() <= budget else idx[torch.randperm(idx.numel(), generator=gen)[:budget]]
            chosen.append(take)
            weights.append(torch.full((take.numel(),), idx.numel() / take.numel(), dtype=torch.float64))
        entries = torch.cat(chosen).to(h.device)
        weight = torch.cat(weights).to(h.device)
        represented = sum(int(i.numel()) for i in strata)
        h64 = h.flatten()[entries].double().reshape(1, -1)
        target = z_teacher.flatten()[entries].double().reshape(1, -1)
        latent = entries % d_sae
        del h, z_teacher, mask

    a = phi.a.detach().double().clone().requires_grad_(True)
    b = phi.b.detach().double().clone().requires_grad_(True)
    b0 = phi.b0.detach().double().clone().requires_grad_(True)
    log_c_in = c0.log().requires_grad_(True)
    log_c_out = c0.log().clone().requires_grad_(True)
    count = float(represented)
    scale = float((target.pow(2) * weight).sum()) / count or 1.0

    def loss_fn() -> Tensor:
        lci, lco = (v.index_select(0, latent) if per_latent else v for v in (log_c_in, log_c_out))
        out = rational_activation(h64, a, b, lci, lco, b0, phi.tails)
        return ((out - target).pow(2) * weight).sum() / count / scale

    def run(params: list[Tensor]) -> None:
        optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, history_size=20,
                                      line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-13)

        def closure() -> Tensor:
            optimizer.zero_grad()
            loss = loss_fn()
            loss.backward()
            return loss

        optimizer.step(closure)

    def snapshot() -> list[Tensor]:
        return [p.detach().clone() for p in (a, b, b0, log_c_in, log_c_out)]

    def restore(values: list[Tensor]) -> None:
        with torch.no_grad():
            for p, v in zip((a, b, b0, log_c_in, log_c_out), values, strict=True):
                p.copy_(v)

    def current() -> float:
        with torch.no_grad():
            value = float(loss_fn()) * scale
        return value if math.isfinite(value) else math.inf

    with kernel_settings(min_numel=0):  # hundreds of passes over one [1, N] shape: the fused kernels pay off
        before = current()
        best, best_loss = snapshot(), before
        run([log_c_in, log_c_out])
        scales_only = current()
        if scales_only <= best_loss:
            best, best_loss = snapshot(), scales_only
        restore(best)
        run([a, b, b0, log_c_in, log_c_out])
        if current() < best_loss:
            best, best_loss = snapshot(), current()
        restore(best)
    if not math.isfinite(best_loss):
        raise ConfigError("calibration produced a non-finite loss; try more calibration tokens or other coefficients")
    with torch.no_grad():
        phi.a.copy_(a)
        phi.b.copy_(b)
        phi.b0.copy_(b0)
        phi.log_c_in.copy_(log_c_in.to(phi.log_c_in.dtype).reshape(phi.log_c_in.shape))
        phi.log_c_out.copy_(log_c_out.to(phi.log_c_out.dtype).reshape(phi.log_c_out.shape))
    c_in, c_out = (float(torch.exp(v.detach()).median()) for v in (log_c_in, log_c_out))
    return Calibration(before, best_loss, int(entries.numel()), teacher_l0, a.detach().tolist(),
                       b.detach().tolist(), c_in, c_out, float(b0.detach()), support,
                       scales_only if math.isfinite(scales_only) else None, represented)


def upgrade(
    teacher: SAE,
    train_data: Any,
    eval_data: Any,
    finetune: TrainConfig,
    *,
    rational_type: tuple[int, int] | None = None,
    init_gate: str | None = None,
    coefficients: tuple[Any, ...] | None = None,
    l1_on: str = "codes",
    train_encoder: bool = True,
    calibration_tokens: int = 8192,
    eval_tokens: int | None = None,
    l0_budget: float | None = None,
    control: bool = True,
    progress: bool = False,
    variant: str = "magnitude",
    coefficient_sharing: str = "sae",
    seed: int | None = None,
    l1_coefficient: float | None = None,
    calibration_iters: int = 100,
    teacher_metrics: dict[str, Any] | None = None,
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
        See :func:`rsae_init` (default: the minimax fit of the teacher's own gate and its default type).
    train_encoder : bool
        Fine-tune W_enc, b_enc and b_dec too (the paper: everything). ``False`` freezes them, so a magnitude
        student keeps exactly the teacher's support (and L0) and only φ, W_dec learn; the control is frozen alike.
    calibration_tokens : int
        Tokens of ``train_data`` used by :func:`calibrate` (and, from a second sample, for the budget projection
        and the inference floor).
    eval_tokens : int, optional
        Cap on the held-out tokens evaluated.
    l0_budget : float, optional
        Fine-tune under the constraint L0 ≤ l0_budget · (the teacher's L0 on the calibration tokens), enforced
        by the trainer's dual-ascent multiplier on the sparsity penalty (``TrainConfig.l0_target``); ``None``
        (default) keeps the teacher's penalty unchanged. Independent of it, the final projection and the
        ``over_budget`` flag use :data:`L0_BUDGET`. Applies to the ``magnitude`` variant only (student and control):
        the ``paper`` student's codes are dense, so its exact L0 is d_sae and the multiplier would rise to its cap at
        once (measured: held-out MSE 48 -> 167 in 40 steps); its budget is met by the inference floor.
    control : bool
        Also fine-tune a copy of the teacher with the same settings.
    progress : bool
        Progress bars on stderr.
    variant : {"magnitude", "paper"}
        The reading of the upgrade (module docstring).
    coefficient_sharing : {"sae", "latent", "latent_coefficients"}
        Shared scales, per-latent scales, or per-latent scales and coefficients (module docstring).
    seed : int, optional
        Seed of the calibration sample and of the fine-tune's data order (default ``finetune.seed``).
    l1_coefficient : float, optional
        λ of the paper variant's λ‖z‖₁ (default the teacher's ``l1_coefficient``).
    calibration_iters : int
        L-BFGS iterations per calibration stage (:func:`calibrate`).
    teacher_metrics : dict, optional
        The teacher's held-out metrics from an earlier call with the same teacher, ``eval_data`` and
        ``eval_tokens`` (``UpgradeResult.teacher_metrics``): reused instead of measured again (several upgrades of
        one teacher — variants, seeds — share them).
    """
    train_src = as_source(train_data)
    seed = finetune.seed if seed is None else int(seed)
    if coefficient_sharing not in COEFFICIENT_SHARING:
        raise ConfigError(f"coefficient_sharing must be one of {COEFFICIENT_SHARING}, got {coefficient_sharing!r}")
    # calibration fits one shared rational: per-latent coefficients are the "latent" calibration, copied per row
    calibrated_sharing = "latent" if coefficient_sharing == "latent_coefficients" else coefficient_sharing
    student = rsae_init(teacher, rational_type=rational_type, init_gate=init_gate, coefficients=coefficients,
                        l1_on=l1_on, variant=variant, coefficient_sharing=calibrated_sharing,
                        l1_coefficient=l1_coefficient)
    n_cal = min(calibration_tokens, train_src.n_tokens)
    sample = train_src.sample(n_cal, seed=seed)
    held_in = train_src.sample(n_cal, seed=seed + 1)
    calibration = calibrate(student, teacher, sample, max_iter=calibration_iters, seed=seed)
    if coefficient_sharing == "latent_coefficients":
        student = per_latent_coefficients(student)
    student.eval()
    student_init = copy_sae(student)

    def metrics(model: SAE) -> dict[str, Any]:
        return dict(evaluate_sae(model, eval_data, max_tokens=eval_tokens, l0_eps=L0_EPS))

    teacher_metrics = metrics(teacher) if teacher_metrics is None else dict(teacher_metrics)
    init_metrics = metrics(student_init)
    tune = finetune.replace(init_b_dec_geometric_median=False, init_rational_scale_from_data=False, seed=seed)
    if l0_budget is not None and variant == "magnitude":
        # the paper student's smooth codes are dense (exact L0 = d_sae): a dual ascent on exact L0 would only drive
        # the penalty to its cap and crush the codes; its budget is met by the inference floor instead
        tune = tune.replace(l0_target=l0_budget * calibration.teacher_l0)
    _fine_tune(student, tune, train_src, train_encoder, progress)
    student.eval()
    teacher_l0_held_in = _l0(teacher, held_in)
    budget: dict[str, Any] = {"factor": L0_BUDGET, "teacher_l0": teacher_metrics["l0"], "l0_target": tune.l0_target,
                              "teacher_gate": teacher.cfg.gate,
                              "projection": _project_thresholds(student, held_in, L0_BUDGET * teacher_l0_held_in)}
    student_metrics = metrics(student)
    limit = L0_BUDGET * teacher_metrics["l0"]
    budget["over_budget"] = bool(student_metrics["l0"] > limit)
    floor, floor_metrics = None, None
    if variant == "paper":
        floor = _choose_floor(student, held_in, L0_BUDGET * teacher_l0_held_in)
        floored = copy_sae(student, rational_floor=floor)
        floor_metrics = metrics(floored)
        budget["floor_over_budget"] = bool(floor_metrics["l0"] > limit)
    control_metrics, copy = None, None
    if control:
        copy = copy_sae(teacher)
        copy.train()
        _fine_tune(copy, tune, train_src, train_encoder, progress)
        copy.eval()
        budget["control_projection"] = _project_thresholds(copy, held_in, L0_BUDGET * teacher_l0_held_in)
        control_metrics = metrics(copy)
        budget["control_over_budget"] = bool(control_metrics["l0"] > limit)
    return UpgradeResult(student_init, student, calibration, teacher_metrics, init_metrics, student_metrics,
                         control_metrics, variant, coefficient_sharing, seed, floor, floor_metrics, budget, copy)


def per_latent_coefficients(model: SAE) -> SAE:
    """A copy of the rational SAE ``model`` whose every latent has its own rational (a_j, b_j, b_0,j), each row
    equal to ``model``'s shared one (``SAEConfig.rational_per_latent_coefficients``): it computes the same codes
    bit for bit (tests/rsae/test_rational_per_latent.py), and fine-tuning then moves each row separately.
    Returned in ``model``'s train/eval mode; a model that already has per-latent coefficients is copied as is."""
    if model.cfg.family != "rational":
        raise ConfigError(f"per-latent coefficients need a rational SAE, got family {model.cfg.family!r}")
    phi = model.activation.phi
    if phi.per_latent_coefficients:
        return copy_sae(model).train(model.training)
    a, b, b0 = (x.detach().double() for x in (phi.a, phi.b, phi.b0))
    cfg = model.cfg.replace(rational_per_latent_coefficients=True, rational_a=tuple(a.tolist()),
                            rational_b=tuple(b.tolist()), rational_b0=float(b0))
    out = SAE(cfg).to(model.device)
    state = model.state_dict()
    prefix = "activation.phi."
    d_sae = model.cfg.d_sae
    state[prefix + "a"] = a.expand(d_sae, -1).clone()
    state[prefix + "b"] = b.expand(d_sae, -1).clone()
    state[prefix + "b0"] = b0.expand(d_sae).clone()
    out.load_state_dict(state)
    return out.train(model.training)


def copy_sae(model: SAE, **changes: Any) -> SAE:
    """An independent copy of ``model`` in eval mode (config ``changes`` applied, e.g. ``rational_floor``)."""
    cfg = model.cfg.replace(**changes) if changes else model.cfg
    out = SAE(cfg).to(model.device)
    out.load_state_dict(model.state_dict())
    return out.eval()


@torch.no_grad()
def _codes(model: SAE, x: Tensor, batch: int = 4096) -> list[Tensor]:
    return [model.encode(x[i: i + batch].to(model.device, model.dtype)) for i in range(0, x.shape[0], batch)]


def _l0(model: SAE, x: Tensor) -> float:
    """Mean exact non-zeros per token of ``model``'s codes on ``x``."""
    return float(sum(int((z != 0).sum()) for z in _codes(model, x)) / max(1, x.shape[0]))


@torch.no_grad()
def _project_thresholds(model: SAE, x: Tensor, limit: float) -> float | None:
    """For a JumpReLU gate: multiply every threshold by the smallest c ≥ 1 (bisection, relative 1e-3) with L0 ≤
    ``limit`` on ``x``; return c (1.0 when already within). ``None`` for other gates (nothing to project)."""
    act = model.activation
    log_t = getattr(act, "log_threshold", None)
    if log_t is None or model.cfg.gate != "jumprelu":
        return None
    if _l0(model, x) <= limit:
        return 1.0
    base = log_t.detach().clone()

    def l0_at(c: float) -> float:
        log_t.copy_(base + math.log(c))
        return _l0(model, x)

    lo, hi = 1.0, 2.0
    while l0_at(hi) > limit and hi < 2.0**20:
        lo, hi = hi, hi * 2
    for _ in range(40):
        if hi / lo - 1 < 1e-3:
            break
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if l0_at(mid) > limit else (lo, mid)
    l0_at(hi)
    return hi


@torch.no_grad()
def _choose_floor(model: SAE, x: Tensor, limit: float) -> float:
    """The smallest floor τ with mean count per token of |z| ≥ τ at most ``limit`` on ``x`` (a quantile of |z|)."""
    mags = torch.cat([z.abs().flatten().float() for z in _codes(model, x)])
    keep = int(math.floor(limit * x.shape[0]))
    if keep >= mags.numel():
        return 0.0
    top = torch.topk(mags, keep + 1).values  # the (keep+1)-th largest |z| must fall below τ
    return float(torch.nextafter(top[-1], torch.tensor(math.inf)))


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
