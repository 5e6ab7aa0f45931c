"""The upgrade study without a language model: converged/dead teachers, a teacher from disk, seeds, controls,
verdicts and totals, on synthetic activation stores (fast); and the scoreboard's verdict rules."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
import torch

from rational_approx.verification.markdown import blocks
from rsae.cli import main
from rsae.core.config import SAEConfig
from rsae.core.data import ActivationStore
from rsae.core.io import save_sae
from rsae.core.sae import SAE
from rsae.errors import ConfigError
from rsae.experiments.report import DOC_BLOCKS
from rsae.experiments.reproduce import PRESETS, TeacherSetting, reproduce, results_markdown
from rsae.experiments.scoreboard import (
    METRICS,
    combine,
    compare,
    score_row,
    totals,
)

ROOT = Path(__file__).resolve().parents[2]
D_IN = 8


def _stores(folder: Path) -> Path:
    """train/ and heldout/ stores of sparse synthetic activations (a few latent directions plus noise)."""
    g = torch.Generator().manual_seed(0)
    dirs = torch.randn(24, D_IN, generator=g)
    for split, n in (("train", 1024), ("heldout", 256)):
        codes = torch.rand(n, 24, generator=g) * (torch.rand(n, 24, generator=g) < 0.15)
        x = codes @ dirs + 0.05 * torch.randn(n, D_IN, generator=g)
        with ActivationStore.create(folder / split, D_IN, meta={"text": "synthetic"}) as writer:
            writer.append(x)
    return folder


_CFG = dataclasses.replace(
    PRESETS["tiny"], study_n_max=0, gate_types=(), d_sae=16, teacher_max_steps=8, teacher_eval_every=2,
    finetune_steps=3, batch_size=128, calibration_tokens=256, dead_fraction=0.25,
    teachers=(TeacherSetting("relu-l1=0.1", "relu", 0.1, dead=True),
              TeacherSetting("topk-k=4", "topk", 4)), seeds=(0, 1, 2))


def test_tiny_study_rows_have_seeds_controls_verdicts_and_converged_flags(tmp_path, capsys):
    data = _stores(tmp_path / "data")
    results = reproduce(_CFG, tmp_path / "run", tmp_path / "fig", data=data, progress=False)
    board = results["scoreboard"]
    # both readings of the upgrade, each over the three teachers (trained, dead-latent, trained)
    assert [(r["teacher_kind"], r["variant"]) for r in board["rows"]] == [
        (kind, variant) for kind in ("trained", "dead", "trained") for variant in ("magnitude", "paper")]
    assert {r["family"] for r in board["rows"]} == {"relu", "topk"}
    err = capsys.readouterr().err
    assert len(re.findall(r"over the last quarter \(L0 [0-9.e+-]+ -> [0-9.e+-]+\); converged \(< 1 %\): (True|False)",
                          err)) == 3
    for row in board["rows"]:
        conv = row["convergence"]
        assert isinstance(conv["converged"], bool) and conv["steps"] % (4 * _CFG.teacher_eval_every) == 0
        assert conv["converged"] == (conv["improvement"] < 0.01)
        assert conv["improvement"] == pytest.approx(1 - conv["mse_end"] / conv["mse_three_quarters"])
        assert conv["step_three_quarters"] * 4 == conv["steps"] * 3
        assert conv["l0_end"] > 0 and conv["l0_three_quarters"] > 0  # the L0 drift is shown beside the MSE
        assert row["seeds"] == [0, 1, 2] and len(row["rsae"]) == len(row["control"]) == 3
        assert row["control_present"] and row["variant"] in ("magnitude", "paper")
        assert isinstance(row["l0_budget"]["over_budget"], bool)
        assert set(row["cells"]) == {m[0] for m in METRICS}
        for key, cell in row["cells"].items():
            assert cell["verdict"] in ("win", "loss", "tie", "excluded", "n/a")
            if cell["group"] == "downstream":  # no language model with --data
                assert cell["verdict"] == "n/a" and cell["rsae"] is None
            else:
                assert len(cell["rsae"]["values"]) == 3 and math.isfinite(cell["rsae"]["sd"]), key
                assert cell["verdict"] == combine(cell["vs_teacher"], cell["vs_control"]) or (
                    row["l0_budget"]["over_budget"] and cell["verdict"] == "excluded")
        if row["family"] == "relu" and row["variant"] == "magnitude":  # frozen encoder: the teacher's support
            assert row["cells"]["l0"]["verdict"] == "tie"
        if row["family"] == "topk" and row["variant"] == "magnitude":
            assert max(row["cells"]["l0"]["rsae"]["values"]) <= 4.0  # at most k non-zeros
    dead = next(r for r in board["rows"] if r["teacher_kind"] == "dead")
    assert set(board["totals_by_variant"]) == {"magnitude", "paper"}
    assert dead["teacher_dead_fraction"] >= 0.25 and dead["teacher_killed_latents"] == 4
    recon = board["totals"]["verdict"]["reconstruction"]
    assert recon["cells"] == 2 * len(board["rows"]) and board["totals"]["verdict"]["downstream"]["cells"] == 0
    # the results JSON is strict JSON and its markdown regenerates from it alone
    saved = json.loads((tmp_path / "fig" / "results.json").read_text(), parse_constant=pytest.fail)
    assert (tmp_path / "run" / "results.md").read_text() == results_markdown(saved)
    assert (tmp_path / "fig" / "reproduce_tradeoff.png").stat().st_size > 0

    # an SAELens-format teacher from disk goes through the same path
    teacher = SAE.from_config(SAEConfig(d_in=D_IN, d_sae=16, family="topk", k=3), seed=1)
    save_sae(teacher, tmp_path / "mine")
    disk = reproduce(_CFG, tmp_path / "run2", tmp_path / "fig2", data=data, teachers=[tmp_path / "mine"],
                     progress=False)
    row = disk["scoreboard"]["rows"][0]
    assert len(disk["scoreboard"]["rows"]) == 2
    assert row["teacher_kind"] == "saelens" and row["family"] == "topk" and row["sparsity"] == 3
    assert row["convergence"]["converged"] is None and len(row["control"]) == 3


def test_compare_and_combine_follow_the_two_sd_rule():
    # lower is better: mean 1.0, sd 0.1 → win only below 1.0 − 0.2
    assert compare([0.9, 1.0, 1.1], 1.25, "lower")["verdict"] == "win"
    assert compare([0.9, 1.0, 1.1], 1.15, "lower")["verdict"] == "tie"
    assert compare([0.9, 1.0, 1.1], 0.7, "lower")["verdict"] == "loss"
    assert compare([0.9, 1.0, 1.1], 0.7, "higher")["verdict"] == "win"
    # against the control the larger of the two spreads counts
    assert compare([1.0, 1.0, 1.0], [1.1, 1.3, 1.5], "lower")["verdict"] == "tie"
    assert compare([1.0, 1.0, 1.0], [1.1, 1.3, 1.5], "lower")["spread"] == pytest.approx(0.2)
    assert compare([1.0, 1.0, 1.0], [1.3, 1.5, 1.7], "lower")["verdict"] == "win"
    assert compare([2.0, 2.0, 2.0], 2.0, "lower")["verdict"] == "tie"  # identical: no win at zero spread
    assert compare([0.1 + 0.2] * 3, 0.3, "higher")["verdict"] == "tie"  # float rounding is no difference
    # zero spread: below the resolution (0.1 % of the larger value) a tie, above it a verdict
    assert compare([16.0] * 3, 15.9998, "lower")["verdict"] == "tie"
    assert compare([16.0] * 3, 15.98, "lower")["verdict"] == "loss"
    assert compare([2.0, 2.0, 2.0], 2.01, "lower")["verdict"] == "win"  # zero spread: above the resolution
    assert compare([None, 1.0, 1.0], 2.0, "lower")["verdict"] == "n/a"
    assert combine("win", "win") == "win" and combine("win", "tie") == "tie" and combine("win", "loss") == "loss"
    assert combine("n/a", "win") == "n/a"
    with pytest.raises(ValueError):
        compare([1.0], 1.0, "sideways")


def _metrics(**kw):
    base = {"mse": 1.0, "fvu": 0.1, "l0": 10.0, "alive_fraction": 0.9, "delta_ce": 0.1, "loss_recovered": 0.9,
            "probe_accuracy": 0.8}
    return {**base, **kw}


def test_over_budget_rows_have_their_wins_excluded_and_totals_count_them():
    rsae = [_metrics(mse=0.5 + 0.01 * i, l0=12.0) for i in range(3)]  # 20 % more L0 than the teacher
    row = {"teacher": _metrics(), "init": _metrics(), "rsae": rsae, "control": [_metrics(mse=0.9)] * 3}
    scored = score_row(row, l0_budget=1.05)
    assert scored["l0_budget"]["over_budget"] and scored["cells"]["mse"]["verdict"] == "excluded"
    assert scored["cells"]["l0"]["verdict"] == "loss"
    t = totals([scored])
    assert t["verdict"]["reconstruction"]["win"] == 0 and t["verdict"]["reconstruction"]["excluded"] == 1
    within = score_row({**row, "rsae": [_metrics(mse=0.5 + 0.01 * i) for i in range(3)]}, l0_budget=1.05)
    assert not within["l0_budget"]["over_budget"] and within["cells"]["mse"]["verdict"] == "win"


@pytest.mark.parametrize("results_json, prefix", [("figures/results.json", ""),
                                                  ("figures/study/results.json", "study-")])
def test_docs_tables_are_the_regeneration_of_the_committed_results_json(results_json: str, prefix: str):
    """docs/results.md carries the tables generated from the main job's figures/results.json (blocks
    ``scoreboard`` ...) and from the study's figures/study/results.json (``study-scoreboard`` ...), unedited."""
    results = json.loads((ROOT / results_json).read_text(), parse_constant=pytest.fail)
    doc = (ROOT / "docs" / "results.md").read_text()
    present = blocks(doc)
    for name, writer in DOC_BLOCKS.items():
        assert prefix + name in present, f"docs/results.md lacks the generated {prefix + name} block"
        assert present[prefix + name] == writer(results).rstrip("\n"), prefix + name


