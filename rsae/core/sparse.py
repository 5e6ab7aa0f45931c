r"""Sparse encoder and decoder passes: codes as (row, latent, value) triples, never as a dense [B, d_sae] matrix.

What it computes
----------------
A support S = {(b_n, j_n)} of N selected entries (rows ascending) of the pre-activations
h = x_in W_enc + b_enc [B, d_sae] and values v_n = g(h_{b_n j_n}) give the reconstruction

.. math::
    \hat x_b = b_\text{dec} + \sum_{n:\,b_n = b} v_n\, W_\text{dec}[j_n],

with the backward passes (upstream gradient G = ∂L/∂x̂ [B, d_in] for the decoder, and γ_n = ∂L/∂h_{b_n j_n}
for the encoder)

.. math::
    \frac{\partial L}{\partial v_n} = G_{b_n} \cdot W_\text{dec}[j_n], \qquad
    \frac{\partial L}{\partial W_\text{dec}[j]} = \sum_{n:\,j_n = j} v_n G_{b_n},

    \frac{\partial L}{\partial W_\text{enc}[:, j]} = \sum_{n:\,j_n = j} γ_n\, x_{\text{in}, b_n}, \qquad
    \frac{\partial L}{\partial b_\text{enc}[j]} = \sum_{n:\,j_n = j} γ_n, \qquad
    \frac{\partial L}{\partial x_{\text{in}, b}} = \sum_{n:\,b_n = b} γ_n\, W_\text{enc}[:, j_n].

The sums over a row (x̂, ∂/∂x_in) are weighted bag sums (:func:`torch.nn.functional.embedding_bag`), the sums
over a latent (∂/∂W_dec, ∂/∂W_enc) a sparse COO product Zᵀ·dense, and ∂/∂v a sampled dense-dense product
(:func:`torch.sparse.sampled_addmm` on CPU), so the work is O(N · d_in) instead of the O(B · d_sae · d_in) of
the dense products, on CPU and CUDA alike. The
dense pre-activations h are still formed once (a top-k needs all of them) but without an autograd graph.

This is the custom autograd function of the top-k SAEs of Gao et al. (2024), "Scaling and evaluating sparse
autoencoders" (their kernels), and of EleutherAI's ``sparsify`` (``fused_encoder``/``decoder_impl``), written
here with bag sums so that one code path serves TopK (N = k·B), BatchTopK (N = k·B, uneven rows), the
threshold families (N = the measured support) and AuxK.

Example
-------
>>> import torch
>>> W_dec = torch.randn(6, 3)
>>> support = Support.from_flat(torch.tensor([1, 4, 6 + 2]), n_rows=2, n_cols=6)
>>> values = torch.tensor([0.5, -1.0, 2.0])
>>> dense = torch.zeros(2, 6).index_put_((support.rows, support.latents), values)
>>> torch.allclose(sparse_decode(values, support, W_dec), dense @ W_dec)
True
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Support", "encoder_pre_acts", "gather_pre_acts", "sparse_decode"]


class Support:
    """Positions of the selected entries of a [n_rows, n_cols] code matrix, rows ascending.

    Parameters
    ----------
    rows, latents : Tensor
        int64 [N]: row b_n and column (latent) j_n of each entry; ``rows`` non-decreasing.
    n_rows, n_cols : int
        Shape of the dense code matrix these entries belong to.

    Notes
    -----
    A support is read-only once built: the index tensors derived from it (flat indices, row offsets, the COO and
    CSR index arrays) are computed on first use and kept, since one training step reads them several times (the
    gather, the decode and both backward passes).
    """

    def __init__(self, rows: Tensor, latents: Tensor, n_rows: int, n_cols: int) -> None:
        self.rows = rows
        self.latents = latents
        self.n_rows = n_rows
        self.n_cols = n_cols
        self._flat: Tensor | None = None
        self._offsets: Tensor | None = None
        self._crow: Tensor | None = None
        self._transposed_indices: Tensor | None = None

    @classmethod
    def from_flat(cls, flat: Tensor, n_rows: int, n_cols: int) -> Support:
        """Support from flat indices into the row-major [n_rows, n_cols] matrix, in ascending order."""
        support = cls(torch.div(flat, n_cols, rounding_mode="floor"), flat % n_cols, n_rows, n_cols)
        support._flat = flat
        return support

    @classmethod
    def from_row_indices(cls, idx: Tensor, n_cols: int) -> Support:
        """Support of a per-row selection ``idx`` [n_rows, k] (e.g. the indices of a top-k)."""
        n_rows, k = idx.shape
        rows = torch.arange(n_rows, device=idx.device).repeat_interleave(k)
        support = cls(rows, idx.reshape(-1), n_rows, n_cols)
        support._offsets = torch.arange(0, n_rows * k, k, device=idx.device) if k else rows.new_zeros(n_rows)
        return support

    def __len__(self) -> int:
        return int(self.rows.numel())

    @property
    def flat(self) -> Tensor:
        """Flat row-major indices b_n · n_cols + j_n."""
        if self._flat is None:
            self._flat = self.rows * self.n_cols + self.latents
        return self._flat

    def row_offsets(self) -> Tensor:
        """Start of each row's entries (the ``offsets`` of a bag sum over rows) [n_rows]."""
        if self._offsets is None:
            counts = torch.bincount(self.rows, minlength=self.n_rows)
            self._offsets = torch.cumsum(counts, 0) - counts
        return self._offsets

    def crow_indices(self) -> Tensor:
        """The CSR row pointer [n_rows + 1] of the support (row offsets, then N)."""
        if self._crow is None:
            self._crow = torch.cat([self.row_offsets(), self.rows.new_tensor([len(self)])])
        return self._crow

    def transposed_indices(self) -> Tensor:
        """COO indices [2, N] of the transposed code matrix [n_cols, n_rows]: (j_n, b_n)."""
        if self._transposed_indices is None:
            self._transposed_indices = torch.stack([self.latents, self.rows])
        return self._transposed_indices

    def to_dense(self, values: Tensor) -> Tensor:
        """The [n_rows, n_cols] matrix with ``values`` at the support and exact zeros elsewhere."""
        out = values.new_zeros(self.n_rows * self.n_cols)
        return out.index_put_((self.flat,), values).view(self.n_rows, self.n_cols)


