"""Fused against eager φ on gathered entries: one training step of each rational case of bench_train_step.

Builds every rational case twice from the same seed and batch, once with ``Rational.gathered_min_numel`` = 2¹⁸
(the rational module's general ``min_numel``: gathered tensors below it run eagerly, the behaviour before the
setting existed) and once with the default 2¹⁵ (fused), runs forward + backward once, and prints the largest
|fused − eager| / max |eager| of the loss, the codes and every gradient (0 means bit-identical).

    python benchmarks/check_gathered_kernels.py [--batch 4096] [--density 0.005]
"""

from __future__ import annotations

import argparse
import json

from bench_train_step import CASES, GENERAL_MIN_NUMEL, Case


def compare(name: str, batch: int, density: float | None) -> dict:
    results = []
    for gathered in (GENERAL_MIN_NUMEL, None):
        case = Case(CASES[name], 576, 4608, batch, "cpu", False, gathered_min_numel=gathered, density=density)
        out = case.sae(case.x, dead_mask=case.dead, auxk_coefficient=1 / 32)
        out.losses.total.backward()
        results.append({"loss": out.losses.total.detach(), "codes": out.codes.detach(),
                        **{n: p.grad for n, p in case.sae.named_parameters() if p.grad is not None}})
    eager, fused = results
    rel = {k: float((fused[k] - eager[k]).abs().max() / eager[k].abs().max().clamp_min(1e-30)) for k in eager}
    return {"case": name, "entries": int((eager["codes"] != 0).sum()), "max_relative": max(rel.values()),
            "relative": rel}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--density", type=float, default=0.005, help="as bench_train_step --density")
    args = parser.parse_args()
    for name in CASES:
        if name.startswith("rational/"):
            print(json.dumps(compare(name, args.batch, args.density)), flush=True)


if __name__ == "__main__":
    main()
