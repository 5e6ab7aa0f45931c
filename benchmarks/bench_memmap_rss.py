"""Resident memory of training from an on-disk activation store, against the store's size.

For each size a float16 store of random tokens is written to ``--dir``, then a fresh Python process trains a small
TopK SAE on it for ``--steps`` steps and reports, before and after training, its anonymous RSS (``RssAnon``: the
process's own memory), its file-backed RSS (``RssFile``: mapped store pages, which the kernel may reclaim at any
time) and its peak RSS (``VmHWM``, both kinds), from ``/proc/self/status`` (Linux). The store is memory-mapped and
read one shuffle chunk at a time, so the anonymous memory should not grow with the store.

The child runs twice per store: right after the store was written (its pages still in the page cache as the writes
left them), and again after every shard was flushed and dropped from the page cache (``posix_fadvise
(POSIX_FADV_DONTNEED)``, no root needed), as a store written by an earlier process and read cold.

    python benchmarks/bench_memmap_rss.py --dir /tmp/stores [--gigabytes 0.25 2.0] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from rsae.core.data import ActivationStore

CHILD = """
import sys, torch
from rsae.core.config import SAEConfig, TrainConfig
from rsae.core.data import ActivationStore
from rsae.core.sae import SAE
from rsae.core.trainer import Trainer
def status():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return [int(fields[k].split()[0]) for k in ("RssAnon", "RssFile", "VmHWM")]
store = ActivationStore.open(sys.argv[1])
before = status()
sae = SAE.from_config(SAEConfig(d_in=store.d_in, d_sae=1024, family="topk", k=16), seed=0)
Trainer(sae, TrainConfig(steps=int(sys.argv[2]), batch_size=1024, warmup_steps=0), store, progress=False).train()
print(*before, *status())
"""


def write_store(folder: Path, gigabytes: float, d_in: int) -> int:
    """A float16 store of about ``gigabytes`` GB of random tokens; returns its token count."""
    n_tokens = int(gigabytes * 1e9 / (2 * d_in))
    rng = np.random.default_rng(0)
    with ActivationStore.create(folder, d_in=d_in, shard_tokens=1 << 18, dtype="float16") as writer:
        for start in range(0, n_tokens, 1 << 18):
            rows = min(1 << 18, n_tokens - start)
            writer.append(rng.standard_normal((rows, d_in), dtype=np.float32).astype(np.float16))
    return n_tokens


def drop_from_page_cache(folder: Path) -> None:
    """Flush every file of ``folder`` and ask the kernel to drop its pages from the page cache."""
    for file in folder.iterdir():
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", required=True, help="scratch folder for the stores (deleted afterwards)")
    parser.add_argument("--gigabytes", type=float, nargs="+", default=[0.25, 2.0])
    parser.add_argument("--d-in", type=int, default=576)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = []
    for gb in args.gigabytes:
        folder = Path(args.dir) / f"store_{gb:g}GB"
        if folder.exists():
            shutil.rmtree(folder)
        n_tokens = write_store(folder, gb, args.d_in)
        for cache in ("just written", "cold"):
            if cache == "cold":
                drop_from_page_cache(folder)
            out = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(args.steps)], capture_output=True,
                                 text=True, check=True).stdout.split()
            mib = [int(v) / 1024 for v in out[-6:]]
            row = {"store_gb": gb, "n_tokens": n_tokens, "page_cache": cache}
            for i, when in enumerate(("before", "after")):
                row.update({f"{k}_{when}_mib": mib[3 * i + j] for j, k in enumerate(("anon", "file", "peak"))})
            rows.append(row)
            print(f"store {gb:5.2f} GB ({n_tokens} tokens, {cache:12s}): anonymous RSS {row['anon_before_mib']:7.1f} "
                  f"-> {row['anon_after_mib']:7.1f} MiB, file-backed (memmap pages) {row['file_before_mib']:7.1f} -> "
                  f"{row['file_after_mib']:7.1f} MiB, peak RSS {row['peak_after_mib']:7.1f} MiB", flush=True)
        shutil.rmtree(folder)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"args": vars(args), "rows": rows}, handle, indent=2, allow_nan=False)


if __name__ == "__main__":
    main()
