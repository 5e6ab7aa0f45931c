"""Where the sparse path of the threshold families pays off: ReLU / JumpReLU train-step time, sparse vs dense, by
code density.

For each density ρ the encoder bias is shifted so that a fraction ρ of the batch's pre-activations lies above the
threshold; the same model is then timed with the sparse path forced (``sparse_max_density = 1``) and with
``SAE.sparse = False``, alternated, median of ``--repeats`` (learning rate 1e-9, so ρ stays put). The crossover is
the largest ρ at which the sparse step is still faster; ``Activation.sparse_max_density`` is set below it.

    python benchmarks/bench_sparse_crossover.py [--family relu] [--densities 0.01 0.02 0.05 0.1 0.2] [--json F]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch

from rsae.core.config import SAEConfig
from rsae.core.sae import SAE


def _step(sae: SAE, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> float:
    start = time.perf_counter()
    out = sae(x)
    optimizer.zero_grad(set_to_none=True)
    out.losses.total.backward()
    sae.remove_parallel_decoder_grad_()
    optimizer.step()
    sae.normalize_decoder_()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", default="relu", choices=["relu", "jumprelu"])
    parser.add_argument("--d-in", type=int, default=576)
    parser.add_argument("--d-sae", type=int, default=4608)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--densities", type=float, nargs="+", default=[0.005, 0.01, 0.02, 0.05, 0.1, 0.2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    x = torch.randn(args.batch, args.d_in, generator=torch.Generator().manual_seed(0))
    header = (f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.family}, d_in {args.d_in}, "
              f"d_sae {args.d_sae}, batch {args.batch}, median of {args.repeats} alternated")
    print(header, flush=True)
    rows = []
    for density in args.densities:
        sparse = SAE.from_config(SAEConfig(d_in=args.d_in, d_sae=args.d_sae, family=args.family), seed=0)
        with torch.no_grad():
            h = sparse.pre_acts(x).reshape(-1)
            cut = h.kthvalue(int(round((1 - density) * h.numel()))).values
            threshold = sparse.activation.threshold.mean() if args.family == "jumprelu" else 0.0
            sparse.b_enc.sub_(cut - threshold)
        sparse.activation.sparse_max_density = 1.0
        dense = copy.deepcopy(sparse)
        dense.sparse = False
        models = {"sparse": sparse, "dense": dense}
        optimizers = {k: torch.optim.Adam(m.parameters(), lr=1e-9) for k, m in models.items()}
        times: dict[str, list[float]] = {"sparse": [], "dense": []}
        for i in range(args.repeats + 1):
            for name, model in models.items():
                seconds = _step(model, optimizers[name], x)
                if i:
                    times[name].append(seconds)
        measured = float(sparse(x).codes.ne(0).float().mean())
        row = {"target_density": density, "density": measured,
               **{f"{k}_ms": statistics.median(v) * 1e3 for k, v in times.items()}}
        row["speedup"] = row["dense_ms"] / row["sparse_ms"]
        rows.append(row)
        print(f"density {measured:7.4f}  sparse {row['sparse_ms']:8.1f} ms  dense {row['dense_ms']:8.1f} ms  "
              f"sparse speed-up {row['speedup']:5.2f}x", flush=True)
    faster = [r["density"] for r in rows if r["speedup"] > 1]
    crossover = max(faster) if faster else None
    print(f"largest measured density with a faster sparse step: {crossover}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"setup": header, "args": vars(args), "rows": rows, "crossover": crossover}, handle, indent=2,
                      allow_nan=False)


if __name__ == "__main__":
    main()
