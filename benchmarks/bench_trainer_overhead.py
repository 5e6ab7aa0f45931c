"""The Trainer's own overhead on a TopK step: its current code against costs it dropped, alternated.

``--before stream`` (default): ``before`` is a :class:`rsae.core.trainer.Trainer` with the previous behaviour
restored: every ``train(until=...)`` call starts a fresh batch stream (re-reading and re-shuffling the current chunk
of ``chunk_tokens``), and the weights are checked with ``torch.isfinite(p).all()`` per parameter.

``--before lazy``: ``before`` is the step as it was before the dense codes became lazy (docs/performance.md,
section 2): the Trainer reads the dead-latent counters' "fired" and the L0 off the dense code matrix
``SAEOutput.codes`` (so ``Support.to_dense`` runs every step), checks the weights with float64 sums, clips with
``torch.nn.utils.clip_grad_norm_`` (which multiplies every gradient, by 1 when nothing is clipped), and the sparse
backward recomputes the support's row offsets (bincount), CSR row pointer and COO indices at each use, zero-fills the
COO products' results twice (``torch.sparse.mm``) and copies the sampled product's pattern. These are swapped in
(patched) only while the ``before`` trainer runs.

``--before dense``: ``before`` is the dense threshold step as it was before the L1-and-decode node
(docs/performance.md, section 2): codes, ``SAE.decode`` and the penalty (:func:`rsae.core.activations._l1`) as
separate autograd operations (``Activation.dense_forward`` of the base class, for ReLU and the rational gates), the
fired latents read off the dense codes, the density of a threshold support counted on the whole batch with
``mask.sum()``, and the straight-through backward of JumpReLU and of the step with a float copy of the window and
the products before the reduction. This change alters results to float rounding, so when the final weights differ
the largest relative difference is printed, with the tensor it is in.

``after`` is the Trainer as it is. Both train the same model from the same weights on the same tokens in rounds of
``--steps`` steps (the way ``bench_vs_saelens.py`` advances it), alternated so that machine load hits both alike;
the final weights are compared (for ``stream`` and ``lazy`` they must be equal: those changes alter no result).
``--profile ROWS`` then profiles ``--steps`` more steps of the current Trainer (one ``train`` call) and prints the ROWS most expensive
operators by self CPU time, grouped by input shapes, which tells the [B, d_sae] passes from the [d_sae, d_in] ones.

    python benchmarks/bench_trainer_overhead.py [--family topk|relu|relu-norm|jumprelu|rational-relu|rational-jumprelu]
        [--d-sae 4608] [--steps 3] [--rounds 5] [--before stream|lazy|dense] [--profile ROWS]
"""

from __future__ import annotations

import argparse
import contextlib
import time
import warnings
from collections.abc import Iterator

import torch

from rsae.core import activations, sparse
from rsae.core import trainer as trainer_module
from rsae.core.config import SAEConfig, TrainConfig
from rsae.core.sae import SAE, SAEOutput
from rsae.core.sparse import Support
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


def _previous_transposed_product(support, weights, dense):
    indices = torch.stack([support.latents, support.rows])
    z_t = torch.sparse_coo_tensor(indices, weights.to(dense.dtype), (support.n_cols, support.n_rows),
                                  check_invariants=False)
    return torch.sparse.mm(z_t, dense)


