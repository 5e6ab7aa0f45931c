"""Train-step time (forward + backward + Adam step + decoder renormalisation) of every SAE family, side by side.

Sizes of the issue: d_in 576, d_sae 4608, batch 4096 (SmolLM2-135M residual width, 8× expansion). All models are
built first; then ``--repeats`` rounds each time one step of every case in turn (after ``--warmup`` untimed rounds,
which also absorb ``torch.compile`` of the rational kernels), so machine load hits all cases alike. Prints the
median per case, its ratio to the ReLU step and, for a rational gate, to its plain family (goal ≤ 1.10×); with
``--dense`` every case that has a sparse path is also timed with ``SAE.sparse = False`` (the dense products).
With ``--eager-gathered`` every rational case with a sparse path is also timed with φ on the gathered entries
(its support, the AuxK entries) left to the rational module's general ``min_numel`` (2¹⁸), as before
``Rational.gathered_min_numel`` existed: below it those evaluations ran eagerly (the same results).
``--density D`` shifts ``b_enc`` so that the ReLU/JumpReLU supports (families and gates) fire on a fraction D of
the tokens (a fresh model's are ~50 % dense, which takes the dense path); ``--profile ROWS`` prints a
``torch.profiler`` table of one more step of every case. ``--where-gate`` also times the relu-gated rational
with the gate as a separate ``torch.where(h > 0, φ(h), 0)`` (the formulation before the mask moved into φ's fused
kernels; the same results).

    python benchmarks/bench_train_step.py [--device cpu|cuda] [--repeats 10] [--warmup 2] [--dense]
        [--eager-gathered] [--where-gate] [--density D] [--profile ROWS] [--only CASE ...] [--json F]
"""

from __future__ import annotations

import argparse
import json
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


EAGER_GATHERED = "(eager gathered)"
WHERE_GATE = "(where gate)"
GENERAL_MIN_NUMEL = 1 << 18  # rsae.core.rational's default min_numel


def gate_of(settings: dict) -> str:
    """The support rule of a case: its family, or a rational case's gate."""
    return settings.get("rational_gate", "relu") if settings["family"] == "rational" else settings["family"]


