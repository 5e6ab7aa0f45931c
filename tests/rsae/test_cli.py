"""The ``rsae`` command line: train and upgrade print one JSON object; bad input is one line, with the exit
statuses of rational_approx.cliutil (2 usage or bad input, 1 failed work or a bug, 130 interrupted)."""

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
        (["train", "--family", "relu", "--data", "/no/such/store", "--out", "x"], "neither", 2),
        (["train", "--family", "relu", "--data", "synthetic", "--out", "x", "--steps", "0"], "positive", 2),
        (["upgrade", "--teacher", "/no/such/sae", "--out", "x"], "not a folder", 2),
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


# ------------------------------------------------------------- the exit-status convention (rational_approx.cliutil)
def _status(capsys, argv: list[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``rsae argv``, argparse's SystemExit included."""
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


SYNTHETIC = ["train", "--family", "relu", "--data", "synthetic", "--synthetic-tokens", "2048"]


@pytest.mark.parametrize(
    ("extra", "status", "start"),
    [
        ([], 0, ""),
        (["--no-such-option"], 2, "rsae: error: unrecognized arguments"),
        (["--steps", "zero"], 2, "rsae train: error: argument --steps"),
        (["--lr", "nan"], 2, "rsae train: error: "),  # ConfigError from the work: bad input
        (["--eval-data", "x"], 2, "rsae train: error: --eval-data does not apply"),
        (["--lr", "1e30"], 1, "rsae train: error: "),  # TrainingError: the work ran and diverged
    ],
)
def test_exit_status_convention(extra, status, start, tmp_path, capsys) -> None:
    code, out, err = _status(capsys, [*SYNTHETIC, "--out", str(tmp_path / "o"), *FAST, *extra])
    assert code == status, err
    if status == 0:
        assert json.loads(out)["command"] == "train"
    else:
        assert out == "" and err.count("\n") == 1 and err.startswith(start) and "Traceback" not in err
        assert not (tmp_path / "o").exists()
    if extra == ["--lr", "1e30"]:
        assert "diverged" in err


def test_interrupt_is_130_and_one_line(tmp_path, capsys, monkeypatch) -> None:
    from rsae.core.trainer import Trainer

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "train", interrupted)
    code, out, err = _status(capsys, [*SYNTHETIC, "--out", str(tmp_path / "o"), *FAST])
    assert code == 130 and out == "" and err == "rsae train: error: interrupted\n"
    assert not (tmp_path / "o").exists()


def test_internal_error_is_1_with_the_hint_and_traceback_reraises(tmp_path, capsys, monkeypatch) -> None:
    from rsae.core.trainer import Trainer

    def bug(self, *args, **kwargs):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(Trainer, "train", bug)
    monkeypatch.delenv("RSAE_TRACEBACK", raising=False)
    argv = [*SYNTHETIC, "--out", str(tmp_path / "o"), *FAST]
    code, out, err = _status(capsys, argv)
    assert code == 1 and out == ""
    assert err == "rsae train: error: internal error (ZeroDivisionError: oops); rerun with --traceback to see the " \
                  "traceback\n"
    with pytest.raises(ZeroDivisionError, match="oops"):
        main([*argv, "--traceback"])
    monkeypatch.setenv("RSAE_TRACEBACK", "1")  # the older spelling still works
    with pytest.raises(ZeroDivisionError, match="oops"):
        main(argv)


def test_exit_table_shares_rational_approx_rows() -> None:
    from rational_approx.cliutil import exit_status
    from rational_approx.errors import ConvergenceError, TargetError
    from rsae.cli import EXIT_STATUS
    from rsae.errors import ConfigError, DataError, ModelLoadError, RSAEError, SAEFileError, TrainingError

    expected = {TrainingError: 1, ConfigError: 2, DataError: 2, SAEFileError: 2, ModelLoadError: 2, RSAEError: 1,
                ConvergenceError: 1, TargetError: 2, OSError: 1}
    assert {cls: exit_status(cls("x"), EXIT_STATUS) for cls in expected} == expected
    assert exit_status(ValueError("x"), EXIT_STATUS) is None  # a plain ValueError inside rsae's work is a bug