def test_markdown_option_prints_the_tables_of_a_results_file(tmp_path, capsys):
    assert main(["study", "--markdown", str(ROOT / "figures" / "results.json")]) == 0
    assert capsys.readouterr().out.strip() == results_markdown(
        json.loads((ROOT / "figures" / "results.json").read_text())).strip()
    assert main(["study", "--markdown", str(tmp_path / "missing.json")]) == 2


def test_stdlib_corpus_is_one_document_per_source_file_without_tests():
    from rsae.errors import ConfigError
    from rsae.lm.corpus import corpus_description, load_documents, split_of

    docs = load_documents(corpus="stdlib")
    ids = [d.doc_id for d in docs]
    assert len(docs) > 300 and ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(i.startswith("stdlib/") and i.endswith(".py") for i in ids)
    assert not any("/test/" in i or "/tests/" in i or "site-packages" in i for i in ids)
    assert "stdlib/json/decoder.py" in ids and sum(len(d.text) for d in docs) > 5_000_000  # a few million tokens
    assert 0 < sum(split_of(i) == "heldout" for i in ids) < len(ids) / 4
    assert corpus_description(None, "stdlib").startswith("stdlib:")
    assert load_documents(corpus="pydoc")[0].doc_id != ids[0]
    with pytest.raises(ConfigError, match="corpus must be one of"):
        load_documents(corpus="wikipedia")


