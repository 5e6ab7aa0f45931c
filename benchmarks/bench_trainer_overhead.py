"""The Trainer's own overhead on a TopK step: its current code against the two costs it dropped, alternated.

``before`` is a :class:`rsae.core.trainer.Trainer` with the previous behaviour restored: every ``train(until=...)``
call starts a fresh batch stream (re-reading and re-shuffling the current chunk of ``chunk_tokens``), and the
weights are checked with ``torch.isfinite(p).all()`` per parameter. ``after`` is the Trainer as it is. Both train
the same model from the same weights on the same tokens in rounds of ``--steps`` steps (the way
``bench_vs_saelens.py`` advances it), alternated so that machine load hits both alike; the final weights are
compared (they must be equal: neither change alters results). ``--profile ROWS`` then profiles ``--steps`` more
steps of the current Trainer (one ``train`` call) and prints the ROWS most expensive operators by self CPU time,
grouped by input shapes, which tells the [B, d_sae] passes from the [d_sae, d_in] ones.

    python benchmarks/bench_trainer_overhead.py [--family topk] [--d-sae 4608] [--steps 3] [--rounds 5]
        [--profile ROWS]
"""

from __future__ import annotations

import argparse
import time

import torch

from rsae.core.config import SAEConfig, TrainConfig
from rsae.core.sae import SAE
from rsae.core.trainer import Trainer


class BeforeTrainer(Trainer):
    """The Trainer with the previous stream handling and weight check."""

    def train(self, until=None):
        self._stream = None  # a fresh stream every call, as before
        return super().train(until)

    def _check_finite_weights(self) -> None:
        params = dict(self.sae.named_parameters())
        finite = torch.stack([torch.isfinite(p.detach()).all() for p in params.values()])
        if not bool(finite.all()):
            raise self._diverged("non-finite weights")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", choices=["topk", "relu"], default="topk")
    parser.add_argument("--d-in", type=int, default=576)
    parser.add_argument("--d-sae", type=int, default=4608)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--tokens", type=int, default=8 * 4096)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS")
    args = parser.parse_args()
    data = torch.randn(args.tokens, args.d_in, generator=torch.Generator().manual_seed(0))
    settings = dict(family="topk", k=32) if args.family == "topk" else dict(family="relu", l1_coefficient=5.0)
    cfg = TrainConfig(steps=10**6, batch_size=args.batch, lr=3e-4, warmup_steps=0, decay_fraction=0.0,
                      log_every=10**6)
    trainers = {name: cls(SAE.from_config(SAEConfig(d_in=args.d_in, d_sae=args.d_sae, **settings), seed=0), cfg,
                          data, progress=False)
                for name, cls in (("before", BeforeTrainer), ("after", Trainer))}
    seconds = dict.fromkeys(trainers, 0.0)
    for round_ in range(args.rounds + 1):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            trainer.train(until=trainer.step + args.steps)
            if round_:
                seconds[name] += time.perf_counter() - start
    steps = args.rounds * args.steps
    same = all(torch.equal(a, b) for a, b in zip(trainers["before"].sae.state_dict().values(),
                                                  trainers["after"].sae.state_dict().values(), strict=True))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.family}, d_in {args.d_in}, "
          f"d_sae {args.d_sae}, batch {args.batch}, {args.tokens} tokens, {args.rounds} alternated rounds x "
          f"{args.steps} steps")
    for name, s in seconds.items():
        print(f"{name:6s} {s / steps * 1e3:8.1f} ms/step")
    print(f"speed-up {seconds['before'] / seconds['after']:.3f}x; final weights equal: {same}")
    if args.profile > 0:
        from torch.profiler import ProfilerActivity, profile

        trainer = trainers["after"]
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            trainer.train(until=trainer.step + args.steps)
        print(f"\n== profile of {args.steps} steps of the current Trainer")
        print(prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_time_total", row_limit=args.profile, max_name_column_width=30,
            max_shapes_column_width=60))


if __name__ == "__main__":
    main()
