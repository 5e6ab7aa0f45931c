"""Interop with the real SAELens (the ``saelens`` extra, installed by ``make install`` and so in CI).

No hand-edited folders: every folder here is written by SAELens' own ``save_model``, ``save_inference_model`` or
``SAETrainer``, or by rsae's ``save_sae``. This module fails at import when SAELens is missing, on purpose: the
interop is a tested promise, not an optional extra of the test suite.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import sae_lens
import torch
from sae_lens import SAE as SAELensSAE
from sae_lens.registry import get_sae_class, get_sae_training_class
from sae_lens.saes.gated_sae import GatedSAE, GatedSAEConfig
from sae_lens.saes.matryoshka_batchtopk_sae import (
    MatryoshkaBatchTopKTrainingSAE,
    MatryoshkaBatchTopKTrainingSAEConfig,
)
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig

import rsae.saelens
from rsae.core.io import ARCHITECTURES, SAELENS_INERT_KEYS, SAELENS_KEYS, load_sae, save_sae
from rsae.core.sae import SAE
from rsae.errors import SAEFileError
from rsae.saelens import (
    FAMILIES,
    PATHS,
    TOLERANCE,
    RationalSAE,
    interop_markdown,
    measure_interop,
    saelens_checkpoint,
)
from tests.rsae.conftest import make_config

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "saelens_interop.json"
DOC = ROOT / "docs" / "rsae.md"
DIRECTIONS = ("saelens_to_rsae", "rsae_to_saelens")


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SAELens' tqdm and deprecation chatter
        return measure_interop(tmp_path_factory.mktemp("interop"))


def test_the_installed_saelens_is_the_pinned_one() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"sae-lens=={sae_lens.__version__}"' in pyproject


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_and_path_gives_the_same_outputs(records, family: str, direction: str) -> None:
    mine = [r for r in records if r["family"] == family and r["direction"] == direction]
    measured = [r for r in mine if r["status"] != "n/a"]
    assert measured, f"{family} {direction}: nothing measured"
    for record in measured:
        assert record["status"] == "ok", record
        assert record["same_support"], record
        assert max(record["max_abs_codes"], record["max_abs_x_hat"]) <= TOLERANCE, record
        assert record["l0"] > 0, record  # a comparison of all-zero codes would prove nothing


def test_not_measured_only_where_saelens_has_no_such_path(records) -> None:
    missing = {(r["family"], r["path"], r["direction"]) for r in records if r["status"] == "n/a"}
    expected = {("batchtopk", "SAE.save_model", "saelens_to_rsae")}
    for family in FAMILIES:
        if family.startswith("rational"):
            expected |= {(family, path, d) for path in PATHS if path != "SAE.save_model" for d in DIRECTIONS}
        else:
            checkpoints = {r["path"] for r in records if r["family"] == family and "checkpoint" in r["path"]}
            expected |= {(family, path, "rsae_to_saelens") for path in checkpoints}
    assert missing == expected


def test_the_measured_folders_exercise_every_conversion(records) -> None:
    """SAELens' TopK/BatchTopK checkpoints keep decoder norms far from 1 (unfolded), thresholds ≤ 0 occur,
    BatchTopK checkpoints carry ``topk_threshold`` and mid-run ones an unfolded normalisation — so a loader
    that ignored any of these would have failed the comparisons above."""
    forward = [r for r in records if r["direction"] == "saelens_to_rsae" and r["status"] != "n/a"]
    checkpoints = [r for r in forward if r["path"].startswith("trainer checkpoint")]
    for record in checkpoints:
        if record["family"] in ("topk", "batchtopk"):
            assert record["rescale_acts_by_decoder_norm"], record
            low, high = record["decoder_norm_range"]
            assert high < 0.5, record  # SAELens starts decoder rows at norm 0.1
    assert {r["architecture"] for r in checkpoints if r["family"] == "batchtopk"} == {"batchtopk"}
    assert {r["normalize_activations"] for r in checkpoints} == {"none", "expected_average_only_in"}
    jumprelu = [r for r in forward if r["family"] == "jumprelu" and r["path"] == "SAE.save_model"]
    assert jumprelu[0]["min_threshold"] < 0


def test_batchtopk_is_written_as_saelens_writes_it(tmp_path) -> None:
    sae = SAELensSAE.load_from_disk(save_sae(_trained("batchtopk"), tmp_path / "sae"))
    assert type(sae).__name__ == "JumpReLUSAE"
    assert load_sae(tmp_path / "sae").cfg.family == "batchtopk"


def test_rational_plugin(tmp_path) -> None:
    model = _trained("rational-batchtopk")
    sae = SAELensSAE.load_from_disk(save_sae(model, tmp_path / "sae"))
    assert isinstance(sae, RationalSAE)
    x = torch.randn(7, model.cfg.d_in)  # a small batch: batch-top-k would keep 3 · 7 codes, the threshold may not
    sae.train()
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), model.encode(x), rtol=1e-6, atol=1e-6)
    with pytest.raises(NotImplementedError, match="rational"):
        sae.fold_W_dec_norm()
    rsae.saelens.register()  # idempotent


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: StandardSAE(StandardSAEConfig(d_in=6, d_sae=12, normalize_activations="layer_norm")), "layer_norm"),
        (lambda: StandardSAE(StandardSAEConfig(d_in=6, d_sae=12, reshape_activations="hook_z")), "hook_z"),
        (lambda: GatedSAE(GatedSAEConfig(d_in=6, d_sae=12)), "unknown architecture 'gated'"),
    ],
)
def test_saelens_settings_rsae_cannot_apply_are_refused(tmp_path, make, message) -> None:
    make().save_model(tmp_path / "sae")
    with pytest.raises(SAEFileError, match=message):
        load_sae(tmp_path / "sae")


def test_a_checkpoint_with_unfolded_whitening_is_refused(tmp_path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        checkpoint = saelens_checkpoint("topk", tmp_path / "run", normalize_activations="covariance_whitening")
    with pytest.raises(SAEFileError, match="covariance_whitening"):
        load_sae(checkpoint)


def test_docs_table_is_the_committed_measurement(records) -> None:
    committed = json.loads(RESULTS.read_text())
    assert committed["sae_lens_version"] == sae_lens.__version__
    table = interop_markdown(committed["records"])
    doc = DOC.read_text()
    section = re.search(r"<!-- saelens-interop:begin -->\n(.*?)<!-- saelens-interop:end -->", doc, re.S)
    assert section is not None and section.group(1) == table
    # The committed statuses are what this machine measures now (the |Δ| may differ in the last bits).
    now = {(r["family"], r["path"], r["direction"]): r["status"] for r in records}
    assert now == {(r["family"], r["path"], r["direction"]): r["status"] for r in committed["records"]}


def test_every_saelens_config_field_is_classified() -> None:
    """A field SAELens adds to the architectures rsae reads must be classified (applied, refused or inert)
    before rsae loads such files: this fails on a SAELens upgrade that adds one."""
    fields = set()
    for arch in ARCHITECTURES:
        if arch == "rational":
            continue
        for lookup in (get_sae_class, get_sae_training_class):
            try:
                fields |= {f.name for f in dataclasses.fields(lookup(arch)[1])}
            except KeyError:  # batchtopk has a training class only
                continue
    assert fields - set(SAELENS_KEYS) - set(SAELENS_INERT_KEYS) == set()


def test_matryoshka_batchtopk_checkpoint(tmp_path) -> None:
    cfg = MatryoshkaBatchTopKTrainingSAEConfig(d_in=6, d_sae=12, k=3, matryoshka_widths=[4, 12])
    sae = MatryoshkaBatchTopKTrainingSAE(cfg)
    with torch.no_grad():
        for param in sae.parameters():
            param.copy_(torch.randn_like(param))
    sae.topk_threshold = torch.tensor(0.5, dtype=torch.float64)
    sae.save_model(tmp_path / "checkpoint")  # what SAETrainer writes
    sae.save_inference_model(tmp_path / "inference")
    reference = SAELensSAE.load_from_disk(tmp_path / "inference")
    loaded = load_sae(tmp_path / "checkpoint")
    assert loaded.cfg.family == "batchtopk"
    x = torch.randn(50, 6)
    with torch.no_grad():
        z = reference.encode(x)
        assert 0 < (z != 0).sum() < z.numel()
        torch.testing.assert_close(loaded.encode(x), z, rtol=0, atol=TOLERANCE)
        torch.testing.assert_close(loaded.decode(loaded.encode(x)), reference.decode(z), rtol=0, atol=TOLERANCE)


def test_rsae_does_not_import_saelens() -> None:
    code = "import sys, rsae, rsae.core.io, rsae.cli; assert 'sae_lens' not in sys.modules, 'sae_lens imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def _trained(name: str):
    sae = SAE.from_config(make_config(name), seed=1)
    with torch.no_grad():
        for param in sae.parameters():
            param.add_(0.1 * torch.randn_like(param))
    sae.train()
    sae(torch.randn(64, sae.cfg.d_in))  # sets the batch-top-k inference threshold
    return sae.eval()
