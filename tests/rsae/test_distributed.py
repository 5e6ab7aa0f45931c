"""Data-parallel training with torch.distributed: two gloo CPU processes against one process.

The test launches this file twice as a script with torchrun's environment variables (RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT), so the workers join through :func:`rsae.core.distributed.init_from_env` exactly as
under ``torchrun -m rsae train``. Each worker trains every case twice: 20 steps uninterrupted, and 10 steps
with checkpoints, then a fresh :meth:`Trainer.resume` (as after a kill) to step 20. Rank 0 saves the weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from rsae.core.config import SAEConfig, TrainConfig
from rsae.core.sae import SAE
from rsae.core.trainer import Trainer
from tests.rsae.conftest import run_two_gloo_ranks

CASES = {
    # BatchTopK: the global batch selection and its threshold; a short dead window switches AuxK on.
    "batchtopk": (
        dict(d_in=8, d_sae=48, family="batchtopk", k=3),
        dict(dead_window_tokens=128, auxk_coefficient=0.5),
    ),
    # JumpReLU: the L0 multiplier (dual ascent on the global mean L0).
    "jumprelu": (
        dict(d_in=8, d_sae=32, family="jumprelu", threshold_init=0.1, l0_coefficient=0.05),
        dict(l0_target=2.0, l0_target_rate=0.5),
    ),
}
STEPS = 20
ROOT = Path(__file__).resolve().parents[2]  # the workers import this checkout's rsae


def _data() -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    return torch.randn(2048, 8, generator=g) @ torch.randn(8, 8, generator=g)


def _train_config(extra: dict) -> TrainConfig:
    return TrainConfig(steps=STEPS, batch_size=64, lr=3e-3, warmup_steps=2, log_every=5, init_sample_tokens=512,
                       chunk_tokens=512, **extra)


def _run(name: str, folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(weights after 20 uninterrupted steps, weights after 10 steps + resume to 20); checkpoints in folder."""
    sae_kwargs, train_kwargs = CASES[name]
    cfg, tcfg, data = SAEConfig(**sae_kwargs), _train_config(train_kwargs), _data()
    full = Trainer(SAE.from_config(cfg, seed=1), tcfg, data, progress=False).train().sae.state_dict()
    ckpt = folder / f"{name}-ckpt"
    Trainer(SAE.from_config(cfg, seed=1), tcfg.replace(checkpoint_every=5), data, checkpoint_dir=ckpt,
            progress=False).train(until=10)
    resumed = Trainer.resume(ckpt, data, progress=False).train().sae.state_dict()
    return full, resumed


def _worker(out: Path) -> None:
    from rsae.core import distributed

    torch.set_num_threads(1)
    distributed.init_from_env("cpu")
    rank, world = distributed.world()
    assert world == 2
    for name in CASES:
        full, resumed = _run(name, out)
        if rank == 0:
            torch.save({"full": full, "resumed": resumed}, out / f"{name}.pt")
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    run_two_gloo_ranks(__file__, out, ROOT)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_two_processes_equal_one(two_process_results: Path, name: str, tmp_path: Path) -> None:
    single, _ = _run(name, tmp_path)
    ddp = torch.load(two_process_results / f"{name}.pt")
    for key, value in single.items():
        diff = float((ddp["full"][key].double() - value.double()).abs().max()) if value.numel() else 0.0
        assert diff <= 1e-5, (key, diff)
    assert any(float(v.abs().max()) > 0 for v in single.values())


@pytest.mark.parametrize("name", list(CASES))
def test_distributed_resume_matches_uninterrupted(two_process_results: Path, name: str) -> None:
    ddp = torch.load(two_process_results / f"{name}.pt")
    for key, value in ddp["full"].items():
        torch.testing.assert_close(ddp["resumed"][key], value, rtol=0, atol=0, msg=key)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
