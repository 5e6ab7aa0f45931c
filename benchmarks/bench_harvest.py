"""Harvest throughput against the forward-only floor of the same model prefix (issue 9, "Harvesting").

For each round, alternated in one process so that the load of a shared machine hits all alike:

* **floor**: the model prefix up to the deepest harvested block, run on the same contexts in the same batches,
  with no hooks and no writing — the decoder's ``layers`` list is truncated to the prefix for the call, so the
  base model runs embedding, blocks 0 … L and its (cheap) final norm, and never the LM head;
* **harvest**: :func:`rsae.lm.harvest.harvest` (one layer) or :func:`rsae.lm.harvest.harvest_layers` (several
  layers, one forward pass per batch) into a fresh folder: hooks, slicing, checks, dtype conversion, shard
  writes (with fsync) and ``meta.json``, all timed from the call to its return.

Each harvest is compared with the mean of a floor run just before and one just after it (drift on a shared
machine cancels to first order). Prints tokens/s of each, the ratio harvest / floor per round and its median
(goal ≥ 0.90), and the same ratio in process CPU time (less sensitive to other processes taking the cores,
blind to time spent waiting on the disk), and the **forward share**: the fraction of the harvest's own wall time
spent inside its forward passes (timed around each ``residual_streams`` call, in the same run), i.e. one minus
what hooks, checks, copies and writes cost. The share does not depend on how fast the machine happens to be
during the run, so it is the robust reading on a loaded machine; the ratio to the floor is what the goal names.

    PYTHONPATH=. nice -n 10 python3 benchmarks/bench_harvest.py --tokens 2000 --rounds 3
    PYTHONPATH=. python3 benchmarks/bench_harvest.py --device cuda --autocast bf16 --tokens 200000 --batch-size 64
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

import rsae.lm.harvest as harvest_module
from rsae.lm.corpus import DEFAULT_DROP_FIRST, build_contexts, load_documents
from rsae.lm.harvest import harvest, harvest_layers
from rsae.lm.hooks import autocast_context, decoder_layers
from rsae.lm.loading import load_language_model


@contextmanager
def truncated(model: torch.nn.Module, n_blocks: int):
    """The model with only its first ``n_blocks`` decoder blocks (restored on exit)."""
    blocks = decoder_layers(model)
    owner = next(o for o in (getattr(model, n, None) for n in ("model", "transformer", "gpt_neox"))
                 if o is not None and any(getattr(o, a, None) is blocks for a in ("layers", "h")))
    attr = "layers" if getattr(owner, "layers", None) is blocks else "h"
    setattr(owner, attr, torch.nn.ModuleList(list(blocks)[:n_blocks]))
    try:
        yield owner
    finally:
        setattr(owner, attr, blocks)


def floor(lm, ids: torch.Tensor, deepest: int, batch_size: int, autocast: str | None) -> tuple[float, float]:
    """(wall, process CPU) seconds of the forward passes of blocks 0 … deepest over ``ids`` (no hooks, no writing)."""
    sync = torch.cuda.synchronize if lm.device.type == "cuda" else (lambda: None)
    with truncated(lm.model, deepest + 1) as base, torch.inference_mode(), autocast_context(lm.device, autocast):
        sync()
        start, cpu = time.perf_counter(), time.process_time()
        for c in range(0, len(ids), batch_size):
            base(input_ids=ids[c : c + batch_size].to(lm.device), use_cache=False)
        sync()
        return time.perf_counter() - start, time.process_time() - cpu


def run_harvest(lm, contexts, layers: list[int], n_tokens: int, args, folder: Path) -> tuple[float, float, float]:
    """(wall, process CPU, wall inside the forward passes) seconds of one harvest of ``layers`` into ``folder``."""
    shutil.rmtree(folder, ignore_errors=True)
    real = harvest_module.residual_streams
    inside = [0.0]
    sync = torch.cuda.synchronize if lm.device.type == "cuda" else (lambda: None)

    def timed(*a, **k):
        start = time.perf_counter()
        out = real(*a, **k)
        sync()
        inside[0] += time.perf_counter() - start
        return out

    harvest_module.residual_streams = timed
    kwargs = dict(n_tokens=n_tokens, batch_size=args.batch_size, dtype=args.dtype, shard_tokens=args.shard_tokens,
                  progress=False, autocast=args.autocast)
    start, cpu = time.perf_counter(), time.process_time()
    try:
        with warnings.catch_warnings():  # early blocks' massive-norm tokens: irrelevant to timing
            warnings.filterwarnings("ignore", message=".*residual norm above")
            if len(layers) == 1:
                harvest(lm, contexts, layers[0], folder, **kwargs)
            else:
                harvest_layers(lm, contexts, layers, folder, **kwargs)
    finally:
        harvest_module.residual_streams = real
    seconds = time.perf_counter() - start, time.process_time() - cpu, inside[0]
    shutil.rmtree(folder, ignore_errors=True)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", nargs="+", default=["15", "5,10,15"],
                        help="harvest configurations, each a comma-separated layer list (default: 15 and 5,10,15)")
    parser.add_argument("--tokens", type=int, default=2000, help="stored tokens per harvest")
    parser.add_argument("--context-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8, help="contexts per forward pass")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="storage dtype")
    parser.add_argument("--shard-tokens", type=int, default=65536)
    parser.add_argument("--autocast", choices=("bf16", "fp16"), default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--dir", default=None, help="scratch folder for the stores (default: a temporary one)")
    parser.add_argument("--profile", action="store_true",
                        help="after the rounds, cProfile one harvest of the last configuration (top 25, cumulative)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    configs = [[int(v) for v in spec.split(",")] for spec in args.layers]
    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_language_model(device=args.device)
    per_context = args.context_length - DEFAULT_DROP_FIRST
    contexts = build_contexts(lm.tokenizer, load_documents(), context_length=args.context_length, split="train")
    n_contexts = -(-args.tokens // per_context)
    if n_contexts > len(contexts.input_ids):
        parser.error(f"--tokens {args.tokens} needs {n_contexts} contexts; the split has {len(contexts.input_ids)}")
    ids = contexts.input_ids[:n_contexts]
    # The floor runs the same contexts as the harvest: all of n_contexts, so it counts the same tokens.
    n_tokens = n_contexts * per_context
    scratch = Path(args.dir or tempfile.mkdtemp(prefix="bench_harvest_"))
    scratch.mkdir(parents=True, exist_ok=True)
    print(f"{lm.name} on {lm.device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{n_tokens} tokens ({n_contexts} contexts of {args.context_length}, drop_first {DEFAULT_DROP_FIRST}), "
          f"batch {args.batch_size}, store {args.dtype}, autocast {args.autocast}, {args.rounds} rounds")

    # warm-up (first calls allocate, load kernels)
    floor(lm, ids[: args.batch_size], max(max(c) for c in configs), args.batch_size, args.autocast)
    rows = []
    for r in range(args.rounds):
        # floor, harvest, floor: each harvest is compared with the mean of the floors just before and after it
        for layers in configs:
            deepest = max(layers)
            before = floor(lm, ids, deepest, args.batch_size, args.autocast)
            seconds = run_harvest(lm, contexts, layers, n_tokens, args, scratch / "store")
            after = floor(lm, ids, deepest, args.batch_size, args.autocast)
            base = (before[0] + after[0]) / 2
            row = {"round": r, "layers": layers, "floor_tokens_per_s": n_tokens / base,
                   "harvest_tokens_per_s": n_tokens / seconds[0], "ratio": base / seconds[0],
                   "cpu_ratio": (before[1] + after[1]) / 2 / seconds[1], "forward_share": seconds[2] / seconds[0]}
            rows.append(row)
            print(f"round {r}  layers {','.join(map(str, layers)):>9}  floor (blocks 0-{deepest}) "
                  f"{row['floor_tokens_per_s']:8.1f} tok/s   harvest {row['harvest_tokens_per_s']:8.1f} tok/s   "
                  f"ratio {row['ratio']:.3f} (CPU time {row['cpu_ratio']:.3f})   forward share "
                  f"{row['forward_share']:.3f}", flush=True)
    summary = {}
    for layers in configs:
        mine = [row for row in rows if row["layers"] == layers]
        key = ",".join(map(str, layers))
        summary[key] = {k: statistics.median(row[k] for row in mine)
                        for k in ("floor_tokens_per_s", "harvest_tokens_per_s", "ratio", "cpu_ratio", "forward_share")}
        print(f"median  layers {key:>9}  floor {summary[key]['floor_tokens_per_s']:8.1f} tok/s   harvest "
              f"{summary[key]['harvest_tokens_per_s']:8.1f} tok/s   ratio {summary[key]['ratio']:.3f} "
              f"(CPU time {summary[key]['cpu_ratio']:.3f})   forward share {summary[key]['forward_share']:.3f}")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run_harvest(lm, contexts, configs[-1], n_tokens, args, scratch / "store")
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
        print(text.getvalue())
    if args.dir is None:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rounds": rows, "median": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