def _previous_sampled_products(grad, table, support, chunk=1 << 13):
    n = len(support)
    if n == 0 or grad.device.type != "cpu":
        return _current["sampled"](grad, table, support, chunk)
    crow = torch.cat([support.row_offsets(), support.rows.new_tensor([n])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pattern = torch.sparse_csr_tensor(crow, support.latents, grad.new_zeros(n),
                                          size=(support.n_rows, support.n_cols), check_invariants=False)
    return torch.sparse.sampled_addmm(pattern, grad, table.T.to(grad.dtype), beta=0.0).values()


def _previous_row_offsets(self):
    counts = torch.bincount(self.rows, minlength=self.n_rows)
    return torch.cumsum(counts, 0) - counts


_current = {"sampled": sparse._sampled_products}


@contextlib.contextmanager
def _patched(patches: list[tuple[object, str, object]]) -> Iterator[None]:
    """Set each ``owner.name = value`` of ``patches`` within the block, then restore what was there."""
    saved = [(owner, name, owner.__dict__[name]) for owner, name, _ in patches]
    try:
        for owner, name, value in patches:
            setattr(owner, name, value)
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


@contextlib.contextmanager
def previous_lazy_step() -> Iterator[None]:
    """Swap in the step as it was before the lazy codes (see the module docstring)."""
    patches = [
        (sparse, "_transposed_product", _previous_transposed_product),
        (sparse, "_sampled_products", _previous_sampled_products),
        (Support, "row_offsets", _previous_row_offsets),
        (Support, "crow_indices", lambda self: torch.cat([self.row_offsets(), self.rows.new_tensor([len(self)])])),
        (Support, "transposed_indices", lambda self: torch.stack([self.latents, self.rows])),
        (Support, "flat", property(lambda self: self.rows * self.n_cols + self.latents)),
        (SAEOutput, "fired_latents", lambda self: self.codes.any(0)),
        (SAEOutput, "l0", lambda self: (self.codes != 0).sum(-1).float().mean()),
        (trainer_module, "_clip_grad_norm_", lambda params, max_norm: torch.nn.utils.clip_grad_norm_(params,
                                                                                                      max_norm)),
    ]
    with _patched(patches):
        yield


class BeforeLazyTrainer(Trainer):
    """The Trainer of :func:`previous_lazy_step` (float64 weight sums; the rest is patched in while it runs)."""

    def _check_finite_weights(self) -> None:
        params = dict(self.sae.named_parameters())
        with torch.no_grad():
            if bool(torch.isfinite(torch.stack([p.detach().sum(dtype=torch.float64) for p in params.values()])).all()):
                return
        super()._check_finite_weights()

    def train(self, until=None):
        with previous_lazy_step():
            return super().train(until)


def _previous_jumprelu_backward(ctx, grad_out):
    h, threshold = ctx.saved_tensors
    eps = ctx.bandwidth
    grad_h = grad_out * (h > threshold).to(grad_out.dtype)
    window = ((h - threshold).abs() < eps / 2).to(grad_out.dtype)
    return grad_h, (grad_out * window * (-threshold / eps)).sum_to_size(threshold.shape), None


def _previous_step_backward(ctx, grad_out):
    h, threshold = ctx.saved_tensors
    window = ((h - threshold).abs() < ctx.bandwidth / 2).to(grad_out.dtype)
    return None, (grad_out * window * (-1.0 / ctx.bandwidth)).sum_to_size(threshold.shape), None


def _previous_threshold_support(h, mask_of, max_density):
    mask = mask_of(h)
    if int(mask.sum()) > max_density * mask.numel():
        return None
    return Support.from_flat(mask.reshape(-1).nonzero().squeeze(1), mask.shape[0], mask.shape[1])


@contextlib.contextmanager
def previous_dense_step() -> Iterator[None]:
    """Swap in the dense threshold step as it was before the L1-and-decode node (see the module docstring)."""
    base = activations.Activation.dense_forward
    patches = [(activations.ReLU, "dense_forward", base), (activations.Rational, "dense_forward", base),
               (activations, "_threshold_support", _previous_threshold_support),
               (activations._JumpReLUFunction, "backward", staticmethod(_previous_jumprelu_backward)),
               (activations._StepFunction, "backward", staticmethod(_previous_step_backward))]
    with _patched(patches):
        yield


class BeforeDenseTrainer(Trainer):
    """The Trainer with the step of :func:`previous_dense_step` patched in while it runs."""

    def train(self, until=None):
        with previous_dense_step():
            return super().train(until)


FAMILIES = {
    "topk": dict(family="topk", k=32),
    "relu": dict(family="relu", l1_coefficient=5.0),
    "relu-norm": dict(family="relu", l1_coefficient=5.0, l1_weight_by_decoder_norm=True),
    "jumprelu": dict(family="jumprelu", l0_coefficient=1.0),
    "rational-relu": dict(family="rational", rational_gate="relu", l1_coefficient=5.0,
                          l1_weight_by_decoder_norm=True),
    "rational-jumprelu": dict(family="rational", rational_gate="jumprelu", l0_coefficient=1.0),
}
BEFORE = {"stream": BeforeTrainer, "lazy": BeforeLazyTrainer, "dense": BeforeDenseTrainer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", choices=list(FAMILIES), default="topk")
    parser.add_argument("--d-in", type=int, default=576)
    parser.add_argument("--d-sae", type=int, default=4608)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--tokens", type=int, default=8 * 4096)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--before", choices=list(BEFORE), default="stream",
                        help="which earlier step 'before' is (see the module docstring)")
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS")
    args = parser.parse_args()
    data = torch.randn(args.tokens, args.d_in, generator=torch.Generator().manual_seed(0))
    settings = FAMILIES[args.family]
    cfg = TrainConfig(steps=10**6, batch_size=args.batch, lr=3e-4, warmup_steps=0, decay_fraction=0.0,
                      log_every=10**6)
    trainers = {name: cls(SAE.from_config(SAEConfig(d_in=args.d_in, d_sae=args.d_sae, **settings), seed=0), cfg,
                          data, progress=False)
                for name, cls in (("before", BEFORE[args.before]), ("after", Trainer))}
    seconds = dict.fromkeys(trainers, 0.0)
    for round_ in range(args.rounds + 1):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            trainer.train(until=trainer.step + args.steps)
            if round_:
                seconds[name] += time.perf_counter() - start
    steps = args.rounds * args.steps
    after_state = trainers["after"].sae.state_dict()
    pairs = {name: (value, after_state[name]) for name, value in trainers["before"].sae.state_dict().items()}
    same = all(torch.equal(a, b) for a, b in pairs.values())
    differences = {name: float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)) for name, (a, b) in pairs.items()}
    worst_name = max(differences, key=differences.get)
    worst = differences[worst_name]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.family}, d_in {args.d_in}, "
          f"d_sae {args.d_sae}, batch {args.batch}, {args.tokens} tokens, {args.rounds} alternated rounds x "
          f"{args.steps} steps, before = {args.before}")
    for name, s in seconds.items():
        print(f"{name:6s} {s / steps * 1e3:8.1f} ms/step")
    print(f"speed-up {seconds['before'] / seconds['after']:.3f}x; final weights equal: {same}"
          + ("" if same else f" (largest difference {worst:.1e} of the tensor's largest entry, in {worst_name}; "
                                 f"W_enc {differences['W_enc']:.1e}, W_dec {differences['W_dec']:.1e})"))
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