def _bag_sum(table: Tensor, indices: Tensor, offsets: Tensor, weights: Tensor) -> Tensor:
    """out[i] = Σ_{n in bag i} weights[n] · table[indices[n]] (bag i spans offsets[i]:offsets[i+1])."""
    if indices.numel() == 0:
        return table.new_zeros(offsets.numel(), table.shape[1])
    return F.embedding_bag(indices, table, offsets, mode="sum", per_sample_weights=weights.to(table.dtype))


def _transposed_product(support: Support, weights: Tensor, dense: Tensor) -> Tensor:
    """out[j] = Σ_{n: j_n = j} weights[n] · dense[b_n] [n_cols, d]: the product Zᵀ · dense of the sparse code
    matrix Z with a dense [n_rows, d] matrix (a COO product, which groups the entries by latent itself)."""
    if weights.numel() == 0:  # no entries (the CPU kernel below would return its uninitialised input untouched)
        return dense.new_zeros(support.n_cols, dense.shape[1])
    z_t = torch.sparse_coo_tensor(support.transposed_indices(), weights.to(dense.dtype),
                                  (support.n_cols, support.n_rows), check_invariants=False)
    if dense.device.type != "cpu":
        return torch.sparse.mm(z_t, dense)
    # = torch.sparse.mm(z_t, dense), the same CPU kernel, without its second zero fill of the [n_cols, d] result
    # (sparse.mm fills a zeros tensor, then the kernel zeroes its result again; with beta = 0 it reads no input)
    return torch.addmm(dense.new_empty(support.n_cols, dense.shape[1]), z_t, dense, beta=0)


def _sampled_products(grad: Tensor, table: Tensor, support: Support, chunk: int = 1 << 13) -> Tensor:
    """out[n] = grad[b_n] · table[j_n]: the entries of grad tableᵀ at the support (a sampled dense-dense product).

    On CPU :func:`torch.sparse.sampled_addmm` on the support's CSR pattern (it reads the rows in place); on other
    devices a chunked gather-multiply-sum, which their memory bandwidth makes cheap."""
    n = len(support)
    if n == 0:
        return grad.new_zeros(0)
    if grad.device.type == "cpu":
        with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
            warnings.simplefilter("ignore", UserWarning)
            pattern = torch.sparse_csr_tensor(support.crow_indices(), support.latents, grad.new_zeros(n),
                                              size=(support.n_rows, support.n_cols), check_invariants=False)
        # written into the pattern itself (out=): without out= the kernel first copies the pattern to its result
        return torch.sparse.sampled_addmm(pattern, grad, table.T.to(grad.dtype), beta=0.0, out=pattern).values()
    out = grad.new_empty(n)
    for start in range(0, n, chunk):
        s = slice(start, start + chunk)
        out[s] = (grad.index_select(0, support.rows[s]) * table.index_select(0, support.latents[s])).sum(-1)
    return out


