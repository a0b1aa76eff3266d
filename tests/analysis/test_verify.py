"""Verification by retraining: values against independent scikit-learn fits, Spearman, robust region, grids."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import create_trial
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

from robust_hpo.attacks import BadNets, poison
from robust_hpo.datasets import load_dataset
from robust_hpo.plots import grid_figure, verification_figure
from robust_hpo.slope import backdoor_slope
from robust_hpo.analysis import (
    VERIFY_ATTR,
    VerifiedTrial,
    bin_trials,
    paper_grid,
    retrain_poisoned,
    robust_region,
    slope_backdoor_spearman,
    stored_verification,
    trial_slope,
    verify_study,
)

optuna.logging.set_verbosity(optuna.logging.ERROR)

C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


@pytest.fixture(scope="module")
def split():
    ds = load_dataset("digits", classes=(1, 7), n_train=200, n_test=80, seed=1)
    return poison(ds, BadNets(size=3, seed=1), fraction=0.1, seed=1)


def _flat(X):
    return X.reshape(len(X), -1).astype(np.float64)


def _independent(est, split) -> tuple[float, float]:
    fitted = est.fit(_flat(split.X_train_poisoned), split.y_train_poisoned)
    return (float(np.mean(fitted.predict(_flat(split.X_test)) == split.y_test)),
            float(np.mean(fitted.predict(_flat(split.X_trigger)) == split.y_trigger)))


@pytest.fixture(scope="module")
def plain_study(split):
    """A study in the plain layout {learner, C}: values = (clean accuracy, slope) computed here."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    dists = {"learner": CategoricalDistribution(["logistic"]), "C": FloatDistribution(1e-4, 1e2, log=True)}
    for C in C_GRID:
        est = LogisticRegression(C=C, max_iter=2000)
        slope = backdoor_slope(est, split).slope
        acc = float(np.mean(est.fit(_flat(split.X_clean), split.y_clean).predict(_flat(split.X_test)) == split.y_test))
        study.add_trial(create_trial(params={"learner": "logistic", "C": C}, distributions=dists,
                                     values=[acc, slope]))
    return study


def test_verify_all_trials_against_independent_refits(plain_study, split):
    report = verify_study(plain_study, split, trials="all", tolerance=0.05, max_backdoor=0.3)
    assert [t.number for t in report.trials] == list(range(len(C_GRID)))
    backdoor = {}
    for t, C in zip(report.trials, C_GRID):
        clean, backdoor[t.number] = _independent(LogisticRegression(C=C, max_iter=2000), split)
        assert t.learner == "logistic" and t.params == {"C": C}
        assert t.poisoned_clean_accuracy == pytest.approx(clean)
        assert t.backdoor_accuracy == pytest.approx(backdoor[t.number])
        assert t.slope == plain_study.trials[t.number].values[1]
    # ONE compact study attribute (finished trials cannot be modified in Optuna)
    assert [k for k in plain_study.user_attrs if k.startswith("robust_hpo:verify")] == [VERIFY_ATTR]
    stored = plain_study.user_attrs[VERIFY_ATTR]
    assert stored["trials"]["2"][1] == pytest.approx(report.trials[2].backdoor_accuracy)
    assert stored_verification(plain_study) == list(report.trials)
    ref = spearmanr([t.slope for t in report.trials], [t.backdoor_accuracy for t in report.trials]).statistic
    assert report.spearman == pytest.approx(ref)
    assert report.per_learner["logistic"][0] == pytest.approx(ref)
    # the recommendation's candidates (no constraint: every trial is feasible), as `report` computes them
    accuracies = [t.values[0] for t in plain_study.trials]
    candidates = [n for n, a in enumerate(accuracies) if a >= max(accuracies) - 0.05 - 1e-12]
    assert [t.number for t in report.trials if t.candidate] == candidates
    assert [t.number for t in report.robust] == [n for n in candidates if backdoor[n] <= 0.3]
    # the check: these trials carry no margins (plain layout), so the slope decides; regret from the refits
    check = report.check
    assert check.recommendation.rule == "slope"
    assert check.recommended.number == min(candidates, key=lambda n: plain_study.trials[n].values[1])
    assert check.regret == pytest.approx(backdoor[check.recommended.number] - min(backdoor[n] for n in candidates))
    assert stored["recommended"] == check.recommended.number and stored["regret"] == pytest.approx(check.regret)
    text = report.render()
    assert "Spearman(slope, backdoor accuracy" in text and "robust region" in text
    assert f"recommended trial {check.recommended.number} (" in text and "regret" in text and "Rule:" in text
    fig = verification_figure(report)
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text and "Spearman" in fig.layout.title.text


