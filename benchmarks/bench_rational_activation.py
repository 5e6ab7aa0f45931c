"""Time the rational activation (forward + backward) against ReLU and a naive eager-op chain.

Usage::

    python benchmarks/bench_rational_activation.py [--rows 4096] [--d-sae 4608] [--repeats 7] [--step]
        [--threads N] [--types '3,2;9,8']

Prints median wall times (seconds) on [rows, d_sae] float32 for

* ``relu``: ``torch.relu`` forward + backward,
* ``rational (m,n)``: :class:`rsae.core.rational.RationalActivation` forward + backward (one fused kernel per
  direction after the first, compiling call; compile time printed separately),
* ``naive (m,n)``: the same φ written as a chain of eager torch ops differentiated by autograd,

and with ``--step`` the full SAE train step (encoder matmul, activation, decoder matmul, MSE loss, backward)
with d_in 576 for ReLU and for each rational type, run in interleaved rounds, with the median per-round ratio
to ReLU in wall time and in process CPU time (the latter is less sensitive to other processes on a shared
machine). Measures and prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from rsae.core.rational import RationalActivation


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def naive_rational(h: torch.Tensor, act: RationalActivation) -> torch.Tensor:
    """φ(h) as a chain of eager ops (powers of t, no overflow handling), for comparison only."""
    t = h / act.log_c_in.exp()
    p = sum(act.a[i] * t**i for i in range(act.a.shape[0]))
    q = sum(act.b[j] * t ** (j + 1) for j in range(act.b.shape[0]))
    return act.log_c_out.exp() * p / (1 + q.abs())


def fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor,
            g: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        x = h.detach().requires_grad_()
        fn(x).backward(g)

    return run


def make_activation(m: int, n: int, d_sae: int) -> RationalActivation:
    gen = torch.Generator().manual_seed(m * 100 + n)
    return RationalActivation(torch.randn(m + 1, generator=gen) / (m + 1),
                              torch.randn(n, generator=gen) / max(n, 1), c_in=2.0, d_sae=d_sae)


def sae_step(act: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, w_enc: torch.Tensor,
             w_dec: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        z = act(x @ w_enc)
        loss = ((z @ w_dec - x) ** 2).sum(-1).mean()
        loss.backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--d-sae", type=int, default=4608)
    parser.add_argument("--d-in", type=int, default=576)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--naive-repeats", type=int, default=3, help="repeats for the (slow) naive chain")
    parser.add_argument("--types", default="3,2;9,8", help="rational types as 'm,n;m,n'")
    parser.add_argument("--step", action="store_true", help="also time the full SAE train step")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    types = [tuple(int(k) for k in s.split(",")) for s in args.types.split(";")]

    torch.manual_seed(0)
    h = torch.randn(args.rows, args.d_sae) * 2
    g = torch.randn(args.rows, args.d_sae)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"input [{args.rows}, {args.d_sae}] float32")
    print(f"{'relu':>16}: {median_time(fwd_bwd(torch.relu, h, g), args.repeats):.4f} s (forward + backward)")
    acts = {}
    for m, n in types:
        act = make_activation(m, n, args.d_sae)
        acts[m, n] = act
        start = time.perf_counter()
        fwd_bwd(act, h, g)()
        first = time.perf_counter() - start
        t_rat = median_time(fwd_bwd(act, h, g), args.repeats)
        t_naive = median_time(fwd_bwd(lambda x, act=act: naive_rational(x, act), h, g), args.naive_repeats)
        print(f"{f'rational {(m, n)}':>16}: {t_rat:.4f} s (first call incl. compile {first:.1f} s)")
        print(f"{f'naive {(m, n)}':>16}: {t_naive:.4f} s")

    if args.step:
        x = torch.randn(args.rows, args.d_in)
        w_enc = (torch.randn(args.d_in, args.d_sae) / args.d_in**0.5).requires_grad_()
        w_dec = (torch.randn(args.d_sae, args.d_in) / args.d_sae**0.5).requires_grad_()
        steps = {"relu": sae_step(torch.relu, x, w_enc, w_dec)}
        steps.update({f"{mn}": sae_step(act, x, w_enc, w_dec) for mn, act in acts.items()})
        wall, cpu = interleaved_times(steps, args.repeats)
        print("SAE train step, interleaved rounds (median wall s, median process CPU s, median ratios):")
        for name in steps:
            ratio_wall = statistics.median(w / r for w, r in zip(wall[name], wall["relu"], strict=True))
            ratio_cpu = statistics.median(c / r for c, r in zip(cpu[name], cpu["relu"], strict=True))
            w_med, c_med = statistics.median(wall[name]), statistics.median(cpu[name])
            print(f"{name:>12}: wall {w_med:.4f}  cpu {c_med:.4f}  ratio wall {ratio_wall:.3f}  "
                  f"ratio cpu {ratio_cpu:.3f}")


def interleaved_times(fns: dict[str, Callable[[], None]],
                      repeats: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and process-CPU times of each function, run in rounds so that load changes hit all alike."""
    for fn in fns.values():
        fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    return wall, cpu


if __name__ == "__main__":
    main()
