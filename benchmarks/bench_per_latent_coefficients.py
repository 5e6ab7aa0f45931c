"""Train-step cost of per-latent rational coefficients against shared ones (issue 8 §1).

Usage::

    python benchmarks/bench_per_latent_coefficients.py [--d-in 256] [--d-sae 2048] [--batch 1024]
        [--rounds 7] [--threads N] [--json FILE]

For each case a rational SAE with per-latent scales C_in,j, C_out,j and either one shared rational
(``rational_per_latent_coefficients=False``) or one per latent (``True``, every row started from the same fit)
takes full train steps: forward, loss, backward, Adam step. Cases: gate ``relu`` with the (3, 2) ReLU fit (the
dense path at initial density) and gate ``topk`` (k = 32) with the (9, 8) TopK-gate fit (the sparse path, which
gathers each kept entry's rational; the (9, 8) fit computes in float64 under the default ``precision="auto"``).
Shared and per-latent steps alternate within each round (after one warm-up step each, which compiles); printed:
the median wall and process-CPU time per step over the rounds and the median per-round ratio per-latent / shared.
Measures and prints; asserts nothing. ``--json`` writes the same numbers as strict JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch

from rsae.core.config import SAEConfig
from rsae.core.sae import SAE

CASES = {"relu (3,2)": {"rational_gate": "relu", "rational_init_gate": "relu"},
         "topk k=32 (9,8)": {"rational_gate": "topk", "rational_init_gate": "topk_gate", "k": 32}}


def build(case: dict[str, Any], d_in: int, d_sae: int, per_latent: bool) -> tuple[SAE, torch.optim.Optimizer]:
    cfg = SAEConfig(d_in=d_in, d_sae=d_sae, family="rational", rational_per_latent_scales=True,
                    rational_per_latent_coefficients=per_latent, **case)
    sae = SAE.from_config(cfg, seed=0).train()
    return sae, torch.optim.Adam(sae.parameters(), lr=1e-4)


def step(sae: SAE, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    sae(x).losses.total.backward()
    opt.step()


def timed(fn: Any) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-in", type=int, default=256)
    parser.add_argument("--d-sae", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x = torch.randn(args.batch, args.d_in, generator=torch.Generator().manual_seed(1))
    results: dict[str, Any] = {"d_in": args.d_in, "d_sae": args.d_sae, "batch": args.batch, "rounds": args.rounds,
                               "threads": torch.get_num_threads(), "cases": {}}
    for name, case in CASES.items():
        models = {kind: build(case, args.d_in, args.d_sae, kind == "per_latent") for kind in ("shared", "per_latent")}
        for sae, opt in models.values():
            step(sae, opt, x)  # warm-up (compiles)
        walls: dict[str, list[float]] = {k: [] for k in models}
        cpus: dict[str, list[float]] = {k: [] for k in models}
        for _ in range(args.rounds):
            for kind, (sae, opt) in models.items():
                w, c = timed(lambda sae=sae, opt=opt: step(sae, opt, x))
                walls[kind].append(w)
                cpus[kind].append(c)
        ratio_wall = statistics.median(p / s for p, s in zip(walls["per_latent"], walls["shared"], strict=True))
        ratio_cpu = statistics.median(p / s for p, s in zip(cpus["per_latent"], cpus["shared"], strict=True))
        row = {kind: {"wall_ms": 1e3 * statistics.median(walls[kind]), "cpu_ms": 1e3 * statistics.median(cpus[kind])}
               for kind in models}
        row.update(ratio_wall=ratio_wall, ratio_cpu=ratio_cpu)
        results["cases"][name] = row
        print(f"{name}: shared {row['shared']['wall_ms']:.1f} ms (cpu {row['shared']['cpu_ms']:.1f}), per-latent "
              f"{row['per_latent']['wall_ms']:.1f} ms (cpu {row['per_latent']['cpu_ms']:.1f}); per-latent / shared "
              f"{ratio_wall:.2f} wall, {ratio_cpu:.2f} cpu", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2, allow_nan=False)


if __name__ == "__main__":
    main()
