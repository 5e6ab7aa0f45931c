"""The ``rsae`` command line: train and upgrade print one JSON object; bad input is one line (exit 2 for usage,
1 for failed work)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rsae.cli import main
from rsae.core.data import ActivationStore
from rsae.core.io import load_sae

FAST = ["--steps", "12", "--batch-size", "256", "--eval-tokens", "1024", "--no-progress", "--json"]


def _run(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    return json.loads(out)


def test_train_synthetic_json(tmp_path, capsys) -> None:
    out = tmp_path / "sae"
    result = _run(
        capsys,
        [
            "train",
            "--family",
            "topk",
            "--data",
            "synthetic",
            "--out",
            str(out),
            "--synthetic-tokens",
            "4096",
            "--d-sae",
            "64",
            *FAST,
        ],
    )
    assert result["family"] == "topk" and result["steps"] == 12
    assert set(result["metrics"]) >= {"mse", "fvu", "l0", "alive_fraction", "dead_latents"}
    assert result["metrics"]["l0"] <= 5 and 0 <= result["truth"]["mmcs"] <= 1
    assert load_sae(out).cfg.k == 5
    assert json.loads((out / "metrics.json").read_text())["steps"] == 12


def test_train_on_a_store_with_checkpoint_and_resume(tmp_path, capsys) -> None:
    rows = np.random.default_rng(0).normal(size=(3000, 8)).astype(np.float32)
    with ActivationStore.create(tmp_path / "store", d_in=8, shard_tokens=1000) as writer:
        writer.append(rows)
    argv = [
        "train",
        "--family",
        "relu",
        "--data",
        str(tmp_path / "store"),
        "--out",
        str(tmp_path / "sae"),
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        "--checkpoint-every",
        "5",
        *FAST,
    ]
    first = _run(capsys, argv)
    assert first["d_sae"] == 64 and (tmp_path / "ckpt" / "latest.json").exists()
    resumed = _run(capsys, [*argv, "--resume", "--overwrite"])
    assert resumed["steps"] == 12


@pytest.mark.parametrize(
    ("argv", "message", "expected_status"),
    [
        (["train", "--family", "gated", "--data", "synthetic", "--out", "x"], "invalid choice", 2),
        (["train", "--family", "relu", "--data", "/no/such/store", "--out", "x"], "neither", 1),
        (["train", "--family", "relu", "--data", "synthetic", "--out", "x", "--steps", "0"], "positive", 2),
        (["upgrade", "--teacher", "/no/such/sae", "--out", "x"], "not a folder", 1),
    ],
)
def test_bad_arguments_are_one_line_errors(argv, message, expected_status, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    err = capsys.readouterr().err
    assert status == expected_status
    assert err.count("\n") == 1 and message in err and err.startswith("rsae")
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary folder


def test_train_rational_and_upgrade(tmp_path, capsys) -> None:
    common = ["--synthetic-tokens", "4096", *FAST]
    _run(
        capsys,
        [
            "train",
            "--family",
            "rational",
            "--gate",
            "relu",
            "--data",
            "synthetic",
            "--d-sae",
            "64",
            "--out",
            str(tmp_path / "rsae"),
            *common,
        ],
    )
    _run(
        capsys,
        [
            "train",
            "--family",
            "relu",
            "--data",
            "synthetic",
            "--d-sae",
            "64",
            "--out",
            str(tmp_path / "teacher"),
            *common,
        ],
    )
    report = _run(
        capsys,
        [
            "upgrade",
            "--teacher",
            str(tmp_path / "teacher"),
            "--out",
            str(tmp_path / "up"),
            "--calibration-tokens",
            "1024",
            *common,
        ],
    )
    assert report["flags"]["init_close"] and report["variant"] == "magnitude"
    assert load_sae(tmp_path / "up").cfg.family == "rational"
    assert load_sae(tmp_path / "up" / "init").cfg.gate == "relu"