def test_pareto_choice_adds_the_candidates_and_plugin_layout(split):
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["clean_accuracy", "slope"])
    dists = {"learner": CategoricalDistribution(["rbf_svm"]), "rbf_svm.C": FloatDistribution(0.1, 100, log=True),
             "rbf_svm.gamma": FloatDistribution(1e-4, 10, log=True)}
    for (C, g), values in zip([(10.0, 0.01), (10.0, 0.1), (1.0, 0.001)], [[0.99, 0.2], [0.98, 0.5], [0.9, 0.01]]):
        study.add_trial(create_trial(params={"learner": "rbf_svm", "rbf_svm.C": C, "rbf_svm.gamma": g},
                                     distributions=dists, values=values))
    report = verify_study(study, split, tolerance=0.01)  # the candidates: trials 0 and 1
    assert [t.number for t in report.trials] == [0, 1] and all(t.candidate for t in report.trials)
    # Pareto front: trials 0 and 2 (trial 1 is dominated, but a candidate)
    report = verify_study(study, split, trials="pareto", tolerance=0.01)
    assert [t.number for t in report.trials] == [0, 1, 2]
    assert [t.candidate for t in report.trials] == [True, True, False]
    assert report.trials[0].params == {"C": 10.0, "gamma": 0.01}
    clean, backdoor = _independent(SVC(kernel="rbf", C=10.0, gamma=0.01), split)
    assert report.trials[0].backdoor_accuracy == pytest.approx(backdoor)
    assert report.check.recommended.number == 0  # the lower slope of the two candidates


def test_retrain_poisoned_generic_family(split):
    class Family:
        name = "fake"

        def fit(self, params, X, y, *, seed=0):
            outer_seen.append((X.shape, seed))
            model = LogisticRegression(C=params["C"], max_iter=2000).fit(_flat(X), y)

            class Fitted:
                fit_seconds = 0.0

                def predict(self, X):
                    return model.predict(_flat(X))

            return Fitted()

    outer_seen: list = []
    got = retrain_poisoned("fake", {"C": 1.0}, split, family_lookup=lambda name: Family(), seed=3)
    assert outer_seen == [(split.X_train_poisoned.shape, 3)]
    assert got == pytest.approx(_independent(LogisticRegression(C=1.0, max_iter=2000), split))


def test_paper_grid_against_independent_fits(split):
    grid = paper_grid(split, C=(1.0, 10.0), gamma=(0.01, 0.1))
    assert grid.slope.shape == (2, 2) and not grid.binned and np.all(grid.counts == 1)
    for i, g in enumerate((0.01, 0.1)):
        for j, C in enumerate((1.0, 10.0)):
            clean, backdoor = _independent(SVC(kernel="rbf", C=C, gamma=g), split)
            assert grid.poisoned_clean_accuracy[i, j] == pytest.approx(clean)
            assert grid.backdoor_accuracy[i, j] == pytest.approx(backdoor)
            assert grid.slope[i, j] == pytest.approx(backdoor_slope(SVC(kernel="rbf", C=C, gamma=g), split).slope)
    fig = grid_figure(grid)
    assert len(fig.data) == 3 and all(t.type == "heatmap" for t in fig.data)
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    lines = grid_figure(paper_grid(split, learner="ridge", C=(0.01, 1.0, 100.0), gamma=None))
    assert fig.layout.title.text and lines.layout.xaxis.type == "log" and len(lines.data) == 3


def test_paper_grid_records_undefined_slopes(split, monkeypatch):
    from robust_hpo.slope import DegenerateSolveError, SVCSlope

    original = SVCSlope.derivative

    def derivative(self, *args):
        if self.estimator_.C < 0.1:
            raise DegenerateSolveError("no margin support vectors")
        return original(self, *args)

    monkeypatch.setattr(SVCSlope, "derivative", derivative)
    grid = paper_grid(split, learner="linear_svm", C=(0.01, 1.0), gamma=None)
    assert np.isnan(grid.slope[0, 0]) and np.isfinite(grid.slope[0, 1])
    assert np.isfinite(grid.backdoor_accuracy).all()  # the retraining still ran
    assert grid.errors == {"C=0.01": "slope undefined: no margin support vectors"}