class _SparseDecode(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, values: Tensor, W_dec: Tensor, support: Support) -> Tensor:
        ctx.save_for_backward(values, W_dec)
        ctx.support = support
        return _bag_sum(W_dec, support.latents, support.row_offsets(), values)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        values, W_dec = ctx.saved_tensors
        support: Support = ctx.support
        grad = grad.contiguous()
        grad_values = grad_W = None
        if ctx.needs_input_grad[0]:
            grad_values = _sampled_products(grad, W_dec, support).to(values.dtype)
        if ctx.needs_input_grad[1]:
            grad_W = _transposed_product(support, values, grad).to(W_dec.dtype)
        return grad_values, grad_W, None


class _GatherPreActs(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, b_dec: Tensor | None, W_enc: Tensor, b_enc: Tensor, h: Tensor,
                support: Support) -> Tensor:
        ctx.save_for_backward(x if b_dec is None else x - b_dec, W_enc)
        ctx.support = support
        return h.reshape(-1).index_select(0, support.flat)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x_in, W_enc = ctx.saved_tensors
        support: Support = ctx.support
        needs_x, needs_b_dec, needs_W, needs_b = ctx.needs_input_grad[:4]
        grad_x = grad_b_dec = grad_W = grad_b = None
        if needs_x:
            grad_x = _bag_sum(W_enc.T.contiguous(), support.latents, support.row_offsets(), grad).to(x_in.dtype)
        if needs_W:
            grad_W = _transposed_product(support, grad, x_in).T.to(W_enc.dtype)
        if needs_b or needs_b_dec:
            column_sums = grad.new_zeros(support.n_cols).index_add_(0, support.latents, grad).to(W_enc.dtype)
            grad_b = column_sums if needs_b else None
            if needs_b_dec:  # ∂/∂b_dec = −Σ_b ∂L/∂x_in,b = −W_enc (column sums of ∂L/∂h)
                grad_b_dec = -(W_enc @ column_sums)
        return grad_x, grad_b_dec, grad_W, grad_b, None, None


class _EncoderPreActs(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, b_dec: Tensor | None, W_enc: Tensor, b_enc: Tensor) -> Tensor:
        x_in = x if b_dec is None else x - b_dec
        ctx.save_for_backward(x_in, W_enc)
        return torch.addmm(b_enc, x_in, W_enc)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x_in, W_enc = ctx.saved_tensors
        needs_x, needs_b_dec, needs_W, needs_b = ctx.needs_input_grad
        grad_x = grad @ W_enc.T if needs_x else None
        column_sums = grad.sum(0) if needs_b_dec or needs_b else None
        grad_b_dec = None
        if needs_b_dec:
            grad_b_dec = -grad_x.sum(0) if grad_x is not None else -(W_enc @ column_sums)
        grad_W = x_in.T @ grad if needs_W else None
        return grad_x, grad_b_dec, grad_W, column_sums if needs_b else None


def encoder_pre_acts(x: Tensor, b_dec: Tensor | None, W_enc: Tensor, b_enc: Tensor) -> Tensor:
    r"""h = (x − b_dec) W_enc + b_enc for x [B, d_in] (``b_dec=None``: no subtraction).

    The backward forms ∂L/∂b_dec = −W_enc (Σ_b ∂L/∂h_b) from the column sums of ∂L/∂h, a matrix-vector product,
    instead of the [B, d_sae] × [d_sae, d_in] product ∂L/∂x that autograd would compute and then sum (the data
    x needs no gradient), which saves one of the six dense products of a training step. Not used under
    autocast (there the plain expression keeps autocast's casting rules)."""
    return _EncoderPreActs.apply(x, b_dec, W_enc, b_enc)


def sparse_decode(values: Tensor, support: Support, W_dec: Tensor) -> Tensor:
    r"""Σ_n v_n W_dec[j_n] per row: the product of the sparse code matrix with ``W_dec`` [n_cols, d_in].

    Gradients for ``values`` and ``W_dec`` as in the module docstring (only the N selected entries enter)."""
    return _SparseDecode.apply(values, W_dec, support)


def gather_pre_acts(x: Tensor, b_dec: Tensor | None, W_enc: Tensor, b_enc: Tensor, h: Tensor,
                    support: Support) -> Tensor:
    r"""The entries h_{b_n j_n} of h = (x − b_dec) W_enc + b_enc at the support, with a backward that uses only
    them (∂L/∂b_dec = −W_enc Σ_n γ_n e_{j_n}, a matrix-vector product).

    Parameters
    ----------
    x : Tensor
        Encoder input [B, d_in].
    b_dec : Tensor or None
        Subtracted from x first (None: nothing subtracted).
    W_enc, b_enc : Tensor
        Encoder weights [d_in, d_sae] and bias [d_sae].
    h : Tensor
        The pre-activations [B, d_sae], already computed (without a graph); the forward only gathers from it.
    support : Support
        The selected entries.
    """
    return _GatherPreActs.apply(x, b_dec, W_enc, b_enc, h, support)
