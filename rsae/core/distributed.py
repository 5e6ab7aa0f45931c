r"""Data-parallel training on :mod:`torch.distributed` (gloo on CPU, NCCL on CUDA).

Launched by ``torchrun --nproc_per_node N -m rsae train ...`` (which sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); :func:`init_from_env` joins the process group. The
:class:`rsae.core.trainer.Trainer` then

* splits every global batch of ``batch_size`` tokens into ``WORLD_SIZE`` equal, disjoint row blocks (rank r
  takes block r), so one command trains the same model on 1 or N processes;
* averages the gradients over the ranks (one flat all-reduce per step), which equals the gradient of the
  global-batch loss because every loss term is a mean over tokens of equal-sized blocks;
* keeps every data-dependent piece of state identical on all ranks: the dead-latent counters (a latent fired
  if it fired on any rank, MAX all-reduce), the L0 multiplier (global mean L0), the BatchTopK selection
  (the k·B largest entries of the *global* batch, from an all-gather of each rank's candidates) and its
  threshold (global minimum), and the data-dependent initialisation (every rank draws the same sample; the
  parameters are then broadcast from rank 0);
* lets rank 0 alone write checkpoints and the final model (the others wait at a barrier).

Example
-------
>>> from rsae.core.distributed import world
>>> world()  # outside torchrun
(0, 1)
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "all_gather_cat",
    "all_reduce_",
    "average_gradients_",
    "barrier",
    "broadcast_module_",
    "init_from_env",
    "is_distributed",
    "world",
]


def is_distributed() -> bool:
    """Whether a process group with more than one process is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    if not is_distributed():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def init_from_env(device: str) -> str:
    """Join the process group described by torchrun's environment and return this rank's device.

    Does nothing (and returns ``device``) unless ``WORLD_SIZE`` > 1. Backend: NCCL for ``cuda`` devices (each
    rank on ``cuda:LOCAL_RANK``), gloo otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    cuda = device.startswith("cuda")
    if cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return device


def all_reduce_(tensor: Tensor, op: str = "sum") -> Tensor:
    """In-place all-reduce (``sum``, ``max``, ``min`` or ``mean``); the identity outside a process group."""
    if not is_distributed():
        return tensor
    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN, "mean": dist.ReduceOp.SUM}
    dist.all_reduce(tensor, op=ops[op])
    if op == "mean":
        tensor /= dist.get_world_size()
    return tensor


def all_gather_cat(tensor: Tensor) -> Tensor:
    """Concatenation over the ranks (in rank order) of equal-shaped tensors; ``tensor`` itself outside."""
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def average_gradients_(parameters: Iterable[nn.Parameter]) -> None:
    """Replace each gradient by its mean over the ranks (one flat all-reduce; a missing gradient counts as 0)."""
    if not is_distributed():
        return
    params = [p for p in parameters if p.requires_grad]
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.int32)
    all_reduce_(has_grad.to(params[0].device), "max")
    params = [p for p, flag in zip(params, has_grad.tolist()) if flag]  # no gradient on any rank: left None
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    all_reduce_(flat, "mean")
    offset = 0
    for p in params:
        n = p.grad.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n


@torch.no_grad()
def broadcast_module_(module: nn.Module, src: int = 0) -> None:
    """Copy every parameter and buffer of ``module`` from rank ``src`` to all ranks."""
    if not is_distributed():
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src)


def barrier() -> None:
    """Wait for all ranks (nothing to do outside a process group)."""
    if is_distributed():
        dist.barrier()
