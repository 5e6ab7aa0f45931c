r"""The sparse autoencoder module shared by every family.

.. math::
    h = (x - b_\text{dec}) W_\text{enc} + b_\text{enc},\qquad z = \varphi(h),\qquad
    \hat x = z W_\text{dec} + b_\text{dec}

with the SAELens parameter names and shapes W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in],
b_dec [d_in]; φ and the sparsity penalty come from :mod:`rsae.core.activations` (``SAEConfig.family``).

The training loss returned by :meth:`SAE.forward` is

.. math::
    \mathcal L = \underbrace{\tfrac1B\textstyle\sum_b \lVert x_b - \hat x_b\rVert^2}_{\text{mse}}
      + s\,\underbrace{\text{penalty}(h, z)}_{\text{sparsity}}
      + \underbrace{\alpha\,\tfrac1B\textstyle\sum_b \lVert e_b - \hat e_b\rVert^2}_{\text{auxk}},

where s ∈ [0, 1] is the sparsity warm-up scale and the AuxK term (Gao et al. 2024) reconstructs the detached
residual e = x − x̂ from the top-k_aux pre-activations of the dead latents only, ê = z_aux W_dec.

Families whose codes come from a selection (top-k, batch-top-k, and the threshold families below a code density
of ``Activation.sparse_max_density``) are encoded and decoded from their support without a dense code matrix in
the graph (:mod:`rsae.core.sparse`); ``SAE.sparse = False`` forces the dense products. Both give the same
outputs and gradients to rounding (tests/rsae/test_sparse.py; timings in docs/performance.md).

Example
-------
>>> import torch
>>> from rsae.core.config import SAEConfig
>>> from rsae.core.sae import SAE
>>> sae = SAE.from_config(SAEConfig(d_in=8, d_sae=32, family="topk", k=4), seed=0)
>>> out = sae(torch.randn(5, 8))
>>> out.codes.shape, int((out.codes != 0).sum(-1).max()) <= 4
(torch.Size([5, 32]), True)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from rsae.core.activations import Activation, make_activation
from rsae.core.config import SAEConfig
from rsae.core.sparse import Support, encoder_pre_acts, gather_pre_acts, sparse_decode
from rsae.errors import DataError

__all__ = ["Losses", "SAEOutput", "SAE"]


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Losses are reduced in float32 at least (float64 models keep float64)."""
    return torch.promote_types(dtype, torch.float32)


class Losses(NamedTuple):
    """Scalar loss terms of one forward pass (float32, or float64 for float64 models)."""

    total: Tensor
    """mse + sparsity_scale · sparsity + auxk: the quantity the trainer minimises."""
    mse: Tensor
    """Mean over tokens of the squared reconstruction error ‖x − x̂‖² (summed over the d_in dimensions)."""
    sparsity: Tensor
    """The family's penalty times its coefficient (L1 for ReLU, L0 for JumpReLU, 0 for TopK)."""
    auxk: Tensor
    """α · mean over tokens of ‖e − ê‖² on dead latents (0 unless a dead mask was given to a top-k family)."""


