r"""Synthetic activations with known features in superposition, and metrics against the truth.

Model (Sharkey et al. 2022, "Taking features out of superposition with sparse autoencoders"; the same
ingredients as SynthSAEBench): F unit feature directions f_i ∈ R^d with F > d, drawn uniformly on the sphere.
A token is

.. math:: x = \sum_{i=1}^{F} s_i\, c_i\, f_i + \sigma\,\xi,\qquad
          s_i \sim \text{Bernoulli}(p_i),\ c_i = |\mu + \tau\,\eta_i|,\ \xi, \eta_i \sim \mathcal N(0, 1),

with Zipf firing probabilities p_i ∝ (i + 1)^{−α} scaled so that Σ_i p_i equals the requested true L0
(clipped at 1). Optional correlation: the firing indicators come from a Gaussian copula — features are split
into groups of ``group_size`` and s_i = 1[g_i < Φ⁻¹(p_i)] with g_i = √ρ · u_group + √(1 − ρ) · e_i — which
keeps every marginal p_i and correlates features of a group.

Tokens are generated in fixed blocks of 4096 rows from the seed and the block index, so the source is
deterministic, random-access and needs no memory beyond a block (:class:`SyntheticSource`).

Metrics against the truth, for a learned decoder W_dec [d_sae, d] (rows = latent directions):

* MMCS = (1/F) Σ_i max_j cos(f_i, W_dec[j]) — mean max cosine similarity.
* matched recovery: a one-to-one assignment of true features to latents maximising the summed cosine
  (Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``); reports the mean matched cosine and the
  fraction of true features whose matched cosine is ≥ 0.9.

Example
-------
>>> from rsae.experiments.synthetic import SyntheticConfig, SyntheticSource, mmcs
>>> src = SyntheticSource(SyntheticConfig(d_in=16, n_features=64, true_l0=3.0), n_tokens=10_000)
>>> x = src.sample(2000)
>>> round(float(mmcs(src.features, src.features)), 6)
1.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.special import ndtri
from torch import Tensor

from rsae.core.data import BatchSource, TensorSource
from rsae.errors import ConfigError

__all__ = ["SyntheticConfig", "SyntheticSource", "mmcs", "feature_recovery"]

_BLOCK = 4096


@dataclass(frozen=True)
class SyntheticConfig:
    """Ground-truth generator settings (defaults sized so every family trains in well under 2 CPU-minutes)."""

    d_in: int = 64
    """Dimension d of the activations."""

    n_features: int = 512
    """Number F of true features (> d_in puts them in superposition)."""

    true_l0: float = 5.0
    """Expected number of active features per token, Σ_i p_i."""

    zipf_exponent: float = 0.5
    """α in p_i ∝ (i + 1)^{−α}: 0 gives equal probabilities, larger values a longer tail of rare features."""

    magnitude_mean: float = 1.0
    """μ of the active magnitudes c_i = |μ + τ η|."""

    magnitude_std: float = 0.25
    """τ of the active magnitudes."""

    correlation: float = 0.0
    """ρ ∈ [0, 1): correlation of the Gaussian copula within a group of features (0: independent firing)."""

    group_size: int = 8
    """Features per correlated group (used when ``correlation`` > 0)."""

    noise_std: float = 0.0
    """σ of isotropic Gaussian noise added to every token."""

    seed: int = 0
    """Seed of the features and of every token."""

    def __post_init__(self) -> None:
        if self.d_in <= 0 or self.n_features <= 0 or self.group_size <= 0:
            raise ConfigError("d_in, n_features and group_size must be positive integers")
        if not 0 < self.true_l0 <= self.n_features:
            raise ConfigError(f"true_l0 must lie in (0, n_features], got {self.true_l0}")
        if not 0 <= self.correlation < 1:
            raise ConfigError(f"correlation must lie in [0, 1), got {self.correlation}")
        if self.zipf_exponent < 0 or self.magnitude_std < 0 or self.noise_std < 0:
            raise ConfigError("zipf_exponent, magnitude_std and noise_std must be >= 0")

    def probabilities(self) -> np.ndarray:
        """Firing probabilities p_i: Zipf, scaled to Σ p_i = true_l0 (clipped at 1, excess re-spread)."""
        raw = (np.arange(self.n_features) + 1.0) ** (-self.zipf_exponent)
        p = raw * self.true_l0 / raw.sum()
        while (p > 1).any():
            fixed = p >= 1
            p[fixed] = 1.0
            free = ~fixed
            if not free.any():
                break
            p[free] *= (self.true_l0 - fixed.sum()) / p[free].sum()
        return np.minimum(p, 1.0)


class SyntheticSource(BatchSource):
    """A deterministic, random-access source of ``n_tokens`` synthetic tokens (see the module docstring).

    Attributes
    ----------
    features : Tensor
        True feature directions f_i [n_features, d_in], unit norm.
    probabilities : Tensor
        Firing probabilities p_i [n_features].
    true_l0 : float
        Σ_i p_i, the expected number of active features per token.
    """

    def __init__(self, cfg: SyntheticConfig, n_tokens: int = 1 << 20) -> None:
        if n_tokens <= 0:
            raise ConfigError(f"n_tokens must be positive, got {n_tokens}")
        self.cfg = cfg
        self.n_tokens = n_tokens
        self.d_in = cfg.d_in
        generator = torch.Generator().manual_seed(cfg.seed)
        features = torch.randn(cfg.n_features, cfg.d_in, generator=generator, dtype=torch.float64)
        self.features = (features / features.norm(dim=1, keepdim=True)).float()
        p = cfg.probabilities()
        self.probabilities = torch.from_numpy(p).float()
        self.true_l0 = float(p.sum())
        self._gauss_threshold = torch.from_numpy(ndtri(p)).float()
        self.meta = {"synthetic": {"d_in": cfg.d_in, "n_features": cfg.n_features, "true_l0": cfg.true_l0}}

    def block(self, index: int, with_coefficients: bool = False) -> tuple[Tensor, Tensor | None]:
        """Tokens of block ``index`` (rows index·4096 …) and, if asked, their true coefficients
        [rows, n_features] (dense; ``None`` otherwise)."""
        cfg = self.cfg
        rows = min(_BLOCK, self.n_tokens - index * _BLOCK)
        seed = int(np.random.SeedSequence([cfg.seed, 1, index]).generate_state(1)[0])
        g = torch.Generator().manual_seed(seed)
        if cfg.correlation > 0:
            n_groups = math.ceil(cfg.n_features / cfg.group_size)
            shared = torch.randn(rows, n_groups, generator=g).repeat_interleave(cfg.group_size, dim=1)
            own = torch.randn(rows, cfg.n_features, generator=g)
            latent = (
                math.sqrt(cfg.correlation) * shared[:, : cfg.n_features]
                + math.sqrt(1 - cfg.correlation) * own
            )
            fires = latent < self._gauss_threshold
        else:
            fires = torch.rand(rows, cfg.n_features, generator=g) < self.probabilities
        token, feature = fires.nonzero(as_tuple=True)
        magnitudes = (cfg.magnitude_mean + cfg.magnitude_std * torch.randn(token.numel(), generator=g)).abs()
        coefficients = torch.zeros(rows, cfg.n_features)
        coefficients[token, feature] = magnitudes
        x = coefficients @ self.features
        if cfg.noise_std > 0:
            x += cfg.noise_std * torch.randn(rows, cfg.d_in, generator=g)
        return x, (coefficients if with_coefficients else None)

    def _segments(self) -> list[tuple[int, int, int]]:
        return [(0, 0, self.n_tokens)]

    def _read(self, segment: int, start: int, stop: int) -> Tensor:
        parts = []
        for index in range(start // _BLOCK, (stop - 1) // _BLOCK + 1):
            x, _ = self.block(index)
            lo = max(start - index * _BLOCK, 0)
            hi = min(stop - index * _BLOCK, x.shape[0])
            parts.append(x[lo:hi])
        return torch.cat(parts)

    def _gather(self, segment: int, rows: np.ndarray) -> Tensor:
        out = torch.empty(len(rows), self.d_in)
        blocks = rows // _BLOCK
        for index in np.unique(blocks):
            x, _ = self.block(int(index))
            where = np.nonzero(blocks == index)[0]
            out[torch.from_numpy(where)] = x[torch.from_numpy(rows[where] - index * _BLOCK)]
        return out

    def empirical_l0(self, n_blocks: int = 4) -> float:
        """Mean number of active true features per token over the first ``n_blocks`` blocks."""
        counts = [
            (self.block(i, with_coefficients=True)[1] != 0).sum(-1).float()
            for i in range(min(n_blocks, self._n_blocks()))
        ]
        return float(torch.cat(counts).mean())

    def sample(self, n: int, seed: int = 0) -> Tensor:
        """``n`` tokens: the first ``n`` rows of randomly chosen (seeded) distinct blocks.

        Tokens are i.i.d. within and across blocks, so this is a uniform i.i.d. sample of the source's
        distribution while generating only ⌈n / 4096⌉ blocks (the base class would generate every block
        that a scattered index touches).
        """
        if not 0 < n <= self.n_tokens:
            raise ConfigError(f"cannot sample {n} tokens from a source of {self.n_tokens}")
        order = np.random.default_rng(seed).permutation(self._n_blocks())
        parts, have = [], 0
        for index in order:
            x, _ = self.block(int(index))
            parts.append(x[: n - have])
            have += parts[-1].shape[0]
            if have == n:
                break
        return torch.cat(parts)

    def materialize(self) -> TensorSource:
        """Generate every token once and hold them in memory (fast repeated epochs for small sources)."""
        return TensorSource(torch.cat([self.block(i)[0] for i in range(self._n_blocks())]))

    def _n_blocks(self) -> int:
        return math.ceil(self.n_tokens / _BLOCK)


def _cosines(features: Tensor, decoder: Tensor) -> Tensor:
    f = features.double()
    d = decoder.detach().double().cpu()
    f = f / f.norm(dim=1, keepdim=True).clamp_min(1e-300)
    d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return f @ d.T


def mmcs(features: Tensor, decoder: Tensor) -> float:
    """Mean over true features of the maximum cosine similarity with any decoder row.

    Parameters
    ----------
    features : Tensor
        True directions [n_features, d_in].
    decoder : Tensor
        Learned directions [d_sae, d_in] (an SAE's ``W_dec``).
    """
    return float(_cosines(features, decoder).max(dim=1).values.mean())


def feature_recovery(features: Tensor, decoder: Tensor, threshold: float = 0.9) -> dict[str, float]:
    """One-to-one matching of true features to latents (Hungarian algorithm on the cosine matrix).

    Returns
    -------
    dict
        ``matched_cosine``: mean cosine of the matched pairs over all true features (a feature left unmatched
        because d_sae < n_features counts 0); ``recovered_fraction``: fraction of true features whose matched
        cosine is ≥ ``threshold``; ``mmcs``: the unmatched mean max cosine for comparison.
    """
    cos = _cosines(features, decoder)
    rows, cols = linear_sum_assignment(cos.numpy(), maximize=True)
    matched = torch.zeros(cos.shape[0], dtype=torch.float64)
    matched[torch.from_numpy(rows)] = cos[torch.from_numpy(rows), torch.from_numpy(cols)]
    return {
        "matched_cosine": float(matched.mean()),
        "recovered_fraction": float((matched >= threshold).double().mean()),
        "mmcs": float(cos.max(dim=1).values.mean()),
    }