@torch.no_grad()
def set_code_density(sae: SAE, x: torch.Tensor, density: float) -> None:
    """Shift ``b_enc`` per latent so that the gate h_j > θ_j (θ = 0 for ReLU) is open on a fraction ``density`` of
    the tokens of ``x``: a fresh model's codes are ~50 % dense, a trained threshold SAE's well under 1 %."""
    act = sae.activation
    gate = getattr(act, "gate_module", act)
    theta = gate.threshold.to(sae.dtype) if hasattr(gate, "log_threshold") else torch.zeros((), dtype=sae.dtype)
    h = sae.pre_acts(x) - theta
    closed = min(max(1, round((1 - density) * h.shape[0])), h.shape[0])
    sae.b_enc -= torch.kthvalue(h, closed, dim=0).values


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Case:
    """One model, its optimiser and a fixed batch; :meth:`step` times one full training step."""

    def __init__(self, settings: dict, d_in: int, d_sae: int, batch: int, device: str, autocast: bool,
                 sparse: bool = True, gathered_min_numel: int | None = None, density: float | None = None,
                 where_gate: bool = False) -> None:
        kwargs = dict(d_in=d_in, d_sae=d_sae, device=device, **settings)
        if settings["family"] == "rational":
            kwargs.update(rational_a=RELU_A, rational_b=RELU_B)
        self.sae = SAE.from_config(SAEConfig(**kwargs), seed=0)
        self.sae.sparse = sparse
        if gathered_min_numel is not None:
            self.sae.activation.gathered_min_numel = gathered_min_numel
        if where_gate:  # the relu gate as a separate where around φ, not masked inside φ's kernels
            fused = self.sae.activation.magnitude

            def magnitude(values, latents, positive=False):
                phi = fused(values, latents)
                return torch.where(values > 0, phi, 0) if positive else phi

            self.sae.activation.magnitude = magnitude
        self.optimizer = torch.optim.Adam(self.sae.parameters(), lr=1e-4, fused=True)  # as the Trainer
        self.x = torch.randn(batch, d_in, generator=torch.Generator().manual_seed(1)).to(device)
        if density is not None and gate_of(settings) in ("relu", "jumprelu"):
            set_code_density(self.sae, self.x, density)
        self.dead = torch.zeros(d_sae, dtype=torch.bool, device=device)
        self.dead[: d_sae // 4] = True  # AuxK runs, as it does in training once latents die
        self.device = torch.device(device)
        self.autocast = autocast
        self.times: list[float] = []
        self.l0 = float("nan")

    def step(self, record: bool) -> None:
        _sync(self.device)
        start = time.perf_counter()
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            out = self.sae(self.x, dead_mask=self.dead, auxk_coefficient=1 / 32)
        self.optimizer.zero_grad(set_to_none=True)
        out.losses.total.backward()
        self.sae.remove_parallel_decoder_grad_()
        self.optimizer.step()
        self.sae.normalize_decoder_()
        _sync(self.device)
        if record:
            self.times.append(time.perf_counter() - start)
            self.l0 = float(out.l0())  # from the support on the sparse path (= the dense codes' L0)


def plain_family(name: str) -> str | None:
    """The plain family a rational gate is compared with (``rational/jumprelu-gate`` → ``jumprelu``)."""
    if not name.startswith("rational/"):
        return None
    gate = name.removeprefix("rational/").removesuffix("-gate")
    return gate if gate in CASES else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--d-in", type=int, default=576)
    parser.add_argument("--d-sae", type=int, default=4608)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--autocast-bf16", action="store_true")
    parser.add_argument("--dense", action="store_true", help="also time the dense path of the sparse families")
    parser.add_argument("--eager-gathered", action="store_true",
                        help="also time the rational cases with phi on gathered entries eager below 2^18 entries")
    parser.add_argument("--where-gate", action="store_true",
                        help="also time rational/relu-gate with the gate as a separate where (before the fusion)")
    parser.add_argument("--density", type=float, default=None,
                        help="fraction of tokens on which each latent of the ReLU/JumpReLU families and gates fires "
                             "(b_enc shifted per latent); default: the fresh model's (~0.5)")
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS",
                        help="after timing, profile one more step of every case with torch.profiler and print its "
                             "ROWS most expensive operators (CPU total)")
    parser.add_argument("--only", nargs="*", default=None, help=f"subset of the cases: {', '.join(CASES)}")
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    args = parser.parse_args()
    if args.repeats < 1 or args.warmup < 0 or args.profile < 0:
        parser.error("--repeats must be >= 1, --warmup and --profile >= 0")
    if args.density is not None and not 0 < args.density < 1:
        parser.error(f"--density must lie in (0, 1), got {args.density}")
    if args.threads:
        torch.set_num_threads(args.threads)
    header = (
        f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, d_in {args.d_in}, "
        f"d_sae {args.d_sae}, batch {args.batch}, "
        + (f"code density {args.density} (relu/jumprelu supports), " if args.density is not None else "")
        + f"median of {args.repeats} alternated rounds"
    )
    print(header, flush=True)
    unknown = sorted(set(args.only or ()) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    cases: dict[str, Case] = {}
    for name, settings in CASES.items():
        if args.only and name not in args.only:
            continue
        cases[name] = Case(settings, args.d_in, args.d_sae, args.batch, args.device, args.autocast_bf16,
                           density=args.density)
        has_sparse = cases[name].sae.activation.select(cases[name].sae.pre_acts(cases[name].x[:2])) is not None
        if args.dense and has_sparse:
            cases[f"{name} (dense)"] = Case(settings, args.d_in, args.d_sae, args.batch, args.device,
                                            args.autocast_bf16, sparse=False, density=args.density)
        if args.eager_gathered and settings["family"] == "rational" and has_sparse:
            cases[f"{name} {EAGER_GATHERED}"] = Case(settings, args.d_in, args.d_sae, args.batch, args.device,
                                                     args.autocast_bf16, gathered_min_numel=GENERAL_MIN_NUMEL,
                                                     density=args.density)
        if args.where_gate and name == "rational/relu-gate":
            cases[f"{name} {WHERE_GATE}"] = Case(settings, args.d_in, args.d_sae, args.batch, args.device,
                                                 args.autocast_bf16, density=args.density, where_gate=True)
    for i in range(args.warmup + args.repeats):
        for case in cases.values():
            case.step(record=i >= args.warmup)
    median = {name: statistics.median(case.times) for name, case in cases.items()}
    rows = []
    for name, seconds in median.items():
        base = name.removesuffix(" (dense)").removesuffix(f" {EAGER_GATHERED}").removesuffix(f" {WHERE_GATE}")
        plain = plain_family(base)
        row = {
            "case": name,
            "ms": seconds * 1e3,
            "l0": cases[name].l0,
            "vs_relu": seconds / median["relu"] if "relu" in median else None,
            "vs_plain_family": seconds / median[plain] if plain in median and not name.endswith("(dense)") else None,
            "sparse_speedup": median[f"{base} (dense)"] / seconds if f"{base} (dense)" in median and name == base
            else None,
            "fused_gathered_speedup": median[f"{base} {EAGER_GATHERED}"] / seconds
            if f"{base} {EAGER_GATHERED}" in median and name == base else None,
            "fused_gate_speedup": median[f"{base} {WHERE_GATE}"] / seconds
            if f"{base} {WHERE_GATE}" in median and name == base else None,
        }
        rows.append(row)
        extra = "".join(
            f"  {v:6.3f}x {label}"
            for label, v in (("relu", row["vs_relu"]), (f"{plain}", row["vs_plain_family"]),
                             ("speed-up over dense", row["sparse_speedup"]),
                             ("speed-up over eager gathered", row["fused_gathered_speedup"]),
                             ("speed-up over where gate", row["fused_gate_speedup"]))
            if v is not None
        )
        print(f"{name:42s} {seconds * 1e3:9.1f} ms  L0 {row['l0']:7.1f}{extra}", flush=True)
    if args.profile > 0:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
        for name, case in cases.items():
            with profile(activities=activities) as prof:
                case.step(record=False)
            print(f"\n== profile of one step: {name}", flush=True)
            print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=args.profile,
                                            max_name_column_width=48), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"setup": header, "args": vars(args), "rows": rows}, handle, indent=2, allow_nan=False)


if __name__ == "__main__":
    main()
