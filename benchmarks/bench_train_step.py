"""Train-step time (forward + backward + Adam step + decoder renormalisation) of every SAE family.

Sizes of the issue: d_in 576, d_sae 4608, batch 4096 (SmolLM2-135M residual width, 8× expansion). Prints one
line per family with the median over ``--repeats`` timed steps (after ``--warmup`` untimed ones, which also
absorb ``torch.compile`` of the rational kernels) and the ratio to the ReLU step. The goal is rational ≤ 1.10×
ReLU on CPU.

    python benchmarks/bench_train_step.py [--device cpu|cuda] [--repeats 10] [--warmup 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rsae.core.config import SAEConfig
from rsae.core.sae import SAE

# The (3, 2) best ReLU approximation on [-1, 1]; explicit so the benchmark needs no rational fit.
RELU_A = (0.021844506346038181, 0.5, 1.5957439419765594, 1.1914878839531187)
RELU_B = (0.0, 2.3829757679062375)

CASES = {
    "relu": {"family": "relu"},
    "jumprelu": {"family": "jumprelu"},
    "topk": {"family": "topk", "k": 32},
    "batchtopk": {"family": "batchtopk", "k": 32},
    "rational/relu-gate": {"family": "rational", "rational_gate": "relu"},
    "rational/jumprelu-gate": {"family": "rational", "rational_gate": "jumprelu"},
    "rational/topk-gate": {"family": "rational", "rational_gate": "topk", "k": 32},
    "rational/batchtopk-gate": {"family": "rational", "rational_gate": "batchtopk", "k": 32},
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(
    settings: dict, d_in: int, d_sae: int, batch: int, device: str, repeats: int, warmup: int, autocast: bool
) -> float:
    """Median seconds of one full training step."""
    kwargs = dict(d_in=d_in, d_sae=d_sae, device=device, **settings)
    if settings["family"] == "rational":
        kwargs.update(rational_a=RELU_A, rational_b=RELU_B)
    sae = SAE.from_config(SAEConfig(**kwargs), seed=0)
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-4)
    x = torch.randn(batch, d_in, device=device)
    dead = torch.zeros(d_sae, dtype=torch.bool, device=device)
    dev = torch.device(device)
    times = []
    for i in range(warmup + repeats):
        _sync(dev)
        start = time.perf_counter()
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=autocast):
            out = sae(x, dead_mask=dead, auxk_coefficient=1 / 32)
        optimizer.zero_grad(set_to_none=True)
        out.losses.total.backward()
        sae.remove_parallel_decoder_grad_()
        optimizer.step()
        sae.normalize_decoder_()
        _sync(dev)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--d-in", type=int, default=576)
    parser.add_argument("--d-sae", type=int, default=4608)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--autocast-bf16", action="store_true")
    parser.add_argument("--only", nargs="*", default=None, help="subset of the cases")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
        f"d_in {args.d_in}, d_sae {args.d_sae}, batch {args.batch}, median of {args.repeats}"
    )
    reference = None
    for name, settings in CASES.items():
        if args.only and name not in args.only:
            continue
        seconds = time_step(
            settings,
            args.d_in,
            args.d_sae,
            args.batch,
            args.device,
            args.repeats,
            args.warmup,
            args.autocast_bf16,
        )
        if name == "relu":
            reference = seconds
        ratio = f"{seconds / reference:.3f}x relu" if reference else ""
        print(f"{name:26s} {seconds * 1e3:9.1f} ms  {ratio}", flush=True)


if __name__ == "__main__":
    main()