def test_write_docs_regenerates_every_block_and_refuses_a_doc_without_them(tmp_path, capsys):
    results = ROOT / "figures" / "results.json"
    doc = tmp_path / "results.md"
    doc.write_text("intro\n" + "".join(f"<!-- generated: {n} — cmd -->\nstale\n<!-- end generated: {n} -->\ntext\n"
                                       for n in DOC_BLOCKS))
    assert main(["study", "--markdown", str(results), "--write-docs", str(doc)]) == 0
    assert "scoreboard, comparison, timing" in capsys.readouterr().out
    data = json.loads(results.read_text())
    text = doc.read_text()
    assert "stale" not in text and text.startswith("intro\n")
    for name, writer in DOC_BLOCKS.items():
        assert f"<!-- generated: {name} — cmd -->\n{writer(data)}<!-- end generated: {name} -->" in text
    assert main(["study", "--markdown", str(results), "--write-docs", str(doc)]) == 0  # idempotent
    assert "(none changed)" in capsys.readouterr().out
    bare = tmp_path / "bare.md"
    bare.write_text("no blocks here\n")
    assert main(["study", "--markdown", str(results), "--write-docs", str(bare)]) == 2
    assert bare.read_text() == "no blocks here\n"
    assert main(["study", "--write-docs", str(doc)]) == 2  # needs --markdown
    assert main(["study", "--block-prefix", "study-"]) == 2  # needs --markdown and --write-docs
    # a prefix names a second set of blocks in the same file; the unprefixed ones stay as they are
    two = tmp_path / "two.md"
    two.write_text(text + "".join(f"<!-- generated: study-{n} — cmd -->\nstale\n<!-- end generated: study-{n} -->\n"
                                  for n in DOC_BLOCKS))
    capsys.readouterr()
    assert main(["study", "--markdown", str(results), "--write-docs", str(two), "--block-prefix", "study-"]) == 0
    assert "study-scoreboard, study-comparison, study-timing" in capsys.readouterr().out
    assert "stale" not in two.read_text() and two.read_text().startswith(text)
    assert main(["study", "--markdown", str(results), "--write-docs", str(doc), "--block-prefix", "study-"]) == 2


