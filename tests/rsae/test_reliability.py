"""The hostile-input pass over the rsae command line, API and files (issue 12), one test per input class.

Each class lists the inputs it tries; every input must give the documented behaviour: one line on stderr with
the documented exit status (command line), a typed error naming the culprit (API), or the correct answer, and
never a traceback, an exit 0 with a wrong answer, or an overwritten file. ``CLASSES`` is the matrix of
docs/reliability.md; ``python3 -m tests.rsae.test_reliability`` prints that table, and
:func:`test_matrix_in_docs_is_current` checks the committed one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from rsae.cli import main
from rsae.core.config import SAEConfig, TrainConfig
from rsae.core.data import ActivationStore, TensorSource
from rsae.core.io import save_sae
from rsae.core.sae import SAE
from rsae.core.strict_json import REASONS_KEY, dumps
from rsae.core.trainer import Trainer, _sha256
from rsae.errors import ConfigError, DataError, ModelLoadError, SAEFileError, TrainingError
from tests.rsae.conftest import make_config

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"


class InputClass(NamedTuple):
    """One row of the matrix: a class of hostile input, what must happen, and the test that tries it."""

    items: str
    """Numbered items of issue 12 (``11§3``: issue 11, section 3)."""
    name: str
    behaviour: str
    test: str
    inputs: tuple[str, ...]
    """Parametrisation ids: the inputs tried."""


# ------------------------------------------------------------------------------------------------ helpers
class WorkStarted(BaseException):
    """Raised by the guard when training starts in a case that must fail before any work."""


@pytest.fixture
def no_work(monkeypatch) -> None:
    """Fail the case if a Trainer starts training (the error had to come before the work)."""

    def refuse(self, *args, **kwargs):
        raise WorkStarted("training started although the input was invalid")

    monkeypatch.setattr(Trainer, "train", refuse)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``rsae argv`` run in-process."""
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:
        status = int(exc.code)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line(status: int, err: str, expected_status: int, message: str) -> None:
    assert status == expected_status, err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith(("rsae ", "rsae:")), err
    assert message.lower() in err.lower(), err


def stray(folder: Path) -> list[str]:
    """Temporary folders or files left behind by a writer."""
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name or ".old-" in p.name)


def make_store(folder: Path, rows: np.ndarray) -> Path:
    with ActivationStore.create(folder, d_in=rows.shape[1], shard_tokens=1024) as writer:
        writer.append(rows)
    return folder


