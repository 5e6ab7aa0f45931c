"""Activation store (write, resume, validate, memory-mapped chunked reading) and the tensor source."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rsae.core.data import ActivationStore, TensorSource, as_source
from rsae.errors import DataError


def _write(path, rows: np.ndarray, shard_tokens: int = 10, **kw) -> ActivationStore:
    with ActivationStore.create(path, d_in=rows.shape[1], shard_tokens=shard_tokens, **kw) as writer:
        for start in range(0, len(rows), 7):
            writer.append(rows[start : start + 7])
    return ActivationStore.open(path)


def test_store_round_trip_and_meta(tmp_path) -> None:
    rows = np.random.default_rng(0).normal(size=(53, 4)).astype(np.float32)
    store = _write(tmp_path / "s", rows, meta={"model": "m", "layer": 3})
    assert (store.n_tokens, store.d_in, store.complete) == (53, 4, True)
    assert store.meta["model"] == "m" and len(store.meta["shards"]) == 6
    ordered = torch.cat(list(store.iter_batches(8, shuffle=False)))
    np.testing.assert_array_equal(ordered.numpy(), rows)


def test_float16_store_reads_float32(tmp_path) -> None:
    rows = np.arange(24, dtype=np.float32).reshape(6, 4)
    store = _write(tmp_path / "s", rows, dtype="float16")
    batch = next(store.iter_batches(6, shuffle=False))
    assert batch.dtype == torch.float32
    np.testing.assert_array_equal(batch.numpy(), rows)


@pytest.mark.parametrize("chunk_tokens", [3, 16, 1000])
def test_shuffled_epoch_covers_every_token_once(chunk_tokens: int) -> None:
    data = torch.arange(101, dtype=torch.float32)[:, None].repeat(1, 2)
    source = TensorSource(data)
    batches = list(source.iter_batches(10, seed=4, chunk_tokens=chunk_tokens))
    assert [len(b) for b in batches] == [10] * 10 + [1]
    seen = torch.cat(batches)[:, 0]
    assert sorted(seen.tolist()) == list(range(101))
    assert seen.tolist() != list(range(101))
    again = torch.cat(list(source.iter_batches(10, seed=4, chunk_tokens=chunk_tokens)))[:, 0]
    assert torch.equal(seen, again)
    other = torch.cat(list(source.iter_batches(10, seed=4, epoch=1, chunk_tokens=chunk_tokens)))[:, 0]
    assert not torch.equal(seen, other)


def test_start_batch_skips_exactly(tmp_path) -> None:
    rows = np.random.default_rng(1).normal(size=(95, 3)).astype(np.float32)
    store = _write(tmp_path / "s", rows, shard_tokens=20)
    full = list(store.iter_batches(8, seed=2, chunk_tokens=24, drop_last=True))
    tail = list(store.iter_batches(8, seed=2, chunk_tokens=24, drop_last=True, start_batch=5))
    assert len(tail) == len(full) - 5
    assert all(torch.equal(a, b) for a, b in zip(full[5:], tail, strict=True))


def test_reading_is_bounded_by_the_chunk(tmp_path, monkeypatch) -> None:
    rows = np.zeros((400, 2), dtype=np.float32)
    store = _write(tmp_path / "s", rows, shard_tokens=100)
    sizes = []
    original = ActivationStore._read

    def spy(self, segment, start, stop):
        sizes.append(stop - start)
        return original(self, segment, start, stop)

    monkeypatch.setattr(ActivationStore, "_read", spy)
    for _ in store.iter_batches(16, chunk_tokens=64):
        pass
    assert max(sizes) <= 64 // 8
    assert sum(sizes) == 400


def test_interrupted_writer_resumes_after_last_shard(tmp_path) -> None:
    rows = np.random.default_rng(2).normal(size=(40, 3)).astype(np.float32)
    path = tmp_path / "s"
    writer = ActivationStore.create(path, d_in=3, shard_tokens=10)
    writer.append(rows[:25])  # two shards written, 5 rows pending and lost with the "crash"
    assert writer.n_tokens == 20
    (path / "shard_00002.npy.tmp").write_bytes(b"partial")
    resumed = ActivationStore.resume(path)
    assert resumed.n_tokens == 20 and not (path / "shard_00002.npy.tmp").exists()
    resumed.append(rows[20:])
    resumed.close()
    store = ActivationStore.open(path)
    np.testing.assert_array_equal(torch.cat(list(store.iter_batches(40, shuffle=False))).numpy(), rows)
    with pytest.raises(DataError, match="complete"):
        ActivationStore.resume(path)


def test_sample_is_distinct_and_seeded() -> None:
    data = torch.arange(50, dtype=torch.float32)[:, None]
    source = TensorSource(data)
    sample = source.sample(20, seed=3)
    assert len(set(sample[:, 0].tolist())) == 20
    assert torch.equal(sample, source.sample(20, seed=3))
    with pytest.raises(DataError, match="cannot sample"):
        source.sample(51)


def test_invalid_stores_raise_data_error(tmp_path) -> None:
    with pytest.raises(DataError, match="meta.json is missing"):
        ActivationStore.open(tmp_path)
    rows = np.ones((12, 2), dtype=np.float32)
    path = tmp_path / "s"
    _write(path, rows, shard_tokens=6)
    meta = json.loads((path / "meta.json").read_text())
    meta["shards"][0]["n_tokens"] = 7
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="shape"):
        ActivationStore.open(path)
    meta["shards"][0] = {"file": "../evil.npy", "n_tokens": 6}
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="inside the folder"):
        ActivationStore.open(path)
    np.save(path / "shard_00000.npy", np.ones((6, 2), dtype=np.float64))
    meta["shards"][0] = {"file": "shard_00000.npy", "n_tokens": 6}
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="dtype"):
        ActivationStore.open(path)
    with pytest.raises(DataError, match="not empty"):
        ActivationStore.create(path, d_in=2)
    with pytest.raises(DataError, match="reserved"):
        ActivationStore.create(tmp_path / "t", d_in=2, meta={"d_in": 3})


def test_writer_rejects_bad_rows(tmp_path) -> None:
    writer = ActivationStore.create(tmp_path / "s", d_in=3)
    with pytest.raises(DataError, match="shape"):
        writer.append(np.ones((2, 4)))
    with pytest.raises(DataError, match="non-finite"):
        writer.append(np.full((2, 3), np.nan))


def test_as_source_and_tensor_source_validation(tmp_path) -> None:
    assert as_source(torch.ones(3, 2)).n_tokens == 3
    with pytest.raises(DataError, match="2-D"):
        TensorSource(torch.ones(3))
    with pytest.raises(DataError, match="floating"):
        TensorSource(torch.ones(3, 2, dtype=torch.long))


def test_read_all_is_every_token_in_storage_order(tmp_path) -> None:
    data = np.random.default_rng(3).standard_normal((70_000, 4)).astype(np.float32)  # > one 65,536-token read
    with ActivationStore.create(tmp_path / "s", 4, shard_tokens=30_000) as writer:
        writer.append(data[:50_000])
        writer.append(data[50_000:])
    store = ActivationStore.open(tmp_path / "s")
    assert torch.equal(store.read_all(), torch.from_numpy(data))
    assert torch.equal(TensorSource(data).read_all(), torch.from_numpy(data))