def test_rescore_rebuilds_the_scoreboard_by_the_current_rules(tmp_path, capsys):
    """--rescore recomputes every verdict and total from the rows' measured values (which it leaves alone) and
    writes the results back as strict JSON; without --markdown it is a usage error."""
    from rsae.experiments.scoreboard import RELATIVE_TIE, rescore

    original = json.loads((ROOT / "figures" / "results.json").read_text())
    stale = json.loads(json.dumps(original))
    stale["scoreboard"]["totals"] = {"stale": True}
    stale["scoreboard"].pop("relative_tie", None)
    for row in stale["scoreboard"]["rows"]:
        for cell in row["cells"].values():
            cell["verdict"] = "win"
    path = tmp_path / "results.json"
    path.write_text(json.dumps(stale))
    assert main(["study", "--markdown", str(path), "--rescore"]) == 0
    capsys.readouterr()
    after = json.loads(path.read_text(), parse_constant=pytest.fail)
    assert after["scoreboard"]["relative_tie"] == RELATIVE_TIE and "stale" not in after["scoreboard"]["totals"]
    assert after == json.loads(json.dumps(rescore(original)))
    for a, b in zip(after["scoreboard"]["rows"], original["scoreboard"]["rows"], strict=True):
        assert a["rsae"] == b["rsae"] and a["control"] == b["control"] and a["teacher"] == b["teacher"]
    assert main(["study", "--rescore"]) == 2


def test_teacher_l0_target_holds_the_teachers_l0_and_names_the_row(tmp_path):
    """TeacherSetting.l0_target reaches the teacher's training (its L0 ends near the target instead of where the
    penalty alone puts it), appears in the row's sparsity label, and stays out of the stage key when unset."""
    data = _stores(tmp_path / "data")
    free = TeacherSetting("jumprelu-l0=0.1", "jumprelu", 0.1, threshold_init=0.3)
    held = dataclasses.replace(free, name="jumprelu-l0=0.1-L0=2", l0_target=2.0)
    cfg = dataclasses.replace(_CFG, teachers=(free, held), seeds=(0,), teacher_max_steps=100, lr=0.03,
                              teacher_eval_every=25, finetune_steps=2, variants=("magnitude",))
    results = reproduce(cfg, tmp_path / "run", tmp_path / "fig", data=data, progress=False)
    l0 = {name: t["convergence"]["l0_end"] for name, t in results["teachers"].items()}
    assert l0["jumprelu-l0=0.1"] > 4.0  # measured 5.5: the penalty alone leaves this many latents on
    assert l0["jumprelu-l0=0.1-L0=2"] < 0.75 * l0["jumprelu-l0=0.1"]  # measured 3.2, on its way to 2
    assert [r["sparsity_label"] for r in results["scoreboard"]["rows"]] == ["λ₀=0.1", "λ₀=0.1, L0≤2"]
    assert "l0_target" not in free.key() and held.key()["l0_target"] == 2.0
    with pytest.raises(ConfigError, match="l0_target"):
        TeacherSetting("x", "jumprelu", 0.1, l0_target=0)
