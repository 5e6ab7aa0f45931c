"""Distributed harvest: two gloo CPU processes write disjoint contexts into their own shards of one store.

The test launches this file twice as a script with torchrun's environment variables (as
``tests/rsae/test_distributed.py`` does), so the workers join through :func:`rsae.core.distributed.init_from_env`
exactly as under ``torchrun -m rsae harvest``. A tiny randomly initialised Llama (5 blocks, width 32, built from a
seed in every process) stands in for SmolLM2: the harvest code only sees a ``LanguageModel``, and the stand-in
makes two processes cheap. Each worker harvests

* one layer into ``single/`` (interrupted once in both processes, then resumed), and
* two layers at once into ``multi/layer-L/``,

and the parent checks that the merged stores equal, token for token, a single-process harvest of the same settings.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rsae.core.data import ActivationStore
from rsae.errors import DataError
from rsae.lm.corpus import ContextSet
from rsae.lm.loading import LanguageModel
from tests.rsae.conftest import run_two_gloo_ranks

ROOT = Path(__file__).resolve().parents[2]  # the workers import this checkout's rsae
N_CONTEXTS, CTX, DROP = 10, 12, 2
N_TOKENS = 9 * (CTX - DROP) - 3  # 87: the last of the 9 contexts used is cut; rank 0 takes 4, rank 1 takes 5
KWARGS = dict(n_tokens=N_TOKENS, drop_first=DROP, batch_size=2, shard_tokens=16, progress=False)


def tiny_lm() -> LanguageModel:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=5,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(config).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return LanguageModel(model=model, tokenizer=None, name="tiny-llama", source="test stand-in")


def tiny_contexts() -> ContextSet:
    ids = torch.randint(0, 64, (N_CONTEXTS, CTX), generator=torch.Generator().manual_seed(1))
    return ContextSet(ids, tuple(f"doc{i}" for i in range(N_CONTEXTS)), "train", 0)


def _worker(out: Path) -> None:
    import rsae.lm.harvest as harvest_module
    from rsae.core import distributed

    torch.set_num_threads(1)
    distributed.init_from_env("cpu")
    rank, world = distributed.world()
    assert world == 2
    lm, contexts = tiny_lm(), tiny_contexts()
    real = harvest_module.residual_streams
    calls = []

    def dying(*args, **kwargs):  # both processes die in their 2nd batch, after writing 1 batch (20 tokens)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    harvest_module.residual_streams = dying
    try:
        harvest_module.harvest(lm, contexts, 2, out / "single", **KWARGS)
        raise AssertionError("the interruption did not happen")
    except KeyboardInterrupt:
        pass
    harvest_module.residual_streams = real
    part = json.loads((out / "single" / f"meta.rank{rank:05d}.json").read_text())
    assert not part["complete"] and part["n_tokens"] == 16 and not (out / "single" / "meta.json").exists()
    distributed.barrier()
    result = harvest_module.harvest(lm, contexts, 2, out / "single", **KWARGS)
    multi = harvest_module.harvest_layers(lm, contexts, [1, 3], out / "multi", **KWARGS)
    report = {"single": result._asdict() | {"path": str(result.path)},
              "multi": {L: r.n_new_tokens for L, r in multi.items()}}
    (out / f"report{rank}.json").write_text(json.dumps(report))
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_stores(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist-harvest")
    run_two_gloo_ranks(__file__, out, ROOT)
    return out


def _tokens(path: Path) -> np.ndarray:
    store = ActivationStore.open(path)
    return np.concatenate([b.numpy() for b in store.iter_batches(10_000, shuffle=False)])


def test_two_processes_write_one_store_equal_to_a_single_process_harvest(two_process_stores, tmp_path):
    from rsae.lm.harvest import harvest

    lm, contexts = tiny_lm(), tiny_contexts()
    reference = harvest(lm, contexts, 2, tmp_path / "ref", **KWARGS)
    folder = two_process_stores / "single"
    merged, ref = ActivationStore.open(folder), ActivationStore.open(reference.path)
    # rank 0: contexts 0-3 (40 tokens: shards of 16, 16, 8); rank 1: contexts 4-8 (47 tokens: 16, 16, 15)
    assert [s["file"] for s in merged.meta["shards"]] == [
        *(f"shard_rank00000_{i:05d}.npy" for i in range(3)), *(f"shard_rank00001_{i:05d}.npy" for i in range(3))
    ]
    assert [s["n_tokens"] for s in merged.meta["shards"]] == [16, 16, 8, 16, 16, 15]
    assert merged.complete and merged.n_tokens == N_TOKENS and merged.meta["ranks"] == 2
    files = ["meta.json", *(s["file"] for s in merged.meta["shards"])]
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)  # the part headers are gone
    drop = {"shards", "ranks"}
    assert {k: v for k, v in merged.meta.items() if k not in drop} == {
        k: v for k, v in ref.meta.items() if k not in drop
    }
    # the union of the ranks' tokens is the single-process store, in the same order (same batches, same math)
    np.testing.assert_allclose(_tokens(folder), _tokens(reference.path), rtol=0, atol=1e-6)
    reports = [json.loads((two_process_stores / f"report{r}.json").read_text()) for r in range(2)]
    for report in reports:  # every rank reports the whole store; the resumed call computed 87 - 2 × 16 tokens
        assert report["single"]["n_tokens"] == N_TOKENS and report["single"]["resumed"]
        assert report["single"]["n_new_tokens"] == N_TOKENS - 32
        assert report["multi"] == {"1": N_TOKENS, "3": N_TOKENS}


def test_two_processes_several_layers(two_process_stores, tmp_path):
    from rsae.lm.harvest import harvest_layers

    lm, contexts = tiny_lm(), tiny_contexts()
    harvest_layers(lm, contexts, [1, 3], tmp_path / "ref", **KWARGS)
    for layer in (1, 3):
        folder = two_process_stores / "multi" / f"layer-{layer}"
        assert ActivationStore.open(folder).meta["layer"] == layer
        np.testing.assert_allclose(_tokens(folder), _tokens(tmp_path / "ref" / f"layer-{layer}"), rtol=0, atol=1e-6)


def test_merge_refuses_incomplete_or_disagreeing_parts(tmp_path):
    for rank in range(2):
        with ActivationStore.create(tmp_path / "s", 4, meta={"layer": rank}, shard_tokens=8, rank=(rank, 2)) as w:
            w.append(np.full((5, 4), rank, dtype=np.float32))
    with pytest.raises(DataError, match="disagrees.*layer"):
        ActivationStore.merge_ranks(tmp_path / "s", 2)
    writer = ActivationStore.create(tmp_path / "t", 4, shard_tokens=2, rank=(1, 2))
    writer.append(np.ones((3, 4), dtype=np.float32))  # one shard written, part not closed
    with pytest.raises(DataError, match="meta.rank00000.json"):  # part 0 is missing
        ActivationStore.merge_ranks(tmp_path / "t", 2)
    with ActivationStore.create(tmp_path / "t", 4, shard_tokens=2, rank=(0, 2)) as w0:
        w0.append(np.zeros((1, 4), dtype=np.float32))
    with pytest.raises(DataError, match="part 1 of 2 is not complete"):
        ActivationStore.merge_ranks(tmp_path / "t", 2)
    (tmp_path / "t" / "shard_rank00001_00001.npy.tmp").write_bytes(b"torn")  # a shard being written at the kill
    resumed = ActivationStore.resume(tmp_path / "t", rank=(1, 2))
    assert resumed.n_tokens == 2 and not (tmp_path / "t" / "shard_rank00001_00001.npy.tmp").exists()
    assert (tmp_path / "t" / "shard_rank00000_00000.npy").exists()  # the other part's shard is left alone
    resumed.append(np.ones((1, 4), dtype=np.float32))
    resumed.close()
    meta = ActivationStore.merge_ranks(tmp_path / "t", 2)
    assert meta["n_tokens"] == 1 + 3 and not list((tmp_path / "t").glob("meta.rank*"))
    store = ActivationStore.open(tmp_path / "t")
    np.testing.assert_array_equal(_tokens(tmp_path / "t")[:, 0], [0, 1, 1, 1])  # part 0, then part 1
    assert store.complete and ActivationStore.merge_ranks(tmp_path / "t", 2) == store.meta  # idempotent
    with pytest.raises(DataError, match="exists"):
        ActivationStore.create(tmp_path / "t", 4, rank=(0, 2))


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
