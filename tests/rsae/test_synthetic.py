"""Synthetic ground truth: probabilities, true L0, determinism, and the recovery metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rsae.errors import ConfigError
from rsae.experiments.synthetic import SyntheticConfig, SyntheticSource, feature_recovery, mmcs


def test_probabilities_are_zipf_and_sum_to_true_l0() -> None:
    cfg = SyntheticConfig(d_in=8, n_features=50, true_l0=4.0, zipf_exponent=1.0)
    p = cfg.probabilities()
    assert p.sum() == pytest.approx(4.0)
    np.testing.assert_allclose(p[0] / p[9], 10.0)
    clipped = SyntheticConfig(d_in=8, n_features=10, true_l0=5.0, zipf_exponent=3.0).probabilities()
    assert clipped.max() == 1.0 and clipped.sum() == pytest.approx(5.0)


@pytest.mark.parametrize("correlation", [0.0, 0.6])
def test_empirical_l0_matches_and_features_are_in_superposition(correlation: float) -> None:
    src = SyntheticSource(
        SyntheticConfig(d_in=16, n_features=64, true_l0=3.0, correlation=correlation), n_tokens=16384
    )
    assert src.features.shape == (64, 16)
    torch.testing.assert_close(src.features.norm(dim=1), torch.ones(64))
    assert src.empirical_l0() == pytest.approx(3.0, rel=0.05)


def test_correlation_correlates_firing_within_groups() -> None:
    cfg = SyntheticConfig(
        d_in=8, n_features=16, true_l0=4.0, zipf_exponent=0.0, correlation=0.8, group_size=4
    )
    _, coeffs = SyntheticSource(cfg, n_tokens=4096).block(0, with_coefficients=True)
    fires = (coeffs != 0).float()
    corr = torch.corrcoef(fires.T)
    assert corr[0, 1] > 0.3 and abs(float(corr[0, 8])) < 0.1


def test_tokens_are_deterministic_and_random_access() -> None:
    src = SyntheticSource(SyntheticConfig(d_in=8, n_features=32, true_l0=2.0, noise_std=0.01), n_tokens=9000)
    ordered = torch.cat(list(src.iter_batches(1000, shuffle=False)))
    again = torch.cat(list(src.iter_batches(777, shuffle=False)))
    assert torch.equal(ordered, again) and ordered.shape == (9000, 8)
    x, coeffs = src.block(1, with_coefficients=True)
    torch.testing.assert_close(ordered[4096:8192], x)
    torch.testing.assert_close(x, coeffs @ src.features, atol=0.1, rtol=0)
    assert src.sample(5000, seed=1).shape == (5000, 8)


def test_mmcs_and_matching() -> None:
    f = torch.eye(4)
    assert mmcs(f, f[[2, 0, 3, 1]] * 3.0) == pytest.approx(1.0)
    duplicated = torch.stack([f[0], f[0], f[1], f[1]])
    assert mmcs(f, duplicated) == pytest.approx(0.5)
    rec = feature_recovery(f, duplicated)
    assert rec["matched_cosine"] == pytest.approx(0.5)
    assert rec["recovered_fraction"] == pytest.approx(0.5)
    rotated = torch.tensor([[np.cos(0.3), np.sin(0.3), 0, 0]], dtype=torch.float32)
    assert feature_recovery(f, rotated)["matched_cosine"] == pytest.approx(np.cos(0.3) / 4, rel=1e-6)


def test_config_validation() -> None:
    with pytest.raises(ConfigError):
        SyntheticConfig(true_l0=0)
    with pytest.raises(ConfigError):
        SyntheticConfig(correlation=1.0)
