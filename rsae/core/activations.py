r"""Activation families of the sparse autoencoder: one small module per family, plugged into one :class:`SAE`.

Every family maps pre-activations h ∈ R^{B×d_sae} to codes z with *exact* zeros and supplies its
sparsity penalty; the SAE module, the trainer, the metrics and the files are shared. The unifying view of
the RSAE paper (arXiv 2606.14990): every gate is z = m(h) ⊙ g(h), a hard support mask m times a magnitude g.

=============  ==================================  ========  ====================================
family         support m(h)                        g(h)      penalty
=============  ==================================  ========  ====================================
``relu``       h > 0                               h         λ₁ · mean_tokens Σ_j |z_j| (· ‖d_j‖)
``jumprelu``   h > θ_j (per latent, learned)       h         λ₀ · mean_tokens Σ_j H(h_j − θ_j)
``topk``       k largest h of the token, h > 0     h         none (AuxK added by the trainer)
``batchtopk``  k·B largest h of the batch;         h         none (AuxK added by the trainer)
               h > θ_j at inference
``rational``   a gate above, or ``cutoff``         φ(h)      that of the gate
               φ(h) > τ (τ shared, learned)
=============  ==================================  ========  ====================================

with φ(h) = C_out · r(h / C_in) the safe-Padé rational of :mod:`rsae.core.rational`. A smooth rational is almost
never exactly 0, so the rational family takes its support from a hard gate and lets φ shape the magnitudes of
the kept codes; docs/rsae.md compares the gates with numbers.

JumpReLU thresholds are trained with the straight-through estimator of Rajamanoharan et al. (2024), "Jumping
Ahead: Improving Reconstruction Fidelity with JumpReLU Sparse Autoencoders": with the rectangle kernel
K(u) = 1[|u| < 1/2] and bandwidth ε,

.. math::
    \frac{\partial}{\partial\theta}\,h H(h-\theta) := -\frac{\theta}{\varepsilon}
    K\!\left(\frac{h-\theta}{\varepsilon}\right),
    \qquad
    \frac{\partial}{\partial\theta}\,H(h-\theta) := -\frac{1}{\varepsilon}
    K\!\left(\frac{h-\theta}{\varepsilon}\right),

and no gradient through the Heaviside step into h. TopK follows Gao et al. (2024), "Scaling and evaluating
sparse autoencoders"; BatchTopK follows Bussmann et al. (2024), "BatchTopK Sparse Autoencoders".
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rsae.core import distributed
from rsae.core.config import SAEConfig
from rsae.core.metrics import quantile
from rsae.core.rational import RationalActivation, current_kernel_settings, kernel_settings, rational_activation
from rsae.core.sparse import Support
from rsae.errors import ConfigError

__all__ = [
    "Activation",
    "ReLU",
    "JumpReLU",
    "TopK",
    "BatchTopK",
    "CutoffGate",
    "NoGate",
    "Rational",
    "jumprelu_ste",
    "l1_decode",
    "step_ste",
    "make_activation",
    "make_gate",
]


def _window_sum(grad_out: Tensor, h: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
    """Σ grad_out · K((h − θ)/ε) reduced to θ's shape (the rectangle kernel K(u) = 1[|u| < 1/2]), in θ's dtype:
    the straight-through θ-gradients below are this times −θ/ε (JumpReLU) or −1/ε (the step). A ``where`` and one
    reduction instead of a float copy of the window and two products over all of h."""
    inside = torch.where((h - threshold).abs() < bandwidth / 2, grad_out, 0)
    return inside.to(threshold.dtype).sum_to_size(threshold.shape)


class _JumpReLUFunction(torch.autograd.Function):
    """z = h · H(h − θ) with the rectangle-kernel straight-through gradient for θ."""

    @staticmethod
    def forward(ctx, h: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(h, threshold)
        ctx.bandwidth = bandwidth
        return h * (h > threshold).to(h.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        h, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_h = grad_out * (h > threshold)  # the boolean mask is promoted inside the product (no float copy)
        return grad_h, _window_sum(grad_out, h, threshold, eps) * (-threshold / eps), None


class _StepFunction(torch.autograd.Function):
    """H(h − θ) ∈ {0, 1} with the rectangle-kernel straight-through gradient for θ, none for h."""

    @staticmethod
    def forward(ctx, h: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(h, threshold)
        ctx.bandwidth = bandwidth
        return (h > threshold).to(h.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        h, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_threshold = _window_sum(grad_out, h, threshold, eps) * (-1.0 / eps)
        return None, grad_threshold, None


class _SaturatingGather(torch.autograd.Function):
    """``param[index]`` whose backward sums the gradients of repeated indices in float64 and clamps the sum to the
    finite range of ``param``'s dtype, so gathered per-latent scales never receive an infinite gradient."""

    @staticmethod
    def forward(ctx, param: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(index)
        ctx.shape, ctx.dtype = param.shape, param.dtype
        return param[index]

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (index,) = ctx.saved_tensors
        total = torch.zeros(ctx.shape, dtype=torch.float64, device=grad_out.device)
        total.index_add_(0, index, grad_out.double())
        big = torch.finfo(ctx.dtype).max
        return total.clamp(-big, big).to(ctx.dtype), None


def jumprelu_ste(h: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
    """JumpReLU h · H(h − θ) whose θ-gradient is the rectangle-kernel estimator −(θ/ε) K((h − θ)/ε).

    Parameters
    ----------
    h : Tensor
        Pre-activations [..., d_sae].
    threshold : Tensor
        θ, broadcastable to ``h`` (per latent [d_sae] or shared []).
    bandwidth : float
        Kernel bandwidth ε > 0.
    """
    return _JumpReLUFunction.apply(h, threshold, bandwidth)


def step_ste(h: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
    """Heaviside H(h − θ) (exact 0/1) whose θ-gradient is −(1/ε) K((h − θ)/ε); no gradient into ``h``."""
    return _StepFunction.apply(h, threshold, bandwidth)


def _l1(z: Tensor, W_dec: Tensor, weight_by_decoder_norm: bool) -> Tensor:
    """mean_tokens Σ_j |z_j| (· ‖W_dec[j]‖)."""
    if weight_by_decoder_norm:
        return (z.abs() * W_dec.norm(dim=1)).sum(-1).mean()
    return z.abs().sum(-1).mean()


class _L1DecodeFunction(torch.autograd.Function):
    """Codes, L1 penalty and reconstruction of the dense path in one autograd node: from u [B, d_sae] the codes
    z = max(u, 0) (``relu=True``, u the pre-activations) or z = u (the codes themselves, any sign), the penalty
    mean_tokens Σ_j |z_j| w_j (w_j ≥ 0: the decoder-row norms, or 1) and x̂ = z W_dec + b_dec.

    The plain formulation (the codes, :func:`_l1`, ``z @ W_dec + b_dec``) makes eight passes over [B, d_sae] tensors
    beside the codes and the products (abs, the product with w and the row sums; in the backward sgn, two
    products, a reduction for ∂w, the accumulation of the two gradients of z, and for a relu its backward into a new
    tensor). Here the forward makes one column sum s_j = Σ_b |z_bj| (the penalty is s · w / B; s_j ≠ 0 says which
    latents fired, for the trainer's dead-latent counters), and the backward forms ∂z = ∂x̂ W_decᵀ + ∂pen ·
    sgn(z) w / B: for a relu in one ``addmm`` (the row as the product's bias; sgn(z) = 1 where relu passes a
    gradient) with relu's mask applied in place, for signed codes as ``mm`` and one ``addcmul_`` with sgn(z);
    ∂w = ∂pen · s / B. Same values and gradients as the plain formulation to float rounding (the sums run in
    another order); ``tests/rsae/test_relu_l1.py``."""

    @staticmethod
    def forward(ctx, u: Tensor, W_dec: Tensor, b_dec: Tensor, weights: Tensor | None, relu: bool):
        z = torch.relu(u) if relu else u
        column_sums = (z if relu else z.abs()).sum(0)
        penalty = (column_sums @ weights if weights is not None else column_sums.sum()) / u.shape[0]
        x_hat = torch.addmm(b_dec, z, W_dec)
        ctx.save_for_backward(z, W_dec, column_sums, weights)
        ctx.relu = relu
        ctx.mark_non_differentiable(column_sums)
        ctx.set_materialize_grads(False)  # the codes' gradient is None unless z is used (no [B, d_sae] zero fill)
        # (z = u is returned as an output of its own, so that autograd keeps the graph of u and of z apart)
        return x_hat, z if relu else z.view_as(z), penalty, column_sums

    @staticmethod
    def backward(ctx, grad_x_hat: Tensor | None, grad_z: Tensor | None, grad_penalty: Tensor | None, _sums):
        z, W_dec, column_sums, weights = ctx.saved_tensors
        scale = (grad_penalty if grad_penalty is not None else z.new_zeros(())) / z.shape[0]
        row = scale * weights if weights is not None else scale.expand(z.shape[1])
        grad_u = grad_W_dec = grad_b_dec = grad_weights = None
        if ctx.needs_input_grad[0]:
            if ctx.relu:
                grad_u = (torch.addmm(row, grad_x_hat, W_dec.T) if grad_x_hat is not None
                          else row.expand_as(z).contiguous())
            else:
                grad_u = grad_x_hat @ W_dec.T if grad_x_hat is not None else torch.zeros_like(z)
                grad_u.addcmul_(torch.sgn(z), row)
            if grad_z is not None:
                grad_u += grad_z
            if ctx.relu:  # relu's backward (∂ where z > 0, else 0), written over the fresh ∂z
                torch.ops.aten.threshold_backward.grad_input(grad_u, z, 0, grad_input=grad_u)
        if grad_x_hat is not None and ctx.needs_input_grad[1]:
            grad_W_dec = z.T @ grad_x_hat
        if grad_x_hat is not None and ctx.needs_input_grad[2]:
            grad_b_dec = grad_x_hat.sum(0)
        if weights is not None and ctx.needs_input_grad[3]:
            grad_weights = scale * column_sums
        return grad_u, grad_W_dec, grad_b_dec, grad_weights, None


def l1_decode(u: Tensor, W_dec: Tensor, b_dec: Tensor, weight_by_decoder_norm: bool, relu: bool = False
              ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The dense path's codes, reconstruction and L1 penalty in one autograd node (:class:`_L1DecodeFunction`).

    From ``u`` [..., d_sae]: the codes z = max(u, 0) when ``relu`` (u the pre-activations), else z = u; the
    reconstruction x̂ = z W_dec + b_dec; the penalty mean_tokens Σ_j |z_j| (· ‖W_dec[j]‖), without its coefficient,
    the mean over all leading positions as :func:`_l1`'s; and the latents that fired (boolean [d_sae]).
    Returns ``(z, x_hat, penalty, fired)``, with gradients for u, W_dec and b_dec. Under autocast the plain
    operations run instead (autocast casts each of them; the node's products would see mixed dtypes)."""
    if torch.is_autocast_enabled(u.device.type):
        z = torch.relu(u) if relu else u
        fired = (z != 0).reshape(-1, z.shape[-1]).any(0)
        return z, z @ W_dec + b_dec, _l1(z, W_dec, weight_by_decoder_norm), fired
    flat = u.reshape(-1, u.shape[-1])
    weights = W_dec.norm(dim=1).to(flat.dtype) if weight_by_decoder_norm else None
    x_hat, z, penalty, column_sums = _L1DecodeFunction.apply(flat, W_dec.to(flat.dtype), b_dec.to(flat.dtype),
                                                             weights, relu)
    # a column sum of |z| is 0 exactly when every entry of the column is 0 (NaN ≠ 0 fires, as in any())
    return z.reshape(u.shape), x_hat.reshape(*u.shape[:-1], x_hat.shape[-1]), penalty, column_sums != 0


def _l1_sparse(values: Tensor, support: Support, W_dec: Tensor, weight_by_decoder_norm: bool) -> Tensor:
    """:func:`_l1` from the support's values: Σ_n |v_n| (· ‖W_dec[j_n]‖) / B."""
    if weight_by_decoder_norm:
        return (values.abs() * W_dec.norm(dim=1)[support.latents]).sum() / support.n_rows
    return values.abs().sum() / support.n_rows


def _threshold_support(h: Tensor, mask_of, max_density: float) -> Support | None:
    """The support ``mask_of(h)`` of pre-activations ``h`` [B, d_sae] when at most ``max_density`` of its entries
    are set, else None (dense path).

    A dense batch is recognised on its first rows: when the first ⌈B/16⌉ rows alone hold more set entries than
    the whole batch may, the answer is None without building the mask of the rest (the same answer as counting
    all of it; on a fresh model's ~50 % dense codes this saves a full pass over h and its count)."""
    budget = max_density * h.numel()
    head = h[: -(-h.shape[0] // 16)]
    if head.shape[0] < h.shape[0] and int(torch.count_nonzero(mask_of(head))) > budget:
        return None
    mask = mask_of(h)
    if int(torch.count_nonzero(mask)) > budget:
        return None
    return Support.from_flat(mask.reshape(-1).nonzero().squeeze(1), mask.shape[0], mask.shape[1])


def _jumprelu_support(h: Tensor, threshold: Tensor, bandwidth: float, max_density: float) -> Support | None:
    """Entries that fire (h > θ) or lie in the STE window |h − θ| < ε/2 (they carry ∂/∂θ): every entry whose
    code or gradient can be non-zero."""
    return _threshold_support(h, lambda rows: (rows > threshold) | ((rows - threshold).abs() < bandwidth / 2),
                              max_density)


def _topk_indices(h: Tensor, k: int) -> Tensor:
    """Indices of the k largest entries of each row (ties broken by torch.topk)."""
    return torch.topk(h, k, dim=-1, sorted=False).indices


class Activation(nn.Module):
    """Base class of the families: ``forward(h) -> z`` with exact zeros, plus the sparsity penalty.

    Attributes
    ----------
    uses_auxk : bool
        Whether the trainer should add the AuxK loss on dead latents (top-k style supports).
    """

    uses_auxk: bool = False
    rational_state_prefix: str | None = None
    """Where :class:`Rational` keeps this gate's tensors in its state dict (``""``: beside φ's, ``"batch."``: under
    ``batch``), the keys of checkpoints written before the gates were modules of their own; None (new gates): under
    ``gate_module.``."""
    sparse_max_density: float = 0.02
    """Threshold families (ReLU, JumpReLU and those gates) take the sparse path when at most this fraction of
    the batch's codes is selected; above it the dense products are faster (docs/performance.md measures the
    crossover with ``benchmarks/bench_sparse_crossover.py``: between 3 % and 4 % for ReLU on this 2-core CPU when
    idle, between 1 % and 2 % under heavy load)."""

    def forward(self, h: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def penalty(self, h: Tensor, z: Tensor, W_dec: Tensor) -> Tensor:
        """Sparsity penalty (already multiplied by its coefficient); zero for families without one."""
        return h.new_zeros(())

    def dense_forward(self, h: Tensor, W_dec: Tensor, b_dec: Tensor
                      ) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        """The dense path from pre-activations ``h``: codes z = ``self(h)``, the reconstruction
        x̂ = z W_dec + b_dec when computed here (else None: :meth:`rsae.core.sae.SAE.decode`), the penalty
        ``penalty(h, z, W_dec)`` and, when computed on the way, the latents that fired (boolean [d_sae], else
        None: the caller reads them off z). A family may compute them together (:class:`ReLU` does, in one
        autograd node)."""
        z = self(h)
        return z, None, self.penalty(h, z, W_dec), None

    def gated_dense_forward(self, h: Tensor, magnitude, W_dec: Tensor, b_dec: Tensor
                            ) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        """:meth:`dense_forward` of this family as a gate with the magnitude map ``magnitude``: codes
        ``gated(h, magnitude)``, reconstruction (or None), ``gated_penalty`` and fired latents (or None), computed
        together where the family can share work (ReLU: one L1-and-decode node; JumpReLU and the cutoff gate: the
        step once for the codes and the penalty)."""
        z = self.gated(h, magnitude)
        return z, None, self.gated_penalty(h, z, W_dec, magnitude), None

    def gated(self, h: Tensor, magnitude) -> Tensor:
        """z = m(h) ⊙ g(h): this family's support m applied to the magnitude map ``magnitude(values, latents)``
        (``latents`` None when ``values`` is the full [..., d_sae] tensor). :class:`Rational` calls it with g = φ;
        every family usable as a gate implements it. A magnitude map also takes ``positive=True``: it then returns
        g(values) where values > 0 and 0 elsewhere, the relu gate's mask, fused into g's kernels where it can."""
        raise NotImplementedError(f"{type(self).__name__} cannot be used as a gate (no gated())")

    def gated_sparse_values(self, kept: Tensor, support: Support, magnitude) -> Tensor:
        """:meth:`sparse_values` with the magnitude map ``magnitude(values, latents)``: g(h) where h > 0, else 0."""
        return torch.where(kept > 0, magnitude(kept, support.latents), 0)

    def gated_penalty(self, h: Tensor, z: Tensor, W_dec: Tensor, magnitude) -> Tensor:
        """:meth:`penalty` of codes ``z`` = :meth:`gated` (h, ``magnitude``); the same as :meth:`penalty` unless
        the support depends on the magnitudes (the cutoff gate)."""
        return self.penalty(h, z, W_dec)

    def magnitude(self, values: Tensor, latents: Tensor, positive: bool = False) -> Tensor:
        """Magnitude map g on gathered pre-activations ``values`` of latents ``latents`` (same shape);
        relu by default (already 0 where values <= 0, so ``positive`` changes nothing). Used for the top-k
        supports and the AuxK loss."""
        return torch.relu(values)

    def auxk_values(self, kept: Tensor, support: Support) -> Tensor:
        """Values of the AuxK reconstruction at its support (the dead latents' top-k_aux entries), from the
        gathered pre-activations ``kept`` [N]: g(h) where h > 0, else 0 (:meth:`rsae.core.sae.SAE.forward`)."""
        return torch.where(kept > 0, self.magnitude(kept, support.latents), 0)

    def select(self, h: Tensor) -> Support | None:
        """The support of the codes of pre-activations ``h`` [B, d_sae] (no graph), or None for the dense path.

        A family that returns a support gets its codes from :meth:`sparse_values` on the gathered entries and
        is decoded by :func:`rsae.core.sparse.sparse_decode`; its penalty then receives ``h`` without a graph
        (it must not need ∂/∂h). Called once per forward pass in :meth:`rsae.core.sae.SAE.forward` (BatchTopK
        updates its threshold here). Default: None."""
        return None

    def sparse_values(self, kept: Tensor, support: Support) -> Tensor:
        """Code values at the support from the gathered pre-activations ``kept`` [N]: g(h) where h > 0, else 0
        (the top-k families)."""
        return self.gated_sparse_values(kept, support, self.magnitude)

    def sparse_penalty(self, kept: Tensor, values: Tensor, support: Support, W_dec: Tensor) -> Tensor | None:
        """The penalty from the support alone (equal to :meth:`penalty`), or None to evaluate :meth:`penalty`
        on the dense codes. Default: zero (the top-k families have no penalty)."""
        return kept.new_zeros(())

    def initialise_from_data(self, h: Tensor) -> None:
        """Data-dependent initialisation from a sample of pre-activations ``h`` (default: nothing to do)."""

    def file_tensors(self) -> dict[str, Tensor]:
        """Extra tensors this family stores in ``sae_weights.safetensors`` (SAELens names), detached."""
        return {}

    def load_file_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Inverse of :meth:`file_tensors` (shapes and values already validated by :mod:`rsae.core.io`)."""


class ReLU(Activation):
    """z = max(h, 0) with penalty λ₁ · mean_tokens Σ_j |z_j| (optionally weighted by decoder-row norms).

    SAELens architecture ``standard``. As a gate of :class:`Rational`, ``l1_on="pre_acts"`` puts the L1 on
    max(h, 0) instead of the codes (docs/rsae.md shows it to collapse); the penalty then needs the dense path.
    """

    def __init__(self, l1_coefficient: float, weight_by_decoder_norm: bool = False, l1_on: str = "codes") -> None:
        super().__init__()
        self.l1_coefficient = l1_coefficient
        self.weight_by_decoder_norm = weight_by_decoder_norm
        self.l1_on = l1_on

    def forward(self, h: Tensor) -> Tensor:
        return torch.relu(h)

    def gated(self, h: Tensor, magnitude) -> Tensor:
        # = torch.where(h > 0, magnitude(h, None), 0), with the mask inside φ's kernels for the rational
        return magnitude(h, None, positive=True)

    def penalty(self, h: Tensor, z: Tensor, W_dec: Tensor) -> Tensor:
        on = torch.relu(h) if self.l1_on == "pre_acts" else z
        return self.l1_coefficient * _l1(on, W_dec, self.weight_by_decoder_norm)

    def dense_forward(self, h: Tensor, W_dec: Tensor, b_dec: Tensor
                      ) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        if self.l1_on == "pre_acts":
            return super().dense_forward(h, W_dec, b_dec)
        z, x_hat, l1, fired = l1_decode(h, W_dec, b_dec, self.weight_by_decoder_norm, relu=True)
        return z, x_hat, self.l1_coefficient * l1, fired

    def gated_dense_forward(self, h: Tensor, magnitude, W_dec: Tensor, b_dec: Tensor
                            ) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        if self.l1_on == "pre_acts":
            return super().gated_dense_forward(h, magnitude, W_dec, b_dec)
        z, x_hat, l1, fired = l1_decode(self.gated(h, magnitude), W_dec, b_dec, self.weight_by_decoder_norm)
        return z, x_hat, self.l1_coefficient * l1, fired

    @torch.no_grad()
    def select(self, h: Tensor) -> Support | None:
        if self.l1_on == "pre_acts":
            return None
        return _threshold_support(h, lambda rows: rows > 0, self.sparse_max_density)

    def sparse_penalty(self, kept: Tensor, values: Tensor, support: Support, W_dec: Tensor) -> Tensor | None:
        if self.l1_on == "pre_acts":
            return None
        return self.l1_coefficient * _l1_sparse(values, support, W_dec, self.weight_by_decoder_norm)


class JumpReLU(Activation):
    """z = h · H(h − θ_j) with per-latent thresholds θ_j = exp(log_threshold_j) > 0 and an L0 penalty.

    The penalty λ₀ · mean_tokens Σ_j H(h_j − θ_j) and the reconstruction both reach θ through the
    rectangle-kernel straight-through estimator (see the module docstring). SAELens architecture ``jumprelu``,
    file tensor ``threshold`` [d_sae]. As a gate of :class:`Rational`, z = g(h) · H(h − θ), so the STE gives
    ∂z/∂θ = −g(h)/ε · K((h − θ)/ε).
    """

    rational_state_prefix = ""

    def __init__(self, d_sae: int, l0_coefficient: float, bandwidth: float, threshold_init: float) -> None:
        super().__init__()
        self.l0_coefficient = l0_coefficient
        self.bandwidth = bandwidth
        self.log_threshold = nn.Parameter(torch.full((d_sae,), math.log(threshold_init)))

    @property
    def threshold(self) -> Tensor:
        """θ_j = exp(log_threshold_j)."""
        return self.log_threshold.exp()

    def forward(self, h: Tensor) -> Tensor:
        return jumprelu_ste(h, self.threshold.to(h.dtype), self.bandwidth)

    def gated(self, h: Tensor, magnitude) -> Tensor:
        return magnitude(h, None) * step_ste(h, self.threshold.to(h.dtype), self.bandwidth)

    def gated_sparse_values(self, kept: Tensor, support: Support, magnitude) -> Tensor:
        threshold = self.threshold.to(kept.dtype)[support.latents]
        return magnitude(kept, support.latents) * step_ste(kept, threshold, self.bandwidth)

    def penalty(self, h: Tensor, z: Tensor, W_dec: Tensor) -> Tensor:
        return self.l0_coefficient * step_ste(h, self.threshold.to(h.dtype), self.bandwidth).sum(-1).mean()

    def gated_dense_forward(self, h: Tensor, magnitude, W_dec: Tensor, b_dec: Tensor
                            ) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        # gated() and penalty() share the step H(h − θ) (one node; its θ-gradient sums both uses)
        step = step_ste(h, self.threshold.to(h.dtype), self.bandwidth)
        return magnitude(h, None) * step, None, self.l0_coefficient * step.sum(-1).mean(), None

    @torch.no_grad()
    def select(self, h: Tensor) -> Support | None:
        return _jumprelu_support(h, self.threshold.to(h.dtype), self.bandwidth, self.sparse_max_density)

    def sparse_values(self, kept: Tensor, support: Support) -> Tensor:
        return jumprelu_ste(kept, self.threshold.to(kept.dtype)[support.latents], self.bandwidth)

    def sparse_penalty(self, kept: Tensor, values: Tensor, support: Support, W_dec: Tensor) -> Tensor:
        # every entry with H = 1 or a non-zero STE window is in the support, so the sum over it is the full sum
        fired = step_ste(kept, self.threshold.to(kept.dtype)[support.latents], self.bandwidth)
        return self.l0_coefficient * fired.sum() / support.n_rows

    def file_tensors(self) -> dict[str, Tensor]:
        return {"threshold": self.threshold.detach()}

    def load_file_tensors(self, tensors: dict[str, Tensor]) -> None:
        with torch.no_grad():
            self.log_threshold.copy_(tensors["threshold"].log())


class TopK(Activation):
    """Keep the k largest pre-activations of each token (and only positive ones): z = relu(h) on the top-k.

    SAELens architecture ``topk`` (``k`` in cfg.json).
    """

    uses_auxk = True

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, h: Tensor) -> Tensor:
        idx = _topk_indices(h, self.k)
        return torch.zeros_like(h).scatter(-1, idx, self.magnitude(h.gather(-1, idx), idx))

    def gated(self, h: Tensor, magnitude) -> Tensor:
        idx = _topk_indices(h, self.k)
        kept = h.gather(-1, idx)
        return torch.zeros_like(h).scatter(-1, idx, torch.where(kept > 0, magnitude(kept, idx), 0))

    @torch.no_grad()
    def select(self, h: Tensor) -> Support:
        return Support.from_row_indices(_topk_indices(h, self.k), h.shape[-1])


class BatchTopK(Activation):
    """Training: keep the k·B largest positive pre-activations of the whole batch (B tokens); inference
    (``eval()`` mode): z = h · 1[h > θ_j] with the learned inference threshold.

    The threshold is the running mean (then an exponential moving average with momentum m) of the smallest
    kept activation of each training batch (Bussmann et al. 2024): θ ← θ + w (min_kept − θ), w = max(m, 1/t)
    at the t-th update. Stored as ``threshold`` [d_sae] (all entries equal after training here, but any
    per-latent thresholds load, as in SAELens's JumpReLU conversion). SAELens architecture ``batchtopk``.
    """

    uses_auxk = True
    rational_state_prefix = "batch."

    def __init__(self, d_sae: int, k: int, momentum: float) -> None:
        super().__init__()
        self.k = k
        self.momentum = momentum
        self.register_buffer("threshold", torch.zeros(d_sae))
        self.register_buffer("threshold_updates", torch.zeros((), dtype=torch.long))
        self.sync_ranks = False
        """Select over the global batch of all ranks (set by the trainer under torch.distributed)."""

    def batch_mask_indices(self, h: Tensor) -> Tensor:
        """Flat indices of the k·B largest positive entries of ``h`` viewed as [B, d_sae].

        With ``sync_ranks`` (set by the trainer under torch.distributed) B is the global batch of all ranks:
        each rank's k·B largest entries are all-gathered, the (k·B)-th largest of them is the global cut, and
        this rank keeps its entries at or above it."""
        flat = h.reshape(-1)
        _, world = distributed.world() if self.sync_ranks else (0, 1)
        n_keep = self.k * (flat.numel() // h.shape[-1]) * world
        local = torch.topk(flat, min(n_keep, flat.numel()), sorted=False)
        if world == 1:
            return local.indices
        candidates = distributed.all_gather_cat(local.values.detach())
        cut = torch.topk(candidates, min(n_keep, candidates.numel()), sorted=False).values.min()
        return local.indices[local.values >= cut]

    @torch.no_grad()
    def _update_threshold(self, kept: Tensor) -> None:
        positive = kept[kept > 0]
        smallest = positive.min() if positive.numel() else kept.new_tensor(float("inf"))
        if self.sync_ranks:
            smallest = distributed.all_reduce_(smallest.reshape(1).clone(), "min")[0]
        if not torch.isfinite(smallest):
            return
        self.threshold_updates += 1
        weight = max(self.momentum, 1.0 / float(self.threshold_updates))
        self.threshold += weight * (smallest.to(self.threshold.dtype) - self.threshold)

    def gated(self, h: Tensor, magnitude) -> Tensor:
        """Training: the batch top-k (threshold updated); inference: h > θ_j."""
        if self.training:
            idx = self.batch_mask_indices(h)
            kept = h.reshape(-1)[idx]
            self._update_threshold(kept)
            values = torch.where(kept > 0, magnitude(kept, idx % h.shape[-1]), 0)
            return torch.zeros_like(h).reshape(-1).scatter(0, idx, values).reshape(h.shape)
        threshold = torch.clamp(self.threshold, min=0).to(h.dtype)
        return torch.where(h > threshold, magnitude(h, None), 0)

    def forward(self, h: Tensor) -> Tensor:
        return self.gated(h, self.magnitude)

    @torch.no_grad()
    def select(self, h: Tensor) -> Support | None:
        """Training: the batch top-k (threshold updated as in :meth:`forward`); inference: dense path."""
        if not self.training:
            return None
        flat = torch.sort(self.batch_mask_indices(h)).values
        self._update_threshold(h.reshape(-1)[flat])
        return Support.from_flat(flat, h.shape[0], h.shape[-1])

    def file_tensors(self) -> dict[str, Tensor]:
        return {"threshold": self.threshold.detach().clone()}

    def load_file_tensors(self, tensors: dict[str, Tensor]) -> None:
        self.threshold.copy_(tensors["threshold"])
        self.threshold_updates.fill_(1)


class CutoffGate(Activation):
    """Gate on the magnitude itself: z = u · H(u − τ), u = g(h), with one shared learned threshold τ = exp(log_cutoff)
    > 0 (file tensor ``rational_cutoff`` []) and penalty λ₀ · mean_tokens Σ_j H(u_j − τ), τ trained by the STE.
    Its support depends on g, so it always takes the dense path."""

    rational_state_prefix = ""

    def __init__(self, l0_coefficient: float, bandwidth: float, threshold_init: float) -> None:
        super().__init__()
        self.l0_coefficient = l0_coefficient
        self.bandwidth = bandwidth
        self.log_cutoff = nn.Parameter(torch.tensor(math.log(threshold_init)))

    def forward(self, h: Tensor) -> Tensor:
        return self.gated(h, self.magnitude)

    def gated(self, h: Tensor, magnitude) -> Tensor:
        u = magnitude(h, None)
        return u * step_ste(u, self.log_cutoff.exp().to(u.dtype), self.bandwidth)

    def penalty(self, h: Tensor, z: Tensor, W_dec: Tensor) -> Tensor:
        return self.gated_penalty(h, z, W_dec, self.magnitude)

    def gated_penalty(self, h: Tensor, z: Tensor, W_dec: Tensor, magnitude) -> Tensor:
        fired = step_ste(magnitude(h, None), self.log_cutoff.exp().to(h.dtype), self.bandwidth)
        return self.l0_coefficient * fired.sum(-1).mean()

    def gated_dense_forward(self, h: Tensor, magnitude, W_dec: Tensor, b_dec: Tensor
                            ) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        # gated() and gated_penalty() share u = g(h) and the step H(u − τ)
        u = magnitude(h, None)
        step = step_ste(u, self.log_cutoff.exp().to(u.dtype), self.bandwidth)
        return u * step, None, self.l0_coefficient * step.sum(-1).mean(), None

    def file_tensors(self) -> dict[str, Tensor]:
        return {"rational_cutoff": self.log_cutoff.detach().exp()}

    @torch.no_grad()
    def load_file_tensors(self, tensors: dict[str, Tensor]) -> None:
        self.log_cutoff.copy_(tensors["rational_cutoff"].log())


class NoGate(Activation):
    """No hard gate: z = g(h), penalty λ₁ · mean_tokens Σ_j |z_j| (· ‖d_j‖); always the dense path."""

    def __init__(self, l1_coefficient: float, weight_by_decoder_norm: bool = False) -> None:
        super().__init__()
        self.l1_coefficient = l1_coefficient
        self.weight_by_decoder_norm = weight_by_decoder_norm

    def forward(self, h: Tensor) -> Tensor:
        return self.gated(h, self.magnitude)

    def gated(self, h: Tensor, magnitude) -> Tensor:
        return magnitude(h, None)

    def penalty(self, h: Tensor, z: Tensor, W_dec: Tensor) -> Tensor:
        return self.l1_coefficient * _l1(z, W_dec, self.weight_by_decoder_norm)

    def gated_dense_forward(self, h: Tensor, magnitude, W_dec: Tensor, b_dec: Tensor
                            ) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        z, x_hat, l1, fired = l1_decode(magnitude(h, None), W_dec, b_dec, self.weight_by_decoder_norm)
        return z, x_hat, self.l1_coefficient * l1, fired


def make_gate(cfg: SAEConfig) -> Activation:
    """The gate of a rational SAE, ``cfg.rational_gate``, with its settings from ``cfg``: the family of the same name
    (ReLU, JumpReLU, TopK, BatchTopK), :class:`CutoffGate` or :class:`NoGate`."""
    gate = cfg.rational_gate
    if gate == "relu":
        return ReLU(cfg.l1_coefficient, cfg.l1_weight_by_decoder_norm, cfg.rational_l1_on)
    if gate == "jumprelu":
        return JumpReLU(cfg.d_sae, cfg.l0_coefficient, cfg.jumprelu_bandwidth, cfg.threshold_init)
    if gate == "topk":
        return TopK(cfg.k)
    if gate == "batchtopk":
        return BatchTopK(cfg.d_sae, cfg.k, cfg.batchtopk_threshold_momentum)
    if gate == "cutoff":
        return CutoffGate(cfg.l0_coefficient, cfg.jumprelu_bandwidth, cfg.threshold_init)
    if gate == "none":
        return NoGate(cfg.l1_coefficient, cfg.l1_weight_by_decoder_norm)
    raise ConfigError(f"unknown rational gate {gate!r}")


_GATE_KEY = "gate_module."


class Rational(Activation):
    r"""RSAE activation: a hard gate gives the support, the rational φ(h) = C_out · r(h / C_in) the
    magnitudes.

    .. math:: z_j = \mathbb{1}[\text{gate}_j(h)]\;\varphi(h_j),\qquad
              r(t) = \frac{\sum_{i\le m} a_i t^i}{1 + \left|\sum_{1\le j\le n} b_j t^j\right|}

    The gate is an :class:`Activation` (``gate_module``, built by :func:`make_gate` from
    ``SAEConfig.rational_gate`` unless one is passed): its :meth:`~Activation.gated` applies its support to φ, and it
    supplies the sparse-path support, the penalty, its thresholds and their file tensors, so a new gate needs no
    change here. The gates of the config:

    * ``relu``: h > 0, the paper's penalty λ₁ · mean Σ_j |z_j| (· ‖d_j‖) (or, with
      ``rational_l1_on="pre_acts"``, λ₁ · mean Σ_j max(h_j, 0), which docs/rsae.md shows to collapse).
    * ``jumprelu``: h > θ_j with per-latent θ_j (file tensor ``threshold``), penalty λ₀ · mean Σ_j H(h_j − θ_j);
      z = φ(h) · H(h − θ) so the STE gives ∂z/∂θ = −φ(h)/ε · K((h − θ)/ε).
    * ``topk`` / ``batchtopk``: the (batch-)top-k support of h; φ is evaluated on the kept entries only.
    * ``cutoff``: one shared learned threshold τ on the rational's own output, z = u · H(u − τ), u = φ(h)
      (file tensor ``rational_cutoff`` []), penalty λ₀ · mean Σ_j H(u_j − τ).
    * ``none``: no hard gate, z = φ(h) (the paper's reading: the rational approximates the whole gated
      primitive), penalty λ₁ · mean Σ_j |z_j| (· ‖d_j‖).

    With ``SAEConfig.rational_floor`` τ > 0 codes with |z| < τ are set to 0 (an inference floor).

    The state dict keeps the keys of checkpoints written before the gates were modules (``log_threshold``,
    ``log_cutoff``, ``batch.threshold``, see :attr:`Activation.rational_state_prefix`), and those names stay
    readable as attributes (``act.log_threshold``, ``act.batch``).

    Parameters
    ----------
    cfg : SAEConfig
        ``family == "rational"``; the rational's type, initial coefficients and scales, and the gate settings.
    gate : Activation, optional
        The gate; default :func:`make_gate` (cfg).
    """

    def __init__(self, cfg: SAEConfig, gate: Activation | None = None) -> None:
        super().__init__()
        self.gate = cfg.rational_gate
        # registered before φ, so the parameters keep their order (log_threshold first) for saved optimiser states
        self.gate_module = make_gate(cfg) if gate is None else gate
        self.uses_auxk = self.gate_module.uses_auxk
        if cfg.rational_a is not None:
            self.phi = RationalActivation(
                cfg.rational_a,
                cfg.rational_b,
                c_in=cfg.rational_c_in,
                c_out=cfg.rational_c_out,
                d_sae=cfg.d_sae,
                per_latent_scales=cfg.rational_per_latent_scales,
                b0=cfg.rational_b0,
                per_latent_coefficients=cfg.rational_per_latent_coefficients,
                tails=cfg.rational_tails,
            )
        else:
            self.phi = RationalActivation.from_gate(
                cfg.rational_init_gate,
                tuple(cfg.rational_type),
                d_sae=cfg.d_sae,
                per_latent_scales=cfg.rational_per_latent_scales,
                per_latent_coefficients=cfg.rational_per_latent_coefficients,
                tails=cfg.rational_tails,
            )
        # Set the parameters again: the coefficients exactly (RationalActivation keeps them in float64), the
        # scales at the model's precision.
        dtype = getattr(torch, cfg.dtype)
        f64 = torch.float64
        # (per-latent coefficients: every latent starts from the config's shared rational, copied into each row)
        a = torch.as_tensor(cfg.rational_a if cfg.rational_a is not None else self.phi.a.detach(), dtype=f64)
        b = torch.as_tensor(cfg.rational_b if cfg.rational_b is not None else self.phi.b.detach(), dtype=f64)
        b0 = cfg.rational_b0 if cfg.rational_a is not None else float(self.phi.b0.detach().reshape(-1)[0])
        self.floor = cfg.rational_floor
        self.phi.to(dtype)
        with torch.no_grad():
            self.phi.a.copy_(a)
            self.phi.b.copy_(b)
            self.phi.b0.fill_(b0)
            self.phi.log_c_in.fill_(math.log(cfg.rational_c_in))
            self.phi.log_c_out.fill_(math.log(cfg.rational_c_out))
        post_hook = getattr(self, "register_state_dict_post_hook", None) or self._register_state_dict_hook
        post_hook(Rational._legacy_gate_keys)
        self.register_load_state_dict_pre_hook(Rational._current_gate_keys)

    # ------------------------------------------------------------------ legacy layout of the gate's tensors
    def _legacy_prefix(self) -> str:
        prefix = self.gate_module.rational_state_prefix
        return _GATE_KEY if prefix is None else prefix

    @staticmethod
    def _legacy_gate_keys(module: Rational, state_dict, prefix: str, local_metadata) -> None:
        """State-dict hook: ``gate_module.<name>`` → ``<legacy prefix><name>``."""
        legacy = module._legacy_prefix()
        if legacy == _GATE_KEY:
            return
        old = prefix + _GATE_KEY
        items = list(state_dict.items())  # renamed in place, in their order
        state_dict.clear()
        for key, value in items:
            state_dict[prefix + legacy + key[len(old):] if key.startswith(old) else key] = value

    @staticmethod
    def _current_gate_keys(module: Rational, state_dict, prefix: str, *args) -> None:
        """Load pre-hook: the inverse of :meth:`_legacy_gate_keys` for the gate's own tensors."""
        legacy = module._legacy_prefix()
        if legacy == _GATE_KEY:
            return
        names = [name for name, _ in module.gate_module.named_parameters()]
        names += [name for name, _ in module.gate_module.named_buffers()]
        for name in names:
            if prefix + legacy + name in state_dict:
                state_dict[prefix + _GATE_KEY + name] = state_dict.pop(prefix + legacy + name)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            gate = self._modules.get("gate_module")
            legacy = getattr(gate, "rational_state_prefix", None)
            if legacy is not None and legacy == name + ".":
                return gate
            if legacy == "" and (name in gate._parameters or name in gate._buffers):
                return getattr(gate, name)
            raise

    @property
    def sparse_max_density(self) -> float:  # type: ignore[override]
        """That of the gate (which selects the support)."""
        return self.gate_module.sparse_max_density

    @sparse_max_density.setter
    def sparse_max_density(self, value: float) -> None:
        self.gate_module.sparse_max_density = value

    # ------------------------------------------------------------------ activation
    def magnitude(self, values: Tensor, latents: Tensor | None, positive: bool = False) -> Tensor:
        """φ(values) = C_out · r(values / C_in) for gathered pre-activations of latents ``latents``
        (indices of the same shape; ``None`` when ``values`` is a full [..., d_sae] tensor). ``positive``: φ where
        values > 0, else 0, masked inside the fused kernels (:func:`rsae.core.rational.rational_activation`).

        Shared scales and coefficients go through :func:`rsae.core.rational.rational_activation` (overflow-safe
        for any finite input). Per-latent scales and per-latent coefficients are gathered here, one row per
        entry; the fused kernel saturates values and gradients as for a full tensor."""
        phi = self.phi
        if latents is None:
            return phi(values, positive=positive)
        per_scale, per_coef = phi.log_c_in.dim() > 0, phi.per_latent_coefficients
        if not per_scale and not per_coef:
            return rational_activation(values, phi.a, phi.b, phi.log_c_in, phi.log_c_out, phi.b0, phi.tails,
                                       positive=positive)
        # Each gathered entry is its own "latent" of the fused kernel (which saturates values and gradients); the
        # gather's backward sums the per-entry gradients in float64 and saturates them too.
        flat = latents.reshape(-1)

        def take(param: Tensor, per_latent: bool) -> Tensor:
            return _SaturatingGather.apply(param, flat) if per_latent else param

        out = rational_activation(values.reshape(-1), take(phi.a, per_coef), take(phi.b, per_coef),
                                  take(phi.log_c_in, per_scale), take(phi.log_c_out, per_scale),
                                  take(phi.b0, per_coef), phi.tails, positive=positive)
        return out.reshape(values.shape)

    def forward(self, h: Tensor) -> Tensor:
        z = self.gate_module.gated(h, self.magnitude)
        return torch.where(z.abs() >= self.floor, z, 0) if self.floor > 0 else z

    def dense_forward(self, h: Tensor, W_dec: Tensor, b_dec: Tensor
                      ) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        if self.floor > 0:
            return super().dense_forward(h, W_dec, b_dec)
        return self.gate_module.gated_dense_forward(h, self.magnitude, W_dec, b_dec)

    @torch.no_grad()
    def select(self, h: Tensor) -> Support | None:
        """The gate's support, so that φ is evaluated on the selected entries only: always for the top-k gates,
        below ``sparse_max_density`` for the relu (L1 on the codes) and jumprelu gates; None (dense) for the
        cutoff gate, whose support depends on φ itself."""
        return self.gate_module.select(h)

    gathered_min_numel: int = 1 << 15
    """φ on gathered entries (the sparse path's support, the AuxK entries) runs as the fused compiled kernel of
    :mod:`rsae.core.rational` from this many entries on, below that module's general ``min_numel`` (2¹⁸): these
    evaluations repeat every training step (a top-k support of k·B = 32 · 4096 entries is 2¹⁷), so the one-off
    compilation pays, while the eager code is a long chain of elementwise calls (docs/performance.md §2 measures
    the difference)."""

    def _gathered_kernels(self):
        """Within the block, the rational kernels take gathered tensors of ``gathered_min_numel`` or more entries
        fused (forward, and its backward, which runs as its forward did)."""
        return kernel_settings(min_numel=min(self.gathered_min_numel, current_kernel_settings()["min_numel"]))

    def sparse_values(self, kept: Tensor, support: Support) -> Tensor:
        with self._gathered_kernels():
            return self.gate_module.gated_sparse_values(kept, support, self.magnitude)

    def auxk_values(self, kept: Tensor, support: Support) -> Tensor:
        with self._gathered_kernels():
            return super().auxk_values(kept, support)

    def sparse_penalty(self, kept: Tensor, values: Tensor, support: Support, W_dec: Tensor) -> Tensor | None:
        return self.gate_module.sparse_penalty(kept, values, support, W_dec)

    def penalty(self, h: Tensor, z: Tensor, W_dec: Tensor) -> Tensor:
        return self.gate_module.gated_penalty(h, z, W_dec, self.magnitude)

    @torch.no_grad()
    def initialise_from_data(self, h: Tensor) -> None:
        """Set C_in to the 99.9th percentile of |h| over the sample, so the pre-activations that matter
        fall in the design interval t ∈ [−1, 1] of the initial coefficients (and let the gate initialise)."""
        sample = h.detach().abs().flatten().float()
        if sample.numel() > 2**24:
            sample = sample[torch.randperm(sample.numel(), device=sample.device)[: 2**24]]
        scale = float(quantile(sample, 0.999))
        if scale > 0 and math.isfinite(scale):
            self.phi.log_c_in.fill_(math.log(scale))
        self.gate_module.initialise_from_data(h)

    def file_tensors(self) -> dict[str, Tensor]:
        tensors = {
            "rational_a": self.phi.a.detach(),
            "rational_b": self.phi.b.detach(),
            "rational_b0": self.phi.b0.detach(),
            "rational_c_in": self.phi.log_c_in.detach().exp(),
            "rational_c_out": self.phi.log_c_out.detach().exp(),
        }
        return {**tensors, **self.gate_module.file_tensors()}

    @torch.no_grad()
    def load_file_tensors(self, tensors: dict[str, Tensor]) -> None:
        self.phi.a.copy_(tensors["rational_a"])
        self.phi.b.copy_(tensors["rational_b"])
        self.phi.b0.copy_(tensors.get("rational_b0", torch.zeros(())))  # absent in files of the b_0 = 0 form
        self.phi.log_c_in.copy_(tensors["rational_c_in"].log())
        self.phi.log_c_out.copy_(tensors["rational_c_out"].log())
        self.gate_module.load_file_tensors(tensors)


def make_activation(cfg: SAEConfig) -> Activation:
    """Build the activation module of ``cfg.family`` with its settings from ``cfg``."""
    if cfg.family == "relu":
        return ReLU(cfg.l1_coefficient, cfg.l1_weight_by_decoder_norm)
    if cfg.family == "jumprelu":
        return JumpReLU(cfg.d_sae, cfg.l0_coefficient, cfg.jumprelu_bandwidth, cfg.threshold_init)
    if cfg.family == "topk":
        return TopK(cfg.k)
    if cfg.family == "batchtopk":
        return BatchTopK(cfg.d_sae, cfg.k, cfg.batchtopk_threshold_momentum)
    if cfg.family == "rational":
        return Rational(cfg)
    raise ConfigError(f"unknown SAE family {cfg.family!r}")
