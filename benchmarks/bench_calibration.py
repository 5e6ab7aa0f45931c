"""Wall time and loss of the upgrade's calibration fit (``rsae.experiments.upgrade.calibrate``) on a real teacher.

Usage (after ``make reproduce`` has written ``runs/reproduce``)::

    python benchmarks/bench_calibration.py --teacher runs/reproduce/teacher-jumprelu-l0=0.1/sae \
        --store runs/reproduce/harvest/train --variant paper --seeds 3

Prints one line per seed (the first call in the process includes the fused kernel's compilation) and, with
``--json``, one strict-JSON object. The activations are divided by the harvest's scale (``--scale``, default: read
from ``<run>/harvest/stage.json``) as in the main job.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from rsae.core.data import ActivationStore
from rsae.core.io import load_sae
from rsae.core.strict_json import dumps
from rsae.experiments.upgrade import calibrate, rsae_init


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher", type=Path, required=True)
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--scale", type=float, default=None)
    p.add_argument("--variant", choices=("magnitude", "paper"), default="magnitude")
    p.add_argument("--tokens", type=int, default=8192)
    p.add_argument("--max-entries", type=int, default=1 << 17)
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    scale = args.scale
    if scale is None:
        marker = args.store.parent / "stage.json"
        scale = json.loads(marker.read_text())["result"]["scale"] if marker.is_file() else 1.0
    x = ActivationStore.open(args.store).read_all() / scale
    teacher = load_sae(args.teacher)
    rows = []
    for seed in range(args.seeds):
        gen = torch.Generator().manual_seed(seed)
        sample = x[torch.randperm(x.shape[0], generator=gen)[: args.tokens]]
        student = rsae_init(teacher, variant=args.variant)
        t0 = time.perf_counter()
        cal = calibrate(student, teacher, sample, max_entries=args.max_entries, max_iter=args.iters, seed=seed)
        row = {"seed": seed, "seconds": time.perf_counter() - t0, "n_entries": cal.n_entries,
               "n_represented": cal.n_represented, "loss_before": cal.loss_before,
               "loss_scales_only": cal.loss_scales_only, "loss_after": cal.loss_after}
        rows.append(row)
        if not args.json:
            print(f"seed {seed}: {row['seconds']:.1f} s, {cal.n_entries} of {cal.n_represented} entries, relative "
                  f"loss {cal.loss_before:.4g} -> {cal.loss_scales_only:.4g} (scales) -> {cal.loss_after:.4g}",
                  flush=True)
    if args.json:
        print(dumps({"teacher": str(args.teacher), "variant": args.variant, "d_sae": teacher.cfg.d_sae,
                     "tokens": args.tokens, "max_entries": args.max_entries, "iters": args.iters,
                     "torch_threads": torch.get_num_threads(), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
