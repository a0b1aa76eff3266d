"""score_trial: robustness inside a user's own Optuna objective; the study reads like a robust_hpo one."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

from robust_hpo.analysis import verify_study
from robust_hpo.cli import main
from robust_hpo.objective import FAIL_EXCEPTIONS, USER_OBJECTIVE_ATTR, score_trial, trial_record
from robust_hpo.slope import backdoor_slope
from robust_hpo.study import build_splits, load_study_config

STUDY = """
[study]
name = "mine"

[data]
dataset = "breast_cancer"
n_train = 200
n_test = 100
standardize = true

[attack]
trigger = "features"
features = ["worst texture", "worst concave points"]
values = ["q99"]
fraction = 0.05
target = "benign"

[search]
learners = ["logistic"]
"""


@pytest.fixture(scope="module")
def user_study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user")
    (folder / "data.toml").write_text(STUDY)
    split = next(iter(build_splits(load_study_config(folder / "data.toml")).values()))
    storage = f"sqlite:///{folder / 'mine.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"], storage=storage, study_name="mine",
                                sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial):  # the user's own objective, its own parameter names
        model = LogisticRegression(C=trial.suggest_float("C", 1e-3, 1e2, log=True), max_iter=5000)
        model.fit(split.X_clean, split.y_clean)
        return score_trial(trial, model, split, constraint=0.9)

    study.optimize(objective, n_trials=8, catch=FAIL_EXCEPTIONS)
    return folder, storage, study, split


def test_trials_record_what_the_builtin_objective_records(user_study):
    _, _, study, split = user_study
    assert isinstance(study.user_attrs[USER_OBJECTIVE_ATTR], dict) and study.metric_names == ["clean_accuracy", "slope"]
    for trial in study.trials:
        record = trial_record(trial, study.metric_names)
        assert record.learner == "logistic" and record.learner_params == {"C": pytest.approx(trial.params["C"])}
        assert record.exact and record.predicted_backdoor_accuracy is not None and record.feasible is not None
        assert trial.user_attrs["robust_hpo"]["agreement"] == 1.0 and trial.user_attrs["robust_hpo"]["fitted_by_user"]
        expected = backdoor_slope(LogisticRegression(C=trial.params["C"], max_iter=5000), split)
        assert trial.values[1] == pytest.approx(expected.slope, rel=1e-9)
        model = LogisticRegression(C=trial.params["C"], max_iter=5000).fit(split.X_clean, split.y_clean)
        assert trial.values[0] == pytest.approx(np.mean(model.predict(split.X_test) == split.y_test))


def test_slope_matches_finite_differences_of_refits(user_study):
    """Independent: refit with the poison weighted by a small β and difference the triggered loss."""
    _, _, _, split = user_study
    trial = optuna.trial.FixedTrial({})
    est = LogisticRegression(C=1.0, tol=1e-12, max_iter=10000)
    score_trial(trial, est, split)
    derivative = trial.user_attrs["robust_hpo"]["attacks"]["attack"]["derivative"]
    from robust_hpo.slope import slope_model

    model = slope_model(est).fit(split.X_clean, split.y_clean)
    h = 1e-4
    losses = [model.loss(split.X_trigger, split.y_trigger,
                         model.fit_weighted(split.X_clean, split.y_clean, split.X_poison, split.y_poison, b))
              for b in (h, 2 * h)]
    base = model.loss(split.X_trigger, split.y_trigger)
    fd = (4 * losses[0] - losses[1] - 3 * base) / (2 * h)
    assert derivative == pytest.approx(fd, rel=2e-3, abs=1e-6)


def test_fitted_elsewhere_and_unfitted_estimators(user_study):
    _, _, _, split = user_study
    trial = optuna.trial.FixedTrial({})
    elsewhere = SVC(kernel="linear", C=0.5).fit(split.X_test, split.y_test)  # not the clean set
    accuracy, slope = score_trial(trial, elsewhere, split)
    record = trial.user_attrs["robust_hpo"]
    assert accuracy == pytest.approx(np.mean(elsewhere.predict(split.X_test) == split.y_test))  # yours
    assert record["fitted_by_user"] and 0.0 <= record["agreement"] <= 1.0 and record["learner"] == "linear_svm"
    assert slope == pytest.approx(backdoor_slope(SVC(kernel="linear", C=0.5), split).slope, rel=1e-9)
    trial = optuna.trial.FixedTrial({})
    score_trial(trial, SVC(kernel="linear", C=0.5), split)
    assert trial.user_attrs["robust_hpo"]["fitted_by_user"] is False


def test_unsupported_estimator_fails_the_trial_not_the_study(user_study):
    _, _, _, split = user_study
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.optimize(lambda t: score_trial(t, RandomForestClassifier(n_estimators=3), split), n_trials=1,
                   catch=FAIL_EXCEPTIONS)
    trial = study.trials[0]
    assert trial.state.name == "FAIL" and "LogisticRegression" in trial.user_attrs["robust_hpo"]["fail_reason"]
    with pytest.raises(ValueError, match="constraint must be"):
        score_trial(optuna.trial.FixedTrial({}), LogisticRegression(), split, constraint="high")


def test_report_and_summary_on_the_users_study(user_study, capsys):
    folder, storage, study, _ = user_study
    out = folder / "report"
    assert main(["report", "--storage", storage, "--study-name", "mine", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert f"Recommended: trial {summary['recommended']['number']}" in text
    assert summary["trials"]["COMPLETE"] == summary["trials"]["TOTAL"] == len(study.trials) == 8
    assert summary["recommended"]["learner"] == "logistic" and summary["recommended"]["exact"]


def test_verify_the_users_study(user_study, capsys):
    folder, storage, study, split = user_study
    report = verify_study(study, split, trials="all", store=False)  # in Python: your split
    assert len(report.trials) == 8 and {t.learner for t in report.trials} == {"logistic"}
    for t in report.trials:  # independent: retrain on clean ∪ poison by hand
        model = LogisticRegression(C=t.params["C"], max_iter=2000).fit(split.X_train_poisoned, split.y_train_poisoned)
        assert t.backdoor_accuracy == pytest.approx(np.mean(model.predict(split.X_trigger) == split.y_trigger))
    # on the command line: the data described by a study file
    out = folder / "verify"
    assert main(["verify", str(folder / "data.toml"), "--storage", storage, "--study-name", "mine",
                 "--output", str(out), "--trials", "all"]) == 0
    assert len((out / "verification.csv").read_text().splitlines()) == 9
    assert main(["verify", "--storage", storage, "--study-name", "mine", "--output", str(out)]) == 2
    assert "scored by your own objective (score_trial)" in capsys.readouterr().err
    other = folder / "other.toml"  # a study file describing other data is refused, naming what differs
    other.write_text(STUDY.replace("n_train = 200", "n_train = 180"))
    assert main(["verify", str(other), "--storage", storage, "--study-name", "mine", "--output", str(out)]) == 2
    assert "was scored (score_trial) on other data: X_clean, y_clean" in capsys.readouterr().err


def test_run_refuses_to_add_trials_to_the_users_study(user_study, capsys):
    folder, storage, _, _ = user_study
    assert main(["run", str(folder / "data.toml"), "--storage", storage, "--n-trials", "1", "--no-progress"]) != 0
    assert "was not created by robust_hpo" in capsys.readouterr().err


def test_dashboard_serves_the_users_study(user_study):
    import urllib.request

    from robust_hpo.dashboard import dashboard_server
    from robust_hpo.testing import serving

    _, storage, _, _ = user_study
    with serving(dashboard_server(optuna.storages.RDBStorage(storage), port=0)) as url:
        with urllib.request.urlopen(f"{url}/api/studies", timeout=60) as response:
            summaries = json.load(response)["study_summaries"]
        mine = next(s for s in summaries if s["study_name"] == "mine")
        with urllib.request.urlopen(f"{url}/api/studies/{mine['study_id']}", timeout=60) as response:
            detail = json.load(response)
    assert detail["objective_names"] == ["clean_accuracy", "slope"] and len(detail["trials"]) == 8
    assert all(len(t["constraints"]) == 1 for t in detail["trials"])


def test_backdoor_slope_accepts_a_fitted_estimator(user_study):
    _, _, _, split = user_study
    fitted = LogisticRegression(C=3.0, max_iter=5000).fit(split.X_test, split.y_test)
    assert backdoor_slope(fitted, split).slope == backdoor_slope(LogisticRegression(C=3.0, max_iter=5000), split).slope
