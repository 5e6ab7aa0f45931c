"""SAELens-layout save/load: round trip for every family, and bad folders rejected with typed errors."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from rsae.core.io import CFG_FILE, WEIGHTS_FILE, load_sae, read_cfg, save_sae
from rsae.core.sae import SAE
from rsae.errors import SAEFileError
from tests.rsae.conftest import make_config

EXPECTED_ARCH = {"relu": "standard", "jumprelu": "jumprelu", "topk": "topk", "batchtopk": "jumprelu"}


def _perturbed(name: str) -> SAE:
    sae = SAE.from_config(make_config(name), seed=3)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.01 * torch.randn_like(p))
    sae.train()
    sae(torch.randn(16, sae.cfg.d_in))  # sets the batch-top-k inference threshold
    return sae.eval()


def test_round_trip_every_family(tmp_path, family_name: str) -> None:
    sae = _perturbed(family_name)
    save_sae(sae, tmp_path / "sae", extra_cfg={"hook_name": "blocks.3.hook_resid_post"})
    cfg = json.loads((tmp_path / "sae" / CFG_FILE).read_text())
    assert cfg["architecture"] == EXPECTED_ARCH.get(family_name, "rational")
    assert cfg["hook_name"] == "blocks.3.hook_resid_post"
    tensors = load_file(str(tmp_path / "sae" / WEIGHTS_FILE))
    assert tensors["W_enc"].shape == (6, 12) and tensors["W_dec"].shape == (12, 6)
    loaded = load_sae(tmp_path / "sae")
    assert not loaded.training
    for key, value in sae.activation.file_tensors().items():
        torch.testing.assert_close(loaded.activation.file_tensors()[key], value, rtol=1e-6, atol=0)
    x = torch.randn(20, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).x_hat, sae(x).x_hat, rtol=1e-5, atol=1e-6)
        assert torch.equal(loaded.encode(x) != 0, sae.encode(x) != 0)


def test_loads_a_foreign_saelens_folder_without_rsae_section(tmp_path) -> None:
    sae = _perturbed("jumprelu")
    save_sae(sae, tmp_path / "sae")
    cfg = json.loads((tmp_path / "sae" / CFG_FILE).read_text())
    del cfg["rsae"]
    cfg["dtype"] = "torch.float32"
    (tmp_path / "sae" / CFG_FILE).write_text(json.dumps(cfg))
    loaded = load_sae(tmp_path / "sae")
    assert loaded.cfg.family == "jumprelu"
    torch.testing.assert_close(loaded.activation.file_tensors()["threshold"], sae.activation.threshold)


def _saved(tmp_path, name: str = "jumprelu"):
    folder = tmp_path / "sae"
    save_sae(_perturbed(name), folder)
    return folder, load_file(str(folder / WEIGHTS_FILE)), json.loads((folder / CFG_FILE).read_text())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.pop("threshold"), "missing \\['threshold'\\]"),
        (lambda t: t.update(extra=torch.zeros(2)), "unexpected \\['extra'\\]"),
        (lambda t: t.update(W_enc=torch.zeros(6, 11)), "shape"),
        (lambda t: t.update(b_dec=torch.zeros(6, dtype=torch.int32)), "floating"),
        (lambda t: t.update(b_enc=torch.full((12,), float("nan"))), "NaN or inf"),
        (lambda t: t.update(threshold=torch.zeros(12)), "> 0"),
    ],
)
def test_bad_tensors_rejected(tmp_path, mutate, message) -> None:
    folder, tensors, _ = _saved(tmp_path)
    mutate(tensors)
    save_file(tensors, str(folder / WEIGHTS_FILE))
    with pytest.raises(SAEFileError, match=message):
        load_sae(folder)


def test_bad_rational_scale_rejected(tmp_path) -> None:
    folder, tensors, _ = _saved(tmp_path, "rational-cutoff")
    tensors["rational_c_in"] = torch.tensor(-1.0)
    save_file(tensors, str(folder / WEIGHTS_FILE))
    with pytest.raises(SAEFileError, match="rational_c_in"):
        load_sae(folder)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.update(architecture="gated"), "unknown architecture"),
        (lambda c: c.update(normalize_activations="expected_average_only_in"), "not supported"),
        (lambda c: c["rsae"]["config"].update(d_sae=-1), "invalid configuration"),
        (lambda c: c.update(d_in=7), "disagrees"),
    ],
)
def test_bad_cfg_rejected(tmp_path, mutate, message) -> None:
    folder, _, cfg = _saved(tmp_path)
    mutate(cfg)
    (folder / CFG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(SAEFileError, match=message):
        load_sae(folder)


def test_missing_and_corrupt_files(tmp_path) -> None:
    with pytest.raises(SAEFileError, match="not a folder"):
        load_sae(tmp_path / "nothing")
    folder, _, _ = _saved(tmp_path)
    (folder / CFG_FILE).write_text("{not json")
    with pytest.raises(SAEFileError, match="cannot parse"):
        read_cfg(folder)
    folder, _, _ = _saved(tmp_path)
    data = (folder / WEIGHTS_FILE).read_bytes()
    (folder / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(SAEFileError, match="safetensors"):
        load_sae(folder)
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(SAEFileError, match="missing"):
        load_sae(folder)


def test_pickle_is_never_loaded(tmp_path) -> None:
    folder, _, _ = _saved(tmp_path)

    class Boom:
        def __reduce__(self):
            return (pytest.fail, ("a pickle was executed",))

    (folder / WEIGHTS_FILE).write_bytes(pickle.dumps(Boom()))
    with pytest.raises(SAEFileError):
        load_sae(folder)


@pytest.mark.parametrize("with_rsae_section", [True, False])
def test_shapes_are_checked_against_the_header_before_allocating(tmp_path, monkeypatch, with_rsae_section) -> None:
    folder, _, cfg = _saved(tmp_path)
    cfg["d_sae"] = 400_000_000  # 25.6 GB of float32 weights if allocated
    cfg["rsae"]["config"]["d_sae"] = 400_000_000
    if not with_rsae_section:
        del cfg["rsae"]
    (folder / CFG_FILE).write_text(json.dumps(cfg))

    def no_allocation(*args, **kwargs):
        raise AssertionError("the model was allocated before the shapes were checked")

    monkeypatch.setattr("rsae.core.io.SAE", no_allocation)
    with pytest.raises(SAEFileError, match=r"'W_enc' has shape \(6, 12\), but cfg.json .*d_sae=400000000"):
        load_sae(folder)


@pytest.mark.parametrize(("key", "value"), [("k", 8), ("apply_b_dec_to_input", False), ("d_sae", 13)])
def test_top_level_keys_disagreeing_with_the_rsae_section_are_refused(tmp_path, key, value) -> None:
    folder, _, cfg = _saved(tmp_path, "topk")
    assert cfg["rsae"]["config"][key] != value
    cfg[key] = value
    (folder / CFG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(SAEFileError, match=f"{key} = {value!r} disagrees with the rsae section"):
        load_sae(folder)
