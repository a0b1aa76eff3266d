"""Network learners accept tabular rows: the MLP trains and differentiates on (n, d); the others say so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest

pytest.importorskip("torch")

from robust_hpo.attacks import FeatureTrigger, poison  # noqa: E402
from robust_hpo.datasets import load_dataset  # noqa: E402
from robust_hpo.errors import ValidationError  # noqa: E402
from robust_hpo.learners import get_family  # noqa: E402
from robust_hpo.study import StorageSpec, load_study_config, run_study  # noqa: E402

PARAMS = {"epochs": 8, "width": 16, "lr": 0.05}


@pytest.fixture(scope="module")
def rows():
    data = load_dataset("breast_cancer", n_train=200, n_test=100, standardize=True)
    return poison(data, FeatureTrigger(features=[21, 27], values=["q99"]), fraction=0.05, target=0)


def test_mlp_fits_rows_and_its_slope_has_the_sign_of_retraining(rows):
    split = rows
    fitted = get_family("mlp").fit(PARAMS, split.X_clean, split.y_clean, seed=0)
    assert np.mean(fitted.predict(split.X_test) == split.y_test) > 0.85
    result = fitted.backdoor_slope(split.X_poison, split.y_poison, split.X_trigger, split.y_trigger,
                                   X_test=split.X_test, y_test=split.y_test)
    fd = get_family("mlp_fd").fit(PARAMS, split.X_clean, split.y_clean, seed=0).backdoor_slope(
        split.X_poison, split.y_poison, split.X_trigger, split.y_trigger)
    assert np.isfinite(result.slope) and np.sign(result.slope) == np.sign(fd.slope)  # retraining-based FD
    with pytest.raises(ValidationError, match=r"X must have rows of 30 columns \(as trained\), got 29"):
        fitted.predict(split.X_test[:, :29])


def test_other_networks_point_to_the_mlp_for_rows(rows):
    with pytest.raises(ValidationError, match=r"tabular rows \(n, d\) need the learner 'mlp'"):
        get_family("cnn").fit({"epochs": 1, "width": 4, "lr": 0.05}, rows.X_clean, rows.y_clean)


def test_a_tabular_study_searches_the_mlp(tmp_path: Path):
    path = tmp_path / "mlp.toml"
    path.write_text("""
[study]
name = "mlp_rows"
n_trials = 2
sampler = "random"
threads = 1

[data]
dataset = "breast_cancer"
n_train = 150
n_test = 60
standardize = true

[attack]
trigger = "features"
features = ["worst area"]
values = ["q95"]
fraction = 0.05
target = "benign"

[search]
learners = ["mlp"]

[search.mlp]
epochs = { low = 2, high = 4, type = "int" }
width = 8
""")
    run_study(load_study_config(path), storage=str(tmp_path / "study.log"), output=tmp_path, progress=False)
    study = optuna.load_study(study_name="mlp_rows", storage=StorageSpec(journal=tmp_path / "study.log").open())
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
