"""Does a code change leave training bit-for-bit unchanged? Train a few steps of several families, save or compare.

Run it once with the code before the change (``save``), then with the code after it (``compare``); it trains, with
the :class:`rsae.core.trainer.Trainer`, every case below from the same seed on the same tokens (a short dead-latent
window so AuxK runs, an L0 target so the multiplier moves, a log record every few steps) and compares the final
state dict, the dead-latent counters, the L0 multiplier and the whole log (L0, losses) exactly. ``--large`` adds
the sizes of the benchmarks (d_in 576, d_sae 4608, batch 4096; TopK, BatchTopK and the rational topk gate, a
quarter of the latents marked dead after one step).

    git stash; PYTHONPATH=. python benchmarks/check_same_training.py save /tmp/ref.pt [--large]
    git stash pop; PYTHONPATH=. python benchmarks/check_same_training.py compare /tmp/ref.pt [--large]
"""

from __future__ import annotations

import argparse
import json

import torch

from rsae.core.config import SAEConfig, TrainConfig
from rsae.core.sae import SAE
from rsae.core.trainer import Trainer

# The (3, 2) best ReLU approximation on [-1, 1] (as in bench_train_step.py): no rational fit needed.
RELU_A = (0.021844506346038181, 0.5, 1.5957439419765594, 1.1914878839531187)
RELU_B = (0.0, 2.3829757679062375)
RATIONAL = dict(family="rational", rational_a=RELU_A, rational_b=RELU_B)

SMALL = {
    "topk": dict(family="topk", k=4),
    "batchtopk": dict(family="batchtopk", k=4),
    "rational-topk": dict(RATIONAL, rational_gate="topk", k=4),
    "rational-batchtopk": dict(RATIONAL, rational_gate="batchtopk", k=4),
    "relu-sparse": dict(family="relu", l1_coefficient=1.0),  # b_enc = -2.5: < 1 % of the codes fire
    "jumprelu-sparse": dict(family="jumprelu"),  # threshold e^1
    "relu-dense": dict(family="relu", l1_coefficient=1.0),
}
LARGE = {
    "large-topk": dict(family="topk", k=32),
    "large-batchtopk": dict(family="batchtopk", k=32),
    "large-rational-topk": dict(RATIONAL, rational_gate="topk", k=32),
}


def run(name: str, settings: dict) -> dict:
    torch.manual_seed(0)
    large = name.startswith("large-")
    d_in, d_sae, batch = (576, 4608, 4096) if large else (64, 1024, 128)
    sae = SAE.from_config(SAEConfig(d_in=d_in, d_sae=d_sae, **settings), seed=0)
    with torch.no_grad():
        if name == "relu-sparse":
            sae.b_enc.fill_(-2.5)
        if name == "jumprelu-sparse":
            sae.activation.log_threshold.fill_(1.0)
    x = torch.randn(4 * batch if large else 8192, d_in, generator=torch.Generator().manual_seed(1))
    if large:
        cfg = TrainConfig(steps=4, batch_size=batch, lr=3e-4, warmup_steps=0, log_every=1, l0_target=20.0)
    else:
        cfg = TrainConfig(steps=25, batch_size=batch, lr=3e-3, warmup_steps=2, dead_window_tokens=512, log_every=5,
                          l0_target=4.0, l0_target_rate=0.5)
    trainer = Trainer(sae, cfg, x, progress=False)
    if large:
        trainer.train(until=1)
        trainer.tokens_since_fired[: d_sae // 4] = 10**9  # dead: AuxK runs in the next step
    history = trainer.train().history
    return {"state": {k: v.clone() for k, v in sae.state_dict().items()},
            "tokens_since_fired": trainer.tokens_since_fired.clone(),
            "multiplier": trainer.sparsity_multiplier.clone(), "history": history,
            "dead": int((trainer.tokens_since_fired >= cfg.dead_window_tokens).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["save", "compare"])
    parser.add_argument("file", help="the reference file (torch.save of the results)")
    parser.add_argument("--large", action="store_true", help="add the benchmark sizes (about a minute)")
    args = parser.parse_args()
    cases = {**SMALL, **(LARGE if args.large else {})}
    results = {name: run(name, settings) for name, settings in cases.items()}
    if args.mode == "save":
        torch.save(results, args.file)
        print(f"saved {len(results)} cases to {args.file}")
        return
    reference = torch.load(args.file)
    missing = sorted(set(cases) - set(reference))
    if missing:
        raise SystemExit(f"{args.file} has no result for {missing}; save it with the same options")
    all_equal = True
    for name, new in results.items():
        ref = reference[name]
        row = {
            "case": name,
            "weights_equal": all(torch.equal(ref["state"][k], new["state"][k]) for k in ref["state"]),
            "dead_counters_equal": torch.equal(ref["tokens_since_fired"], new["tokens_since_fired"]),
            "l0_multiplier_equal": torch.equal(ref["multiplier"], new["multiplier"]),
            "log_equal": ref["history"] == new["history"],
            "dead_latents_at_the_end": new["dead"],
            "last_l0": new["history"][-1]["l0"],
        }
        all_equal &= all(v for k, v in row.items() if k.endswith("_equal"))
        print(json.dumps(row), flush=True)
    print(f"bit-for-bit equal: {all_equal}")
    if not all_equal:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
