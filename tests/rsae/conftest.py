"""Shared fixtures of the rsae tests (tiny sizes: every test runs in well under a second or is marked slow)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rsae.core.config import SAEConfig

# The (3, 2) best ReLU approximation on [-1, 1] (Boullé, Nakatsukasa, Townsend 2020), rounded: explicit
# coefficients keep these tests independent of the rational_approx solvers.
RELU_A = (0.021844506346038181, 0.5, 1.5957439419765594, 1.1914878839531187)
RELU_B = (0.0, 2.3829757679062375)

FAMILY_CONFIGS = {
    "relu": {"family": "relu"},
    "jumprelu": {"family": "jumprelu", "threshold_init": 0.2},
    "topk": {"family": "topk", "k": 3},
    "batchtopk": {"family": "batchtopk", "k": 3},
    "rational-relu": {"family": "rational", "rational_gate": "relu"},
    "rational-jumprelu": {"family": "rational", "rational_gate": "jumprelu", "threshold_init": 0.2,
                          "rational_tails": (0.0, 1.0)},
    "rational-topk": {"family": "rational", "rational_gate": "topk", "k": 3, "rational_tails": (0.0, 1.0)},
    "rational-batchtopk": {"family": "rational", "rational_gate": "batchtopk", "k": 3},
    "rational-cutoff": {"family": "rational", "rational_gate": "cutoff", "threshold_init": 0.1},
}


def make_config(name: str, d_in: int = 6, d_sae: int = 12, **changes) -> SAEConfig:
    """A tiny SAEConfig of the named family/gate; rational ones get explicit ReLU-fit coefficients."""
    kwargs = dict(d_in=d_in, d_sae=d_sae, **FAMILY_CONFIGS[name])
    if kwargs["family"] == "rational":
        kwargs.update(rational_a=RELU_A, rational_b=RELU_B)
    kwargs.update(changes)
    return SAEConfig(**kwargs)


@pytest.fixture(params=sorted(FAMILY_CONFIGS))
def family_name(request) -> str:
    return request.param


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def run_two_gloo_ranks(script: str | os.PathLike[str], out: Path, root: Path) -> None:
    """Run ``python script out`` as ranks 0 and 1 of a 2-process torch.distributed group (env:// rendezvous on a
    free local port, one thread each, ``root`` first on PYTHONPATH); fail with both logs unless both exit 0."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
        procs.append(subprocess.Popen([sys.executable, str(script), str(out)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