FAST = ["--steps", "6", "--batch-size", "256", "--eval-tokens", "512", "--no-progress", "--json"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Shared read-only inputs: two stores (widths 8 and 6) and a saved ReLU teacher of width 8."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    store8 = make_store(root / "store8", rng.normal(size=(2048, 8)).astype(np.float32))
    store6 = make_store(root / "store6", rng.normal(size=(1024, 6)).astype(np.float32))
    teacher = save_sae(SAE.from_config(SAEConfig(d_in=8, d_sae=16, family="relu"), seed=0), root / "teacher")
    return {"store8": store8, "store6": store6, "teacher": teacher}


def train_args(out: Path, data: Path | str, *extra: Any, family: str = "relu") -> list[Any]:
    return ["train", "--family", family, "--data", data, "--out", out, "--d-sae", "16", *FAST, *extra]


# ------------------------------------------------------------------------------- 1. non-finite training
NONFINITE_CLI = {
    "lr-inf": (["--lr", "inf"], 2, "finite"),
    "lr-nan": (["--lr", "nan"], 2, "finite"),
    "lr-1e30": (["--lr", "1e30"], 1, "diverged at step"),
    "l1-inf": (["--l1", "inf"], 2, "finite"),
    "l1-negative": (["--l1", "-1"], 2, ">= 0"),
}


@pytest.mark.parametrize("case", sorted(NONFINITE_CLI))
def test_nonfinite_settings_stop_with_one_line(case, inputs, tmp_path, capsys) -> None:
    extra, expected, message = NONFINITE_CLI[case]
    status, out, err = run_cli(train_args(tmp_path / "out", inputs["store8"], *extra), capsys)
    assert_one_line(status, err, expected, message)
    assert out == "" and not (tmp_path / "out").exists() and stray(tmp_path) == []


def test_l0_nan_for_jumprelu(inputs, tmp_path, capsys) -> None:
    status, _, err = run_cli(train_args(tmp_path / "out", inputs["store8"], "--l0", "nan", family="jumprelu"), capsys)
    assert_one_line(status, err, 2, "finite")


def test_nonfinite_data_is_refused(tmp_path, capsys) -> None:
    rows = np.random.default_rng(1).normal(size=(1024, 8)).astype(np.float32)
    with pytest.raises(DataError, match="NaN or inf in 1 of"):
        TensorSource(np.where(np.arange(1024)[:, None] == 7, np.nan, rows))
    with pytest.raises(DataError, match="NaN or inf"):
        Trainer(SAE.from_config(make_config("relu", d_in=8)), TrainConfig(steps=2, batch_size=64),
                torch.full((128, 8), torch.inf))
    # A store written without rsae's checks: the shard is refused as it is read, naming it.
    store = make_store(tmp_path / "store", rows)
    shard = np.load(store / "shard_00000.npy")
    shard[3, 2] = np.inf
    np.save(store / "shard_00000.npy", shard)
    status, _, err = run_cli(train_args(tmp_path / "out", store), capsys)
    assert_one_line(status, err, 2, "shard_00000.npy holds NaN or inf")
    assert not (tmp_path / "out").exists()


def test_divergence_keeps_the_last_good_checkpoint(tmp_path) -> None:
    x = torch.randn(1024, 6)
    cfg = TrainConfig(steps=20, batch_size=128, warmup_steps=1, checkpoint_every=5, init_sample_tokens=256)
    trainer = Trainer(SAE.from_config(make_config("relu"), seed=0), cfg, x, progress=False, checkpoint_dir=tmp_path)
    trainer.train(until=5)
    with torch.no_grad():
        trainer.sae.W_enc[0, 0] = float("nan")  # a poisoned weight: the next loss is NaN
    with pytest.raises(TrainingError, match=r"diverged at step 6 of 20: the loss is not finite.*step_0000005"):
        trainer.train()
    assert json.loads((tmp_path / "latest.json").read_text())["step"] == 5
    resumed = Trainer.resume(tmp_path, x, progress=False)
    assert all(bool(torch.isfinite(p).all()) for p in resumed.sae.parameters())


def test_nonfinite_config_values_are_refused() -> None:
    for field in ("l1_coefficient", "l0_coefficient", "threshold_init", "rational_c_in"):
        for value in (float("inf"), float("nan")):
            with pytest.raises(ConfigError, match=f"{field} must be"):
                SAEConfig(d_in=4, d_sae=8, **{field: value})
    for field in ("lr", "decay_fraction", "l0_target", "grad_clip", "adam_eps", "auxk_coefficient"):
        with pytest.raises(ConfigError, match=f"{field} must be"):
            TrainConfig(**{field: float("nan")})


# ------------------------------------------------------------------------------ 2./4. output folders
OUT_CASES = {
    "non-empty": (lambda p: (p.mkdir(), (p / "keep.txt").write_text("old")), [], 2, "not empty"),
    "is-a-file": (lambda p: p.write_text("old"), [], 2, "is a file"),
    "under-a-file": (lambda p: p.parent.joinpath("f").write_text("x"), ["--out-sub"], 2, "cannot write"),
    "proc": (None, ["--out-proc"], 2, "cannot write"),
    "holds-the-data": (None, ["--out-data", "--overwrite"], 2, "holds the input"),
    "root": (None, ["--out-root"], 2, "root"),
    "empty-string": (None, ["--out-empty"], 2, "--out is empty"),
}


@pytest.mark.parametrize("case", sorted(OUT_CASES))
def test_bad_out_is_refused_before_work(case, inputs, tmp_path, capsys, no_work) -> None:
    prepare, flags, expected, message = OUT_CASES[case]
    out = tmp_path / "out"
    data = inputs["store8"]
    if prepare is not None:
        prepare(out)
    before = sorted((p.name, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    if "--out-sub" in flags:
        out = tmp_path / "f" / "sub"
    elif "--out-proc" in flags:
        out = Path("/proc/rsae-reliability/out")
    elif "--out-root" in flags:
        out = Path("/")
    elif "--out-empty" in flags:
        out = ""
    elif "--out-data" in flags:
        data = tmp_path / "out" / "store"
        make_store(data, np.ones((512, 8), dtype=np.float32))
        before = sorted((p.name, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    extra = [f for f in flags if not f.startswith("--out-")]
    status, _, err = run_cli(train_args(out, data, *extra), capsys)
    assert_one_line(status, err, expected, message)
    assert sorted((p.name, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()) == before
    assert stray(tmp_path) == []


def test_overwrite_replaces_atomically(inputs, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    status, stdout, err = run_cli(train_args(out, inputs["store8"], "--overwrite"), capsys)
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["cfg.json", "metrics.json", "sae_weights.safetensors"]
    assert json.loads(stdout)["steps"] == 6 and stray(tmp_path) == []


# ----------------------------------------------------------------------------- 3. checkpoint folders
CHECKPOINT_DIR_CASES = {
    "another-run-without-resume": ("run", [], 2, "holds the checkpoints of another run"),
    "resume-an-empty-folder": ("empty", ["--resume"], 2, "nothing to resume"),
    "is-a-file": ("file", [], 2, "is a file"),
    "inside-out": ("inside", [], 2, "outside --out"),
    "proc": ("proc", [], 2, "cannot write --checkpoint-dir"),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINT_DIR_CASES))
def test_checkpoint_folder_is_checked_before_work(case, inputs, tmp_path, capsys, no_work) -> None:
    kind, extra, expected, message = CHECKPOINT_DIR_CASES[case]
    ckpt = {"inside": tmp_path / "out" / "ckpt", "proc": Path("/proc/rsae-reliability")}.get(kind, tmp_path / "ckpt")
    if kind == "run":
        ckpt.mkdir()
        (ckpt / "latest.json").write_text('{"checkpoint": "step_0000020", "step": 20}')
    elif kind == "empty":
        ckpt.mkdir()
    elif kind == "file":
        ckpt.write_text("x")
    before = sorted((p.name, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    argv = train_args(tmp_path / "out", inputs["store8"], "--checkpoint-dir", ckpt, *extra)
    if "--resume" in extra:  # a resumed run takes its model from the checkpoint
        argv.remove("--d-sae")
        argv.remove("16")
    status, _, err = run_cli(argv, capsys)
    assert_one_line(status, err, expected, message)
    assert sorted((p.name, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()) == before


def test_api_refuses_another_runs_checkpoint_folder(tmp_path) -> None:
    x = torch.randn(512, 6)
    cfg = TrainConfig(steps=4, batch_size=128, warmup_steps=1, init_sample_tokens=128)
    Trainer(SAE.from_config(make_config("relu")), cfg, x, progress=False, checkpoint_dir=tmp_path).train(until=2)
    latest = (tmp_path / "latest.json").read_text()
    with pytest.raises(ConfigError, match="another run"):
        Trainer(SAE.from_config(make_config("relu")), cfg, x, progress=False, checkpoint_dir=tmp_path).train()
    assert (tmp_path / "latest.json").read_text() == latest


# -------------------------------------------------------------------------------------- 5. data widths
WIDTH_CASES = {
    "train-eval-data": (lambda i, out: train_args(out, i["store8"], "--eval-data", i["store6"]), 2, "eval-data"),
    "train-eval-data-with-synthetic": (
        lambda i, out: train_args(out, "synthetic", "--eval-data", i["store6"], "--synthetic-tokens", "2048"),
        2,
        "does not apply",
    ),
    "upgrade-data": (
        lambda i, out: ["upgrade", "--teacher", i["teacher"], "--data", i["store6"], "--out", out, *FAST],
        2,
        "width",
    ),
    "upgrade-eval-data": (
        lambda i, out: ["upgrade", "--teacher", i["teacher"], "--data", i["store8"], "--eval-data", i["store6"],
                        "--out", out, *FAST],
        2,
        "eval-data",
    ),
}


@pytest.mark.parametrize("case", sorted(WIDTH_CASES))
def test_data_widths_are_checked_before_work(case, inputs, tmp_path, capsys, no_work) -> None:
    argv, expected, message = WIDTH_CASES[case]
    status, _, err = run_cli(argv(inputs, tmp_path / "out"), capsys)
    assert_one_line(status, err, expected, message)
    assert not (tmp_path / "out").exists() and stray(tmp_path) == []


# ------------------------------------------------------------------------------ 7. one line, exit codes
ONE_LINE_CASES = {
    "init-gate-foo-train": (["--family", "rational", "--init-gate", "foo"], 2, "init gate must be one of"),
    "device-cuda-99": (["--device", "cuda:99"], 2, "cuda"),
    "device-bogus": (["--device", "bogus"], 2, "not a torch device"),
    "device-meta": (["--device", "meta"], 2, "not supported"),
    "unknown-option": (["--no-such-option"], 2, "unrecognized arguments"),
    "steps-not-a-number": (["--steps", "abc"], 2, "positive integer"),
    "rational-type-garbage": (["--family", "rational", "--rational-type", "3"], 2, "m,n"),
}


@pytest.mark.parametrize("case", sorted(ONE_LINE_CASES))
def test_bad_values_are_one_line(case, inputs, tmp_path, capsys, no_work) -> None:
    extra, expected, message = ONE_LINE_CASES[case]
    argv = train_args(tmp_path / "out", inputs["store8"], *extra)
    if "--family" in extra:  # the case chooses its own family
        argv = [argv[0], *argv[3:]]
    status, _, err = run_cli(argv, capsys)
    assert_one_line(status, err, expected, message)


def test_upgrade_init_gate_is_one_line(inputs, tmp_path, capsys, no_work) -> None:
    argv = ["upgrade", "--teacher", inputs["teacher"], "--data", inputs["store8"], "--out", tmp_path / "o",
            "--init-gate", "foo", *FAST]
    status, _, err = run_cli(argv, capsys)
    assert_one_line(status, err, 2, "init gate must be one of")


UNEXPECTED = {
    "internal-error": (RuntimeError("boom\nsecond line"), 1,
                       "rsae train: error: internal error (RuntimeError: boom second line); rerun with --traceback"),
    "os-error": (OSError(28, "No space left on device"), 1, "OSError: [Errno 28] No space left on device"),
    "rational-approx-error": (None, 2, "degenerate"),
    "interrupt": (KeyboardInterrupt(), 130, "rsae train: error: interrupted"),
}


@pytest.mark.parametrize("case", sorted(UNEXPECTED))
def test_unexpected_failures_are_one_line(case, inputs, tmp_path, capsys, monkeypatch) -> None:
    from rational_approx.errors import TargetError

    exc, expected, message = UNEXPECTED[case]
    exc = exc if exc is not None else TargetError("the target is degenerate on this domain")

    def fail(self, *args, **kwargs):
        raise exc

    monkeypatch.setattr(Trainer, "train", fail)
    monkeypatch.delenv("RSAE_TRACEBACK", raising=False)
    status, _, err = run_cli(train_args(tmp_path / "out", inputs["store8"]), capsys)
    assert_one_line(status, err, expected, message)
    assert not (tmp_path / "out").exists() and stray(tmp_path) == []


def test_the_real_entry_point_prints_one_line(inputs, tmp_path) -> None:
    import subprocess

    argv = [sys.executable, "-m", "rsae", "train", "--family", "relu", "--data", str(inputs["store8"]), "--out",
            str(tmp_path / "out"), "--device", "cuda:99"]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert_one_line(done.returncode, done.stderr, 2, "cuda:99")
    assert done.stdout == ""


# ---------------------------------------------------------------------- 8./19. damaged checkpoints
def _rewrite(folder: Path, file: str, change) -> None:
    """Apply ``change`` to the tensors of ``file`` and re-record its checksum (damage that still parses)."""
    tensors = load_file(str(folder / file))
    change(tensors)
    save_file(tensors, str(folder / file))
    state = json.loads((folder / "trainer_state.json").read_text())
    state["sha256"][file] = _sha256(folder / file)
    (folder / "trainer_state.json").write_text(json.dumps(state))


def _edit_state(folder: Path, change) -> None:
    state = json.loads((folder / "trainer_state.json").read_text())
    change(state)
    (folder / "trainer_state.json").write_text(json.dumps(state))


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _nan(tensors):
    tensors["model.W_dec"][0, 0] = float("nan")


DAMAGE = {
    "no-sae-config": (lambda f: _edit_state(f, lambda s: s.pop("sae_config")), "trainer_state.json"),
    "step-abc": (lambda f: _edit_state(f, lambda s: s.update(step="abc")), "trainer_state.json"),
    "unknown-format": (lambda f: _edit_state(f, lambda s: s.update(format="other/9")), "trainer_state.json"),
    "bad-sae-config": (lambda f: _edit_state(f, lambda s: s["sae_config"].update(d_sae=-1)), "trainer_state.json"),
    "bad-betas": (
        lambda f: _edit_state(f, lambda s: s["optimizer_param_groups"][0].update(betas=7)),
        "trainer_state.json",
    ),
    "truncated-state": (lambda f: (f / "trainer_state.json").write_text('{"format": '), "trainer_state.json"),
    "no-rng": (lambda f: _rewrite(f, "model.safetensors", lambda t: t.pop("rng.cpu")), "model.safetensors"),
    "wrong-shape": (
        lambda f: _rewrite(f, "model.safetensors", lambda t: t.update({"model.W_enc": torch.zeros(6, 13)})),
        "model.safetensors",
    ),
    "nan-weight": (lambda f: _rewrite(f, "model.safetensors", _nan), "model.safetensors"),
    "stray-optimizer-key": (
        lambda f: _rewrite(f, "optimizer.safetensors", lambda t: t.update({"state.0.foo": torch.zeros(1)})),
        "optimizer.safetensors",
    ),
    "optimizer-wrong-shape": (
        lambda f: _rewrite(f, "optimizer.safetensors", lambda t: t.update({"state.0.exp_avg": torch.zeros(2)})),
        "optimizer.safetensors",
    ),
    "flipped-byte-model": (lambda f: _flip_byte(f / "model.safetensors"), "model.safetensors"),
    "flipped-byte-optimizer": (lambda f: _flip_byte(f / "optimizer.safetensors"), "optimizer.safetensors"),
    "model-file-missing": (lambda f: (f / "model.safetensors").unlink(), "model.safetensors"),
    "latest-outside-the-run": (
        lambda f: (f.parent / "latest.json").write_text('{"checkpoint": "../other/step_0000004"}'),
        "latest.json",
    ),
    "latest-absent-step": (
        lambda f: (f.parent / "latest.json").write_text('{"checkpoint": "step_9999999"}'),
        "latest.json",
    ),
    "latest-not-json": (lambda f: (f.parent / "latest.json").write_text("step_0000004"), "latest.json"),
}


@pytest.fixture(scope="module")
def checkpoint_run(tmp_path_factory) -> tuple[Path, torch.Tensor]:
    root = tmp_path_factory.mktemp("run")
    x = torch.randn(512, 6, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=8, batch_size=128, warmup_steps=1, init_sample_tokens=128)
    Trainer(SAE.from_config(make_config("relu")), cfg, x, progress=False, checkpoint_dir=root / "ckpt").train(until=4)
    return root / "ckpt", x


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_checkpoints_are_typed_errors_naming_the_file(case, checkpoint_run, tmp_path) -> None:
    import shutil

    source, x = checkpoint_run
    ckpt = tmp_path / "ckpt"
    shutil.copytree(source, ckpt)
    damage, culprit = DAMAGE[case]
    damage(ckpt / "step_0000004")
    with pytest.raises(SAEFileError, match=culprit.replace(".", r"\.")):
        Trainer.resume(ckpt, x, progress=False)


def test_damaged_checkpoint_on_the_command_line(inputs, tmp_path, capsys) -> None:
    ckpt = tmp_path / "ckpt"
    assert run_cli(train_args(tmp_path / "out", inputs["store8"], "--checkpoint-dir", ckpt), capsys)[0] == 0
    _flip_byte(ckpt / "step_0000006" / "model.safetensors")
    resume = ["train", "--family", "relu", "--data", inputs["store8"], "--out", tmp_path / "out", "--checkpoint-dir",
              ckpt, "--resume", "--overwrite", *FAST]
    status, _, err = run_cli(resume, capsys)
    assert_one_line(status, err, 2, "does not match the checksum")


# --------------------------------------------------------------------------- 10. pickled model weights
def test_pickled_language_model_weights_are_refused(tmp_path) -> None:
    from rsae.lm.loading import load_language_model

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    marker = tmp_path / "unpickled"
    payload = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."  # protocol-0 pickle running a command
    (folder / "pytorch_model.bin").write_bytes(payload)
    with pytest.raises(ModelLoadError, match="only pickled weights .pytorch_model.bin.*safetensors"):
        load_language_model(folder, use_cache=False)
    assert not marker.exists()


# -------------------------------------------------------------------- 20. dtypes and options that do not apply
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float64"])
def test_sae_casts_float_inputs_to_its_dtype(dtype) -> None:
    reference = SAE.from_config(make_config("relu", d_in=8), seed=0)
    sae = SAE.from_config(make_config("relu", d_in=8, dtype=dtype), seed=0)
    x = torch.randn(16, 8)
    codes = sae.encode(x)
    assert codes.dtype == getattr(torch, dtype)
    torch.testing.assert_close(codes.float(), reference.encode(x), atol=0.05, rtol=0.05)
    assert bool(torch.isfinite(sae(x).losses.total))


@pytest.mark.parametrize("bad", ["width", "integer"])
def test_sae_refuses_inputs_it_cannot_take(bad) -> None:
    sae = SAE.from_config(make_config("relu", d_in=8), seed=0)
    x = torch.randn(4, 7) if bad == "width" else torch.ones(4, 8, dtype=torch.long)
    with pytest.raises(DataError, match=r"floating-point inputs \[..., d_in = 8\]"):
        sae.encode(x)


NOT_APPLICABLE = {
    "gate-for-relu": (["--family", "relu", "--gate", "jumprelu"], "applies to --family rational only"),
    "rational-type-for-topk": (["--family", "topk", "--rational-type", "3,2"], "applies to --family rational"),
    "init-gate-for-jumprelu": (["--family", "jumprelu", "--init-gate", "relu"], "applies to --family rational"),
    "k-for-relu": (["--family", "relu", "--k", "4"], "--k does not apply"),
    "l1-for-topk": (["--family", "topk", "--l1", "0.1"], "--l1 does not apply"),
    "l0-for-relu": (["--family", "relu", "--l0", "0.1"], "--l0 does not apply"),
    "l1-for-rational-topk-gate": (["--family", "rational", "--gate", "topk", "--l1", "1"], "--l1 does not apply"),
    "model-options-with-resume": (["--family", "relu", "--resume", "--d-sae", "8"], "resumed run"),
}


@pytest.mark.parametrize("case", sorted(NOT_APPLICABLE))
def test_options_that_do_not_apply_are_refused(case, inputs, tmp_path, capsys, no_work) -> None:
    extra, message = NOT_APPLICABLE[case]
    argv = ["train", "--data", inputs["store8"], "--out", tmp_path / "out", "--checkpoint-dir", tmp_path / "c",
            *FAST, *extra]
    status, _, err = run_cli(argv, capsys)
    assert_one_line(status, err, 2, message)


# ----------------------------------------------------------------------------------------- strict JSON
def _strict_loads(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_strict_json_everywhere(tmp_path, capsys) -> None:
    text = dumps({"a": [1.0, float("inf")], "b": {"c": float("nan")}, "d": (np.float32(2.5), np.int64(3))})
    assert _strict_loads(text) == {"a": [1.0, None], "b": {"c": None}, "d": [2.5, 3],
                                   REASONS_KEY: {"a[1]": "inf", "b.c": "nan"}}
    # Constant data: the FVU is 0/0; every output stays strict JSON and says why it is null.
    store = make_store(tmp_path / "store", np.ones((1024, 8), dtype=np.float32))
    argv = train_args(tmp_path / "out", store, "--checkpoint-dir", tmp_path / "ckpt")
    status, out, err = run_cli(argv, capsys)
    assert status == 0, err
    for document in (out, (tmp_path / "out" / "metrics.json").read_text(),
                     (tmp_path / "ckpt" / "step_0000006" / "trainer_state.json").read_text()):
        parsed = _strict_loads(document)
        assert parsed[REASONS_KEY], parsed


# ------------------------------------------------------------------------------------------- the matrix
CLASSES: tuple[InputClass, ...] = (
    InputClass("1", "non-finite settings (`--lr inf/nan/1e30`, `--l1 inf`, `--l1 -1`)",
               "refused before work (exit 2), or the run stops at the first non-finite step with "
               "TrainingError naming it (exit 1); nothing written", "test_nonfinite_settings_stop_with_one_line",
               tuple(sorted(NONFINITE_CLI))),
    InputClass("1", "`--l0 nan` (jumprelu)", "exit 2, one line", "test_l0_nan_for_jumprelu", ("l0-nan",)),
    InputClass("1", "non-finite data (in-memory tensor, store shard with inf)",
               "DataError up front (tensors) or as the shard is read, naming the shard; exit 1",
               "test_nonfinite_data_is_refused", ("tensor", "trainer", "store")),
    InputClass("1", "a weight turning NaN mid-run", "TrainingError naming the step and the last good checkpoint; "
               "latest.json still points to it and it resumes", "test_divergence_keeps_the_last_good_checkpoint",
               ("poisoned-weight",)),
    InputClass("1", "non-finite config values (API: 4 SAEConfig and 6 TrainConfig fields)", "ConfigError",
               "test_nonfinite_config_values_are_refused", ("sae-config", "train-config")),
    InputClass("2, 4", "bad `--out` (non-empty, a file, under a file, /proc, holding the data, `/`, empty string)",
               "exit 2 before any work; every file unchanged, no temporary folder left",
               "test_bad_out_is_refused_before_work", tuple(sorted(OUT_CASES))),
    InputClass("2", "`--overwrite` of a non-empty `--out`", "replaced by a rename of the finished folder; exit 0",
               "test_overwrite_replaces_atomically", ("overwrite",)),
    InputClass("3, 4", "bad `--checkpoint-dir` (another run's, empty with `--resume`, a file, inside `--out`, /proc)",
               "exit 2 before any work; the other run's latest.json untouched",
               "test_checkpoint_folder_is_checked_before_work", tuple(sorted(CHECKPOINT_DIR_CASES))),
    InputClass("3", "API: a fresh Trainer in a used checkpoint folder", "ConfigError; latest.json untouched",
               "test_api_refuses_another_runs_checkpoint_folder", ("trainer",)),
    InputClass("5", "data of the wrong width (`--eval-data`, `upgrade --data/--eval-data`), `--eval-data` with "
               "synthetic data", "DataError before training (exit 1); exit 2 for the option that does not apply",
               "test_data_widths_are_checked_before_work", tuple(sorted(WIDTH_CASES))),
    InputClass("7", "bad option values (`--init-gate foo`, `--device cuda:99/bogus/meta`, unknown option, "
               "`--steps abc`, `--rational-type 3`)", "one line, exit 2, before any work",
               "test_bad_values_are_one_line", tuple(sorted(ONE_LINE_CASES))),
    InputClass("7", "`upgrade --init-gate foo`", "one line, exit 2", "test_upgrade_init_gate_is_one_line",
               ("upgrade",)),
    InputClass("7", "failures not raised on purpose (RuntimeError, OSError, a rational_approx error, Ctrl-C)",
               "one line with the error's type; exit 1 (130 for Ctrl-C); no temporary folder left",
               "test_unexpected_failures_are_one_line", tuple(sorted(UNEXPECTED))),
    InputClass("7", "the same through `python -m rsae` (a real process, real stderr)", "one line, exit 2",
               "test_the_real_entry_point_prints_one_line", ("subprocess",)),
    InputClass("8, 19", "damaged checkpoints that still parse, flipped bytes, latest.json outside the run",
               "SAEFileError naming the file (checksums catch flipped bytes)",
               "test_damaged_checkpoints_are_typed_errors_naming_the_file", tuple(sorted(DAMAGE))),
    InputClass("8", "damaged checkpoint given to `rsae train --resume`", "one line, exit 1",
               "test_damaged_checkpoint_on_the_command_line", ("flipped-byte",)),
    InputClass("10", "a model folder with only `pytorch_model.bin` (a pickle that runs a command)",
               "ModelLoadError, nothing unpickled", "test_pickled_language_model_weights_are_refused",
               ("pickle-payload",)),
    InputClass("20", "float32 input to a bfloat16/float16/float64 SAE", "cast to the SAE's dtype (as SAELens)",
               "test_sae_casts_float_inputs_to_its_dtype", ("bfloat16", "float16", "float64")),
    InputClass("20", "input of the wrong width or an integer dtype to an SAE", "DataError",
               "test_sae_refuses_inputs_it_cannot_take", ("width", "integer")),
    InputClass("20", "options that do not apply (`--gate`/`--rational-type`/`--init-gate` off the rational family, "
               "`--k`/`--l1`/`--l0` off their gates, model options with `--resume`)", "one line, exit 2",
               "test_options_that_do_not_apply_are_refused", tuple(sorted(NOT_APPLICABLE))),
    InputClass("11§3", "NaN/inf in outputs (constant data: FVU = 0/0)", "strict JSON everywhere: null plus "
               "`null_reasons`", "test_strict_json_everywhere", ("dumps", "constant-data")),
)
"""The matrix of docs/reliability.md (section ``## rsae``)."""


def matrix_markdown() -> str:
    """The ``## rsae`` table of docs/reliability.md: one row per input class, with its number of inputs."""
    lines = ["| item | input class | behaviour | test | inputs |", "|---|---|---|---|---|"]
    for c in CLASSES:
        lines.append(f"| {c.items} | {c.name} | {c.behaviour} | `{c.test}` | {len(c.inputs)} |")
    total = sum(len(c.inputs) for c in CLASSES)
    lines.append(f"| | **{len(CLASSES)} classes** | | | **{total}** |")
    return "\n".join(lines)


def test_matrix_names_real_tests_and_docs_are_current() -> None:
    module = sys.modules[__name__]
    for c in CLASSES:
        assert callable(getattr(module, c.test, None)), c.test
    assert matrix_markdown() in DOC.read_text(encoding="utf-8"), "regenerate: python3 -m tests.rsae.test_reliability"


if __name__ == "__main__":
    sys.stdout.write(matrix_markdown() + "\n")