def _vt(number, learner, C, gamma=None, *, slope=0.1, clean=0.9, backdoor=0.1):
    params = {"C": C} if gamma is None else {"C": C, "gamma": gamma}
    return VerifiedTrial(number=number, learner=learner, params=params, slope=slope, clean_accuracy=None,
                         poisoned_clean_accuracy=clean, backdoor_accuracy=backdoor)


def test_bin_trials_hand_computed():
    trials = [_vt(0, "rbf_svm", 1.0, 1e-3, slope=0.1), _vt(1, "rbf_svm", 1.2, 1.1e-3, slope=0.3),
              _vt(2, "rbf_svm", 100.0, 1.0, slope=0.9, backdoor=0.8), _vt(3, "ridge", 5.0)]
    grid = bin_trials(trials, learner="rbf_svm", n_bins=2)
    assert grid.binned and grid.counts.tolist() == [[2, 0], [0, 1]]
    assert grid.slope[0, 0] == pytest.approx(0.2) and grid.slope[1, 1] == pytest.approx(0.9)
    assert np.isnan(grid.slope[0, 1]) and np.isnan(grid.clean_accuracy).all()
    assert grid.C[0] == pytest.approx(10 ** 0.5) and grid.gamma[1] == pytest.approx(10 ** -0.75)
    one = bin_trials(trials, learner="ridge", n_bins=3)
    assert one.gamma is None and one.counts.sum() == 1


def test_robust_region_and_spearman_hand_computed():
    from dataclasses import replace

    trials = [replace(_vt(0, "a", 1, backdoor=0.05), candidate=True), replace(_vt(1, "a", 1, backdoor=0.5),
                                                                               candidate=True),
              _vt(2, "a", 1, backdoor=0.0)]
    assert [t.number for t in robust_region(trials, max_backdoor=0.1)] == [0]
    rho, p, note = slope_backdoor_spearman([0.1, 0.2, 0.3, 0.4], [0.0, 0.1, 0.1, 0.9])
    assert rho == pytest.approx(spearmanr([0.1, 0.2, 0.3, 0.4], [0.0, 0.1, 0.1, 0.9]).statistic)
    assert slope_backdoor_spearman([0.1, 0.2, 0.3], [0.5, 0.5, 0.5])[0] is None


def test_bad_inputs(plain_study, split):
    with pytest.raises(ValueError, match="study must be an optuna.Study"):
        verify_study("study", split)
    with pytest.raises(ValueError, match=r"trials must be one of \['candidates', 'pareto', 'all'\]"):
        verify_study(plain_study, split, trials="best")
    with pytest.raises(ValueError, match=r"tolerance must be a number in \[0, 1\]"):
        verify_study(plain_study, split, tolerance=2.0)
    with pytest.raises(ValueError, match="has no completed trials"):
        verify_study(optuna.create_study(directions=["maximize", "minimize"]), split)
    with pytest.raises(ValueError, match="no verified trial of learner 'ridge'"):
        bin_trials([_vt(0, "a", 1.0)], learner="ridge")
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        bin_trials([_vt(0, "a", 1.0)], learner="a", n_bins=0)
    with pytest.raises(ValueError, match="C must be strictly increasing"):
        paper_grid(split, C=(10.0, 1.0), gamma=None)
    with pytest.raises(ValueError, match="gamma must be a non-empty list of positive numbers"):
        paper_grid(split, C=(1.0,), gamma=(-1.0,))
    with pytest.raises(ValueError, match="slopes and backdoor must be 1-D of equal length"):
        slope_backdoor_spearman([0.1, 0.2], [0.1])
    single = optuna.create_study()
    single.add_trial(create_trial(params={"C": 1.0}, distributions={"C": FloatDistribution(0.1, 10)}, value=0.5))
    with pytest.raises(ValueError, match="has no slope"):
        trial_slope(single.trials[0])
    with pytest.raises(ValueError, match="trial params must contain 'learner'"):
        verify_study(single, split, trials="all")
    with pytest.raises(ValueError, match=r"no completed trials to verify \(no feasible candidate; try --trials all\)"):
        verify_study(single, split)
