"""Streaming metrics equal their one-pass definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rsae.core.metrics import MetricAccumulator, batch_metrics, evaluate_sae
from rsae.core.sae import SAE
from rsae.errors import DataError
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