class SAEOutput:
    """Everything one forward pass computes: ``x_hat``, ``codes``, ``pre_acts``, ``losses``.

    Unpacks and indexes like the 4-tuple ``(x_hat, codes, pre_acts, losses)`` (``_fields``, ``_asdict``,
    ``_replace`` as a named tuple's). On the sparse path (a family that selects a support, see
    :mod:`rsae.core.sparse`) ``codes`` is built from the support and its values when first read, with the grad and
    inference modes of the forward pass: the same tensor, same values and graph, as building it eagerly; a caller
    that never reads it (the :class:`rsae.core.trainer.Trainer`) never pays for the dense [B, d_sae] matrix.
    :meth:`fired_latents` and :meth:`l0` give what the trainer needs from the support directly, and
    :meth:`fired_latents` returns ``fired`` when the dense path computed it with the codes (the L1-and-decode node
    of :func:`rsae.core.activations.l1_decode`)."""

    __slots__ = ("x_hat", "pre_acts", "losses", "support", "values", "_codes", "_modes", "_fired")
    _fields = ("x_hat", "codes", "pre_acts", "losses")

    x_hat: Tensor
    """Reconstruction x̂ [B, d_in]."""
    pre_acts: Tensor
    """Pre-activations h [B, d_sae]."""
    losses: Losses
    """The loss terms (see :class:`Losses`)."""
    support: Support | None
    """The selected entries of the codes on the sparse path (None: dense path, ``codes`` given)."""
    values: Tensor | None
    """The code values at ``support`` [N] (with their graph), or None."""

    def __init__(
        self,
        x_hat: Tensor,
        codes: Tensor | None,
        pre_acts: Tensor,
        losses: Losses,
        *,
        support: Support | None = None,
        values: Tensor | None = None,
        fired: Tensor | None = None,
    ) -> None:
        if codes is None and (support is None or values is None):
            raise ValueError("SAEOutput needs the codes, or the support and values they are built from")
        self.x_hat = x_hat
        self.pre_acts = pre_acts
        self.losses = losses
        self.support = support
        self.values = values
        self._codes = codes
        self._fired = fired
        self._modes = (torch.is_grad_enabled(), torch.is_inference_mode_enabled())

    @property
    def codes(self) -> Tensor:
        """Sparse codes z [B, d_sae] with exact zeros (on the sparse path built on first access, then kept)."""
        if self._codes is None:
            grad, inference = self._modes
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                self._codes = self.support.to_dense(self.values)
        return self._codes

    def fired_latents(self) -> Tensor:
        """Boolean [d_sae]: the latents with a non-zero code on any token (= ``codes`` [B, d_sae] ``.any(0)``),
        from the support alone on the sparse path. No graph."""
        with torch.no_grad():
            if self._fired is not None:  # computed with the codes (the dense ReLU path)
                return self._fired
            if self._codes is not None or self.support is None:
                return self.codes.reshape(-1, self.codes.shape[-1]).any(0)
            nonzero = self.values != 0
            if nonzero.device.type == "cpu":  # max of 0/1 per latent (the bool viewed as uint8: no copy)
                fired = torch.zeros(self.support.n_cols, dtype=torch.uint8)
                return fired.scatter_reduce_(0, self.support.latents, nonzero.view(torch.uint8), "amax").bool()
            counts = torch.zeros(self.support.n_cols, dtype=torch.int32, device=nonzero.device)
            return counts.index_add_(0, self.support.latents, nonzero.to(torch.int32)) > 0

    def l0(self) -> Tensor:
        """Mean number of non-zero codes per token, float32 0-d (= ``(codes != 0).sum(-1).float().mean()``, the
        same float32 reduction of the same per-token counts), from the support alone on the sparse path."""
        with torch.no_grad():
            if self._codes is not None or self.support is None:
                return (self.codes != 0).sum(-1).float().mean()
            nonzero = (self.values != 0).to(torch.int64)
            counts = torch.zeros(self.support.n_rows, dtype=torch.int64, device=nonzero.device)
            return counts.index_add_(0, self.support.rows, nonzero).float().mean()

    def __len__(self) -> int:
        return len(self._fields)

    def __iter__(self) -> Iterator[Any]:
        return (getattr(self, name) for name in self._fields)

    def __getitem__(self, index: int | slice) -> Any:
        names = self._fields[index]
        return tuple(getattr(self, name) for name in names) if isinstance(index, slice) else getattr(self, names)

    def _asdict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._fields}

    def _replace(self, **changes: Any) -> SAEOutput:
        unknown = set(changes) - set(self._fields)
        if unknown:
            raise ValueError(f"SAEOutput has no field(s) {sorted(unknown)}; fields: {list(self._fields)}")
        if "codes" in changes:  # given codes replace the support they would have been built from
            fields = {**self._asdict(), **changes}
            return SAEOutput(*(fields[name] for name in self._fields))
        return SAEOutput(changes.get("x_hat", self.x_hat), self._codes, changes.get("pre_acts", self.pre_acts),
                         changes.get("losses", self.losses), support=self.support, values=self.values,
                         fired=self._fired)

    def __repr__(self) -> str:
        codes = "<not built: sparse support>" if self._codes is None else repr(self._codes)
        return (f"SAEOutput(x_hat={self.x_hat!r}, codes={codes}, pre_acts={self.pre_acts!r}, "
                f"losses={self.losses!r})")


