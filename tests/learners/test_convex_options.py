"""Fixed solver options of the convex learners in study files ([options.<learner>] tol, max_iter, ...)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from sklearn.svm import SVC

from robust_hpo.learners import get_family
from robust_hpo.slope import backdoor_slope
from robust_hpo.study import StorageSpec, build_objective, load_study_config, run_study

STUDY = """
[study]
name = "opts"
n_trials = 3
seed = 0
sampler = "random"

[data]
dataset = "breast_cancer"
n_train = 200
n_test = 100
standardize = true

[attack]
trigger = "features"
features = [21, 27]
values = ["q99"]
fraction = 0.05
target = 0

[search]
learners = ["linear_svm", "logistic"]

[search.linear_svm]
C = { low = 50.0, high = 100.0, log = true }

[options.linear_svm]
tol = 1e-5
max_iter = 1000000

[options.logistic]
max_iter = 5000
"""


def test_options_reach_the_estimator_and_the_slope(tmp_path: Path) -> None:
    path = tmp_path / "opts.toml"
    path.write_text(STUDY)
    config = load_study_config(path)
    assert config.options == {"linear_svm": {"tol": 1e-5, "max_iter": 1000000}, "logistic": {"max_iter": 5000}}
    objective = build_objective(config)
    est = objective.families["linear_svm"].estimator({"C": 80.0})
    assert isinstance(est, SVC) and est.tol == 1e-5 and est.max_iter == 1000000 and est.kernel == "linear"
    run_study(config, storage=str(tmp_path / "out" / "study.log"), output=tmp_path / "out", progress=False)
    study = optuna.load_study(study_name="opts", storage=StorageSpec(journal=tmp_path / "out" / "study.log").open())
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3  # C in [50, 100] on standardised rows
    assert study.user_attrs["robust_hpo:problem"]["options"]["linear_svm"] == {"tol": 1e-5, "max_iter": 1000000}
    split = next(iter(objective.splits.values()))
    for trial in study.trials:
        if trial.params["learner"] == "linear_svm":  # independent: the estimator built by hand
            C = trial.params["linear_svm.C"]
            expected = backdoor_slope(SVC(kernel="linear", C=C, tol=1e-5, max_iter=1000000), split)
            assert trial.values[1] == pytest.approx(expected.slope, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(("options", "match"), [
    ({"gamma": 1.0}, r"unknown option 'gamma' for learner 'linear_svm'; expected some of \['tol', 'max_iter'"),
    ({"tol": 0.0}, r"tol must be"),
    ({"max_iter": 0}, r"max_iter must be"),
])
def test_options_are_validated(options, match):
    with pytest.raises(ValueError, match=match):
        get_family("linear_svm").with_options(**options)


@pytest.mark.parametrize("C", [50.0, 85.0, 100.0])
def test_linear_svm_at_large_C_on_standardised_rows(C):
    from robust_hpo.attacks import FeatureTrigger, poison
    from robust_hpo.datasets import load_dataset

    for seed in range(3):
        data = load_dataset("breast_cancer", n_train=300, n_test=100, seed=seed, standardize=True)
        split = poison(data, FeatureTrigger(features=[21, 27], values=["q99"]), fraction=0.05, target=0, seed=seed)
        fitted = get_family("linear_svm").fit({"C": C}, split.X_clean, split.y_clean)
        result = fitted.backdoor_slope(split.X_poison, split.y_poison, split.X_trigger, split.y_trigger)
        assert result.exact and -1 < result.slope < 1


def test_a_fit_the_slope_cannot_polish_is_retried_at_a_lower_tol():
    """A standardised table where libsvm's default solution (tol 1e-3) and its built-in refit do not settle:
    the family follows the error's advice once (tol × 1e-3) instead of failing the trial."""
    import numpy as np
    from sklearn.datasets import make_classification

    from robust_hpo import Dataset
    from robust_hpo.attacks import FeatureTrigger, poison
    from robust_hpo.errors import NotConvergedError
    from robust_hpo.slope import slope_model

    X, y = make_classification(n_samples=500, n_features=20, n_informative=6, class_sep=1.0, flip_y=0.02,
                               random_state=5)
    data = Dataset.from_arrays(X * np.linspace(1, 50, 20), y, n_train=300, n_test=150, seed=5).standardized()
    split = poison(data, FeatureTrigger(features=[3, 11, 17], values=["q97"]), fraction=0.1, target=0, seed=5)
    C = 2.918180853690098
    with pytest.raises(NotConvergedError):  # the precondition: the default tol fails
        slope_model(SVC(kernel="linear", C=C)).fit(split.X_clean, split.y_clean)
    fitted = get_family("linear_svm").fit({"C": C}, split.X_clean, split.y_clean)
    assert fitted.model.details_["retry_tol"] == pytest.approx(1e-6)
    result = fitted.backdoor_slope(split.X_poison, split.y_poison, split.X_trigger, split.y_trigger)
    expected = backdoor_slope(SVC(kernel="linear", C=C, tol=1e-6), split)
    assert result.slope == pytest.approx(expected.slope, rel=1e-9)
