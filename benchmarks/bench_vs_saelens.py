"""Training throughput of rsae's trainer beside SAELens' own trainer, in one process, runs alternated.

Both trainers get the same tokens from memory ([n_tokens, d_in] float32, one tensor), the same shapes and the same
family settings, and their own full training step:

* rsae: :class:`rsae.core.trainer.Trainer` (its shuffled batch reader, forward, backward, decoder-gradient
  projection, clipping, Adam, decoder renormalisation, dead-latent counters), advanced with ``train(until=...)``;
* SAELens (``pip install 'rsae[bench]'``, sae-lens 6.54.12): ``SAETrainer.step`` — the public step of
  ``SAETrainer.fit`` (forward, backward, clipping, Adam, LR and coefficient schedulers, dead-feature counters) —
  on batches cut from a pre-shuffled copy of the tokens. SAELens' TopK runs with its default dense activations:
  its ``use_sparse_activations=True`` (a COO decode) fails in the backward pass with torch 2.13 on CPU
  ("Could not run 'aten::view' with arguments from the 'SparseCPU' backend").

Rounds alternate the trainers (``--rounds`` × ``--steps`` steps each, after one untimed warm-up round that also
runs rsae's data-dependent initialisation), so machine load hits both alike; the table gives tokens/s (total
tokens over total time of the timed rounds) and the ratio rsae / SAELens. The *matmul floor* is the tokens/s a
step would reach if it were only its dense matrix products at the GFLOP/s measured here (a [batch, d_in] ×
[d_in, d_sae] product, timed between the rounds): 6 products of 2·B·d_in·d_sae FLOP for a dense step (encoder and
decoder forward; ∂W_dec, ∂z, ∂W_enc, ∂x backward), 1 for rsae's sparse top-k step (the encoder forward; the
rest is O(k·B·d_in)).

Both trainers start from the same weights: rsae's (decoder rows uniform on the sphere, W_enc = W_decᵀ, b_enc = 0,
b_dec the geometric median of a data sample, as its trainer initialises it), copied into the SAELens model. A
fresh model's ReLU codes are ~50 % dense; a trained ReLU SAE's are well under 1 %, where rsae takes its sparse
path (docs/performance.md, section 1) and SAELens does not. ``--density P`` shifts ``b_enc`` per latent (before the
copy, so for both trainers) so that each ReLU latent fires on a fraction P of the tokens in memory (as
``bench_train_step.py --density``); TopK rows are unaffected. After the rounds the L0 of both models on the first
``--batch`` tokens is printed (the density the timed steps saw drifts from P as the models train).

    python benchmarks/bench_vs_saelens.py [--d-sae 4608] [--batch 4096] [--steps 4] [--rounds 3] [--density P]
        [--families relu topk] [--json F]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from rsae.core.config import SAEConfig, TrainConfig
from rsae.core.sae import SAE
from rsae.core.trainer import Trainer


def _saelens_trainer(family: str, d_in: int, d_sae: int, batch: int, k: int, l1: float,
                     weights: dict[str, Tensor]) -> object:
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    if family == "relu":
        sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=d_in, d_sae=d_sae, l1_coefficient=l1))
    else:
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k))
    with torch.no_grad():
        for name, value in weights.items():  # the same initial weights as rsae's model
            getattr(sae, name).copy_(value)
    cfg = SAETrainerConfig(total_training_samples=10**9, train_batch_size_samples=batch, lr=3e-4, lr_end=3e-4)
    return SAETrainer(cfg, sae, data_provider=iter(()))


def _saelens_runner(trainer, data: Tensor, batch: int) -> Callable[[int], None]:
    order = data[torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(0))]
    n_batches = data.shape[0] // batch

    def batches() -> Iterator[Tensor]:
        i = 0
        while True:
            yield order[(i % n_batches) * batch : (i % n_batches + 1) * batch]
            i += 1

    stream = batches()

    def run(steps: int) -> None:
        for _ in range(steps):
            trainer.step(next(stream))
            trainer.n_training_steps += 1

    return run


@torch.no_grad()
def set_code_density(sae: SAE, x: Tensor, density: float) -> None:
    """Shift ``b_enc`` per latent so that h_j > 0 on a fraction ``density`` of the tokens ``x``."""
    h = sae.pre_acts(x)
    closed = min(max(1, round((1 - density) * h.shape[0])), h.shape[0])
    sae.b_enc -= torch.kthvalue(h, closed, dim=0).values


def _rsae_runner(family: str, d_in: int, d_sae: int, batch: int, k: int, l1: float, data: Tensor,
                 density: float | None) -> tuple[Callable[[int], None], SAE]:
    settings = dict(family="relu", l1_coefficient=l1, l1_weight_by_decoder_norm=True) if family == "relu" else dict(
        family="topk", k=k)
    sae = SAE.from_config(SAEConfig(d_in=d_in, d_sae=d_sae, **settings), seed=0)
    trainer = Trainer(sae, TrainConfig(steps=10**6, batch_size=batch, lr=3e-4, warmup_steps=0, decay_fraction=0.0,
                                       log_every=10**6), data, progress=False)
    # b_dec now (train() recomputes the same geometric median at step 0), so that the density shift and the
    # weights copied into the SAELens model are those rsae's first step sees
    trainer.initialise_from_data()
    if density is not None and family == "relu":
        set_code_density(sae, data, density)

    def run(steps: int) -> None:
        trainer.train(until=trainer.step + steps)

    return run, sae


@torch.no_grad()
def l0_of(model, x: Tensor) -> float:
    """Mean number of non-zero codes per token of an rsae SAE or a SAELens SAE on ``x``."""
    codes = model.encode(x)
    return float((codes != 0).sum(-1).float().mean())


def matmul_gflops(batch: int, d_in: int, d_sae: int, repeats: int = 3) -> float:
    """GFLOP/s of a [batch, d_in] × [d_in, d_sae] float32 product (best of ``repeats``)."""
    a, b = torch.randn(batch, d_in), torch.randn(d_in, d_sae)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * batch * d_in * d_sae / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--d-in", type=int, default=576)
    parser.add_argument("--d-sae", type=int, nargs="+", default=[4608])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--l1", type=float, default=5.0)
    parser.add_argument("--tokens", type=int, default=8 * 4096, help="tokens held in memory")
    parser.add_argument("--steps", type=int, default=4, help="steps per trainer per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--families", nargs="+", default=["relu", "topk"], choices=["relu", "topk"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--density", type=float, default=None,
                        help="fraction of the tokens on which each ReLU latent fires at the start (b_enc shifted per "
                             "latent, the same for both trainers); default: the fresh model's (~0.5)")
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    args = parser.parse_args()
    if args.density is not None and not 0 < args.density < 1:
        parser.error(f"--density must lie in (0, 1), got {args.density}")
    if args.threads:
        torch.set_num_threads(args.threads)
    import sae_lens

    setup = (f"torch {torch.__version__}, sae-lens {sae_lens.__version__}, threads {torch.get_num_threads()}, "
             f"d_in {args.d_in}, batch {args.batch}, {args.rounds} alternated rounds x {args.steps} steps"
             + (f", relu code density {args.density} at the start" if args.density is not None else ""))
    print(setup, flush=True)
    data = torch.randn(args.tokens, args.d_in, generator=torch.Generator().manual_seed(0))
    rows = []
    for d_sae in args.d_sae:
        for family in args.families:
            rsae_run, rsae_sae = _rsae_runner(family, args.d_in, d_sae, args.batch, args.k, args.l1, data,
                                              args.density)
            weights = {name: getattr(rsae_sae, name).detach().clone() for name in ("W_enc", "W_dec", "b_enc", "b_dec")}
            saelens_trainer = _saelens_trainer(family, args.d_in, d_sae, args.batch, args.k, args.l1, weights)
            probe = data[: args.batch]
            l0_start = {"rsae": l0_of(rsae_sae, probe), "saelens": l0_of(saelens_trainer.sae, probe)}
            runners: dict[str, Callable[[int], None]] = {
                "rsae": rsae_run,
                "saelens": _saelens_runner(saelens_trainer, data, args.batch),
            }
            seconds = dict.fromkeys(runners, 0.0)
            gflops = []
            for round_ in range(args.rounds + 1):
                for name, run in runners.items():
                    start = time.perf_counter()
                    run(args.steps)
                    if round_:
                        seconds[name] += time.perf_counter() - start
                gflops.append(matmul_gflops(args.batch, args.d_in, d_sae))
            tokens = args.rounds * args.steps * args.batch
            rate = {name: tokens / s for name, s in seconds.items()}
            speed = sorted(gflops)[len(gflops) // 2]
            flop = 2 * args.batch * args.d_in * d_sae
            row = {
                "d_sae": d_sae,
                "family": family,
                "tokens_per_s": rate,
                "ratio_rsae_over_saelens": rate["rsae"] / rate["saelens"],
                "matmul_gflops": speed,
                "floor_dense_step_tokens_per_s": args.batch / (6 * flop / (speed * 1e9)),
                "floor_sparse_topk_step_tokens_per_s": args.batch / (flop / (speed * 1e9)) if family == "topk"
                else None,
            }
            row["l0_start"] = l0_start
            row["l0_end"] = {"rsae": l0_of(rsae_sae, probe), "saelens": l0_of(saelens_trainer.sae, probe)}
            rows.append(row)
            others = "  ".join(f"{n} {r:8.0f}" for n, r in rate.items())
            ratio = f"ratio {row['ratio_rsae_over_saelens']:.2f}x"
            floor = f"floor dense {row['floor_dense_step_tokens_per_s']:.0f}"
            if row["floor_sparse_topk_step_tokens_per_s"] is not None:
                floor += f", sparse {row['floor_sparse_topk_step_tokens_per_s']:.0f}"
            l0 = "  ".join(f"{n} {row['l0_start'][n]:.1f} -> {row['l0_end'][n]:.1f}" for n in runners)
            print(f"d_sae {d_sae:6d} {family:5s} tokens/s: {others}  {ratio}  [{speed:.0f} GFLOP/s; {floor}]  "
                  f"L0 {l0}", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"setup": setup, "args": vars(args), "rows": rows}, handle, indent=2, allow_nan=False)


if __name__ == "__main__":
    main()
