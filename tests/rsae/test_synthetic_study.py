"""The claims of docs/rsae.md on synthetic ground truth (slow: minutes of CPU each)."""

from __future__ import annotations

import pytest

from rsae.experiments.synthetic_study import FAMILY_SETTINGS, study_data, train_config, train_model
from rsae.experiments.upgrade import upgrade

# minutes of CPU per test: run by `make test-all` (the tables they check are recorded in docs/rsae.md)
pytestmark = [pytest.mark.slow, pytest.mark.study]


@pytest.fixture(scope="module")
def data():
    return study_data()


@pytest.mark.parametrize("name", ["relu", "jumprelu", "topk", "batchtopk", "rational"])
def test_every_family_recovers_the_true_features(name: str, data) -> None:
    _, row = train_model(FAMILY_SETTINGS[name], data, steps=2000)
    assert row["mmcs"] >= 0.9
    assert row["l0"] <= 2.5 * row["true_l0"]


@pytest.mark.parametrize("name", ["relu", "jumprelu", "topk"])
def test_two_stage_upgrade_beats_the_teacher(name: str, data) -> None:
    teacher, _ = train_model(FAMILY_SETTINGS[name], data, steps=2000)
    # A ReLU gate's support is not controlled by the L1 penalty on φ(h) (docs/rsae.md): freeze the encoder.
    result = upgrade(
        teacher,
        data.train,
        data.held_out,
        train_config(1000).replace(lr=1e-3),
        control=False,
        train_encoder=name != "relu",
    )
    teacher_mse, teacher_l0 = result.teacher_metrics["mse"], result.teacher_metrics["l0"]
    assert abs(result.init_metrics["mse"] / teacher_mse - 1) <= 0.02
    assert result.student_metrics["mse"] < teacher_mse
    assert result.student_metrics["l0"] <= 1.05 * teacher_l0