class SAE(nn.Module):
    """Sparse autoencoder with SAELens parameter names; the family lives in ``self.activation``.

    Parameters
    ----------
    cfg : SAEConfig
        Sizes, family and its settings, dtype and device.
    activation : Activation, optional
        A ready activation module (default: ``make_activation(cfg)``).

    Notes
    -----
    ``encode`` honours the module's mode: BatchTopK uses the batch-level top-k in ``train()`` mode and its
    inference threshold in ``eval()`` mode. Models returned by :func:`rsae.core.io.load_sae` are in ``eval()``
    mode."""

    def __init__(self, cfg: SAEConfig, activation: Activation | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        dtype = getattr(torch, cfg.dtype)
        self.W_enc = nn.Parameter(torch.zeros(cfg.d_in, cfg.d_sae, dtype=dtype))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, dtype=dtype))
        self.W_dec = nn.Parameter(torch.zeros(cfg.d_sae, cfg.d_in, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, dtype=dtype))
        self.activation = activation if activation is not None else make_activation(cfg)
        self.sparse = True
        """Take the sparse path (rsae.core.sparse) in :meth:`forward` when the family selects a support;
        False forces the dense products (same results to rounding; for benchmarks and checks)."""
        self.activation.to(dtype=dtype)
        if cfg.family == "rational" and cfg.rational_a is None:
            # Record the coefficients the gate's fit produced, so the config alone rebuilds this model.
            # (per-latent coefficients start with every row equal to the fit: row 0 is it)
            phi = self.activation.phi
            first = (lambda x: x[0]) if phi.per_latent_coefficients else (lambda x: x)
            self.cfg = cfg.replace(
                rational_a=tuple(first(phi.a.detach()).double().tolist()),
                rational_b=tuple(first(phi.b.detach()).double().tolist()),
                rational_b0=float(first(phi.b0.detach())),
            )

    @classmethod
    def from_config(cls, cfg: SAEConfig, seed: int = 0) -> SAE:
        """Build and initialise an SAE on ``cfg.device``.

        Initialisation: decoder rows drawn uniformly on the unit sphere (seeded CPU generator, so the
        weights do not depend on the device), W_enc = W_decᵀ (tied start), b_enc = b_dec = 0."""
        sae = cls(cfg)
        generator = torch.Generator().manual_seed(seed)
        directions = torch.randn(cfg.d_sae, cfg.d_in, generator=generator, dtype=torch.float64)
        directions /= directions.norm(dim=1, keepdim=True)
        with torch.no_grad():
            sae.W_dec.copy_(directions)
            sae.W_enc.copy_(directions.T)
        return sae.to(cfg.device)

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return self.W_enc.device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the parameters."""
        return self.W_enc.dtype

    def pre_acts(self, x: Tensor) -> Tensor:
        """h = (x − b_dec) W_enc + b_enc (b_dec subtracted only when ``cfg.apply_b_dec_to_input``).

        ``x`` [..., d_in] of any floating dtype is cast to the model's dtype (SAELens does the same), so a
        bfloat16 SAE takes float32 activations."""
        if x.shape[-1:] != (self.cfg.d_in,) or not x.is_floating_point():
            raise DataError(
                f"the SAE takes floating-point inputs [..., d_in = {self.cfg.d_in}], got {x.dtype} {tuple(x.shape)}"
            )
        x = x.to(self.dtype)
        b_dec = self.b_dec if self.cfg.apply_b_dec_to_input else None
        if torch.is_autocast_enabled(x.device.type):
            return (x if b_dec is None else x - b_dec) @ self.W_enc + self.b_enc
        return encoder_pre_acts(x.reshape(-1, x.shape[-1]), b_dec, self.W_enc, self.b_enc).reshape(
            *x.shape[:-1], self.cfg.d_sae)

    def encode(self, x: Tensor) -> Tensor:
        """Sparse codes z = φ(h(x)) [..., d_sae] with exact zeros."""
        return self.activation(self.pre_acts(x))

    def decode(self, z: Tensor) -> Tensor:
        """Reconstruction x̂ = z W_dec + b_dec [..., d_in]."""
        return z @ self.W_dec + self.b_dec

    def forward(
        self,
        x: Tensor,
        *,
        dead_mask: Tensor | None = None,
        sparsity_scale: float | Tensor = 1.0,
        auxk_coefficient: float = 0.0,
        auxk_k: int | None = None,
    ) -> SAEOutput:
        """Encode, decode and compute the loss terms on a batch ``x`` [B, d_in].

        Parameters
        ----------
        dead_mask : Tensor, optional
            Boolean [d_sae], True for dead latents; enables the AuxK term for top-k style families.
        sparsity_scale : float or 0-d Tensor
            Multiplier s of the sparsity penalty (the trainer's warm-up times its L0-target multiplier).
        auxk_coefficient : float
            α of the AuxK term.
        auxk_k : int, optional
            k_aux, the number of dead latents used per token (default d_in // 2).
        """
        b_dec = self.b_dec if self.cfg.apply_b_dec_to_input else None
        h = self.pre_acts(x)
        support = self.activation.select(h.detach()) if self.sparse and h.dim() == 2 else None
        fired = None
        if support is None:
            z, x_hat, sparsity, fired = self.activation.dense_forward(h, self.W_dec, self.b_dec)
            if x_hat is None:
                x_hat = self.decode(z)
        else:
            # Sparse path: the codes' entries are gathered from h without its graph, so neither the encoder's
            # nor the decoder's backward forms a dense [B, d_sae] product (rsae.core.sparse).
            kept = gather_pre_acts(x, b_dec, self.W_enc, self.b_enc, h.detach(), support)
            values = self.activation.sparse_values(kept, support)
            x_hat = sparse_decode(values, support, self.W_dec) + self.b_dec
            z = None  # built from (support, values) when SAEOutput.codes is read
            sparsity = self.activation.sparse_penalty(kept, values, support, self.W_dec)
            if sparsity is None:  # the penalty needs the dense codes
                z = support.to_dense(values)
                sparsity = self.activation.penalty(h.detach(), z, self.W_dec)
        acc = _accumulation_dtype(x_hat.dtype)
        mse = (x_hat.to(acc) - x.to(acc)).pow(2).sum(-1).mean()
        sparsity = sparsity.to(acc)
        auxk = self._auxk(x, b_dec, x_hat, h, dead_mask, auxk_coefficient, auxk_k)
        total = mse + sparsity_scale * sparsity + auxk
        losses = Losses(total, mse, sparsity, auxk)
        if support is None:
            return SAEOutput(x_hat, z, h, losses, fired=fired)
        return SAEOutput(x_hat, z, h, losses, support=support, values=values)

    def _auxk(
        self,
        x: Tensor,
        b_dec: Tensor | None,
        x_hat: Tensor,
        h: Tensor,
        dead_mask: Tensor | None,
        coefficient: float,
        k_aux: int | None,
    ) -> Tensor:
        """α · mean ‖e − ê‖², ê decoded sparsely from the top-k_aux dead latents' pre-activations."""
        zero = x.new_zeros((), dtype=_accumulation_dtype(x_hat.dtype))
        if dead_mask is None or coefficient == 0 or not self.activation.uses_auxk:
            return zero
        n_dead = int(dead_mask.sum())
        if n_dead == 0:
            return zero
        k = min(k_aux if k_aux is not None else max(self.cfg.d_in // 2, 1), n_dead)
        h_flat = h.detach().reshape(-1, h.shape[-1])
        masked = torch.where(dead_mask, h_flat, torch.finfo(h.dtype).min)
        support = Support.from_row_indices(torch.topk(masked, k, dim=-1, sorted=False).indices, h.shape[-1])
        kept = gather_pre_acts(x.reshape(-1, x.shape[-1]), b_dec, self.W_enc, self.b_enc, h_flat, support)
        e_hat = sparse_decode(self.activation.auxk_values(kept, support), support, self.W_dec)
        acc = _accumulation_dtype(x_hat.dtype)
        residual = (x - x_hat).detach().to(acc).reshape(e_hat.shape)
        return coefficient * e_hat.to(acc).sub(residual).pow(2).sum(-1).mean()

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Rescale every decoder row to unit norm (rows of norm 0 are left alone)."""
        norms = self.W_dec.norm(dim=1, keepdim=True)
        self.W_dec.div_(torch.where(norms > 0, norms, torch.ones_like(norms)))

    @torch.no_grad()
    def remove_parallel_decoder_grad_(self) -> None:
        """Project out of each decoder row's gradient its component along the (unit) row: g ← g − (g·d) d."""
        if self.W_dec.grad is None:
            return
        unit = self.W_dec / self.W_dec.norm(dim=1, keepdim=True).clamp_min(torch.finfo(self.W_dec.dtype).tiny)
        parallel = (self.W_dec.grad * unit).sum(dim=1, keepdim=True)
        self.W_dec.grad.sub_(parallel * unit)
