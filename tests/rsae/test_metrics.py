"""Streaming metrics equal their one-pass definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rsae.core.metrics import MetricAccumulator, batch_metrics, evaluate_sae, quantile
from rsae.core.sae import SAE
from rsae.errors import ConfigError, DataError
from tests.rsae.conftest import make_config


def test_streaming_equals_one_pass_definitions() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(500, 7))
    x_hat = x + rng.normal(0, 0.5, size=x.shape)
    codes = np.where(rng.random((500, 30)) < 0.1, rng.normal(size=(500, 30)), 0.0)
    codes[:, 29] = 0.0
    acc = MetricAccumulator()
    for start in range(0, 500, 77):
        sl = slice(start, start + 77)
        acc.update(torch.tensor(x[sl]), torch.tensor(x_hat[sl]), torch.tensor(codes[sl]))
    out = acc.compute()
    sse = ((x - x_hat) ** 2).sum()
    assert out["mse"] == pytest.approx(sse / 500, rel=1e-12)
    assert out["mse_per_element"] == pytest.approx(sse / 3500, rel=1e-12)
    assert out["fvu"] == pytest.approx(sse / ((x - x.mean(0)) ** 2).sum(), rel=1e-10)
    assert out["fvu_uncentred"] == pytest.approx(sse / (x**2).sum(), rel=1e-12)
    assert out["explained_variance"] == pytest.approx(1 - out["fvu"])
    assert out["l0"] == pytest.approx((codes != 0).sum(-1).mean())
    assert out["dead_latents"] == 1 and out["alive_fraction"] == pytest.approx(29 / 30)
    cos = (x * x_hat).sum(-1) / np.linalg.norm(x, axis=-1) / np.linalg.norm(x_hat, axis=-1)
    assert out["cosine_similarity"] == pytest.approx(cos.mean(), rel=1e-12)
    ratio = np.linalg.norm(x_hat, axis=-1) / np.linalg.norm(x, axis=-1)
    assert out["l2_ratio"] == pytest.approx(ratio.mean(), rel=1e-12)
    assert batch_metrics(torch.tensor(x), torch.tensor(x_hat), torch.tensor(codes))["fvu"] == pytest.approx(
        out["fvu"], rel=1e-10
    )


def test_l0_counts_tiny_values() -> None:
    codes = torch.tensor([[1e-30, 0.0, -1e-38], [0.0, 0.0, 0.0]])
    out = batch_metrics(torch.ones(2, 2), torch.ones(2, 2), codes)
    assert out["l0"] == 1.0 and out["mse"] == 0.0


def test_compute_without_data_raises() -> None:
    with pytest.raises(DataError):
        MetricAccumulator().compute()


def test_evaluate_sae_streams_and_restores_mode() -> None:
    sae = SAE.from_config(make_config("topk"), seed=0)
    sae.train()
    x = torch.randn(300, sae.cfg.d_in)
    out = evaluate_sae(sae, x, batch_size=64)
    assert sae.training and out["n_tokens"] == 300 and out["l0"] <= 3
    with torch.no_grad():
        sae.eval()
        codes = sae.encode(x)
        ref = batch_metrics(x, sae.decode(codes), codes)
    assert out["mse"] == pytest.approx(ref["mse"], rel=1e-6)
    assert evaluate_sae(sae, x, batch_size=64, max_tokens=100)["n_tokens"] == 100


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 3000), q=st.floats(0.0, 1.0), ties=st.booleans(), double=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_quantile_equals_torch_quantile_bit_for_bit(n, q, ties, double, seed):
    g = torch.Generator().manual_seed(seed)
    dtype = torch.float64 if double else torch.float32
    x = torch.randint(-3, 4, (n,), generator=g).to(dtype) if ties else torch.randn(n, generator=g, dtype=dtype)
    assert torch.equal(quantile(x, q), torch.quantile(x, q))


def test_quantile_beyond_torch_limit_and_bad_input():
    x = torch.arange(2**24 + 3, dtype=torch.float64)  # torch.quantile refuses more than 2**24 entries
    assert float(quantile(x, 0.5)) == (2**24 + 2) / 2
    assert float(quantile(x.flip(0), 1.0)) == 2**24 + 2
    with pytest.raises(DataError, match="NaN"):
        quantile(torch.tensor([1.0, float("nan")]), 0.5)
    with pytest.raises(DataError, match="empty"):
        quantile(torch.zeros(0), 0.5)
    with pytest.raises(ConfigError):
        quantile(torch.zeros(3), 1.5)


def test_evaluate_sae_l0_eps_counts_magnitudes_above_a_fraction_of_the_max():
    torch.manual_seed(0)
    sae = SAE.from_config(make_config("relu", d_in=8, d_sae=32), seed=0)
    x = torch.randn(1000, 8)
    out = evaluate_sae(sae, x, batch_size=128, l0_eps=0.01)
    z = sae.encode(x).detach().abs()
    assert out["l0_eps"] == float((z > 0.01 * z.max()).sum()) / 1000
    assert 0 < out["l0_eps"] < out["l0"]
    assert evaluate_sae(sae, x, l0_eps=0.0)["l0_eps"] == out["l0"]
    assert "l0_eps" not in evaluate_sae(sae, x)
    with torch.no_grad():
        sae.b_enc.fill_(-1e6)  # all codes zero
    assert evaluate_sae(sae, x, l0_eps=0.25)["l0_eps"] == 0.0
    with pytest.raises(ConfigError):
        evaluate_sae(sae, x, l0_eps=1.0)
