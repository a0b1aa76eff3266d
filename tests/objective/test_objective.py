"""The drop-in objective: values against independent computations, samplers, attributes, failures,
the accuracy constraint in both recorded forms, several attacks, and bad inputs."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from robust_hpo.testing import FAKE, FLAKY, expected_accuracy, expected_slope, tiny_split
from optuna.distributions import FloatDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState
from sklearn.linear_model import LogisticRegression

from robust_hpo.learners import get_family
from robust_hpo.objective import (
    CONSTRAINT_NAME,
    FAIL_EXCEPTIONS,
    LEGACY_CONSTRAINTS_KEY,
    AccuracyConstraint,
    BackdoorSlopeObjective,
    is_feasible,
)
from robust_hpo.search_space import LEARNER_PARAM, SearchSpace
from robust_hpo.slope import backdoor_slope

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _objective(**kwargs: object) -> BackdoorSlopeObjective:
    space = kwargs.pop("space", SearchSpace.from_families([FAKE]))
    return BackdoorSlopeObjective(kwargs.pop("splits", tiny_split()), space=space, **kwargs)  # type: ignore[arg-type]


def test_directions_and_metric_names() -> None:
    objective = _objective()
    assert objective.directions == (StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE)
    assert objective.metric_names == ("clean_accuracy", "slope")
    assert set(objective.search_space) == {LEARNER_PARAM, "fake.C", "fake.threshold"}


@pytest.mark.parametrize(("C", "threshold"), [(0.05, 0.5), (3.0, 0.45), (80.0, 0.9)])
def test_evaluate_matches_hand_computation(C: float, threshold: float) -> None:
    split = tiny_split()
    clean_accuracy, slope = _objective(splits=split).evaluate(
        {LEARNER_PARAM: "fake", "fake.C": C, "fake.threshold": threshold})
    assert clean_accuracy == pytest.approx(expected_accuracy(split, threshold))
    assert slope == pytest.approx(expected_slope(C, len(split.y_poison)))


def test_real_learner_matches_sklearn_and_backdoor_slope() -> None:
    """Accuracy from a directly fitted LogisticRegression; slope from the slope API on the same estimator."""
    split = tiny_split(1, n=80, n_test=40)
    objective = BackdoorSlopeObjective(split, space=SearchSpace.from_families([get_family("logistic")]))
    C = 0.7
    accuracy, slope = objective.evaluate({LEARNER_PARAM: "logistic", "logistic.C": C})
    X_clean, y_clean, X_poison, y_poison, X_trigger, y_trigger = split.flat()
    model = LogisticRegression(C=C, max_iter=2000).fit(X_clean, y_clean)
    assert accuracy == pytest.approx(np.mean(model.predict(split.X_test.reshape(len(split.X_test), -1))
                                             == split.y_test))
    reference = backdoor_slope(LogisticRegression(C=C, max_iter=2000), X_clean, y_clean, X_poison, y_poison,
                               X_trigger, y_trigger)
    assert slope == pytest.approx(reference.slope, rel=1e-6, abs=1e-9)



def test_factorisation_time_is_counted_once() -> None:
    """fit_seconds is scikit-learn's fit alone; the Hessian factorisation done in fit() is slope time."""
    split = tiny_split(1, n=80, n_test=40)
    objective = BackdoorSlopeObjective(split, space=SearchSpace.from_families([get_family("logistic")]))
    evaluation = objective.evaluate_config("logistic", {"C": 0.7})
    result = evaluation.slopes["attack"]
    assert evaluation.fit_seconds == result.fit_seconds > 0.0
    assert evaluation.slope_seconds["attack"] == result.slope_seconds > 0.0

@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "gp", "random"])
def test_create_study_and_optimize_just_work(sampler: str) -> None:
    split = tiny_split()
    objective = _objective(splits=split)
    samplers = {"tpe": optuna.samplers.TPESampler(seed=0, n_startup_trials=4),
                "nsga2": optuna.samplers.NSGAIISampler(seed=0, population_size=4),
                "gp": optuna.samplers.GPSampler(seed=0, n_startup_trials=4),
                "random": optuna.samplers.RandomSampler(seed=0)}
    study = optuna.create_study(directions=objective.directions, sampler=samplers[sampler])
    study.optimize(objective, n_trials=8, catch=FAIL_EXCEPTIONS)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 8
    for trial in study.trials:
        assert trial.values == pytest.approx(list(objective.evaluate(trial.params)))
        C = trial.params["fake.C"]
        m = len(split.y_poison)
        assert trial.user_attrs["derivative"] == pytest.approx(-C)
        assert trial.user_attrs["influence"] == pytest.approx(-C / m)
        assert trial.values[1] == pytest.approx(-2 / math.pi * math.atan(trial.user_attrs["influence"]))
    assert study.best_trials


def test_user_attrs_recorded() -> None:
    split = tiny_split()
    study = optuna.create_study(directions=_objective().directions)
    study.optimize(_objective(splits=split), n_trials=2)
    attrs = study.trials[0].user_attrs
    assert set(attrs) == {"derivative", "influence", "n_poison", "fit_seconds", "slope_seconds", "attack",
                          "details"}
    assert attrs["n_poison"] == len(split.y_poison)
    assert attrs["attack"] == {"trigger": {"name": "corner", "value": 1.0}, "fraction": 0.1, "pixels": [3, 3]}
    assert attrs["details"]["n_trigger"] == len(split.y_trigger)
    assert attrs["details"]["slope_method"] == "fake"
    assert attrs["fit_seconds"] >= 0.0 and attrs["slope_seconds"] >= 0.0


def test_optunahub_style_generic_call() -> None:
    """Suggesting every distribution of ``search_space`` (as OptunaHub's BaseProblem does) then evaluate."""
    objective = _objective()
    study = optuna.create_study(directions=objective.directions)

    def generic(trial: optuna.Trial) -> tuple[float, float]:
        for name, dist in objective.search_space.items():
            trial._suggest(name, dist)
        return objective.evaluate(trial.params)

    study.optimize(generic, n_trials=3)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_failed_fit_fails_the_trial_with_its_reason_and_the_study_continues() -> None:
    objective = BackdoorSlopeObjective(tiny_split(), space=SearchSpace.from_families([FLAKY]))
    study = optuna.create_study(directions=objective.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial({"flaky.C": 50.0, "flaky.threshold": 0.5})
    study.enqueue_trial({"flaky.C": 0.1, "flaky.threshold": 0.5})
    study.optimize(objective, n_trials=6, catch=FAIL_EXCEPTIONS)
    first, second = study.trials[:2]
    assert first.state == TrialState.FAIL
    assert first.user_attrs["fail_reason"] == "ValueError: C=50 is too large for flaky"
    assert second.state == TrialState.COMPLETE and "fail_reason" not in second.user_attrs
    assert len(study.trials) == 6


def test_non_finite_slope_fails_the_trial() -> None:
    objective = _objective()
    study = optuna.create_study(directions=objective.directions)

    class NanFamily:
        name = "fake"

        def search_space(self) -> dict:
            return FAKE.search_space()

        def fit(self, params, X, y, *, seed=0):  # noqa: ANN001, ANN201
            fitted = FAKE.fit(params, X, y, seed=seed)
            fitted.backdoor_slope = lambda *a: type("R", (), {"slope": float("nan"), "derivative": float("nan")})()
            return fitted

    objective = BackdoorSlopeObjective(tiny_split(), space=SearchSpace.from_families([FAKE]),
                                       families={"fake": NanFamily()})
    study.optimize(objective, n_trials=1, catch=FAIL_EXCEPTIONS)
    assert study.trials[0].state == TrialState.FAIL
    assert study.trials[0].user_attrs["fail_reason"].startswith("FloatingPointError: attack 'attack'")


def test_unexpected_errors_stop_the_study() -> None:
    class Broken:
        name = "fake"

        def search_space(self) -> dict:
            return FAKE.search_space()

        def fit(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
            raise RuntimeError("bug")

    objective = BackdoorSlopeObjective(tiny_split(), space=SearchSpace.from_families([FAKE]),
                                       families={"fake": Broken()})
    study = optuna.create_study(directions=objective.directions)
    with pytest.raises(RuntimeError, match="bug"):
        study.optimize(objective, n_trials=3, catch=FAIL_EXCEPTIONS)
    assert len(study.trials) == 1


def test_min_accuracy_constraint_recorded_in_both_forms() -> None:
    split = tiny_split()
    objective = _objective(splits=split, constraint=AccuracyConstraint(min_accuracy=0.8))
    study = optuna.create_study(directions=objective.directions)
    study.enqueue_trial({"fake.C": 1.0, "fake.threshold": 0.5})   # separates the classes
    study.enqueue_trial({"fake.C": 1.0, "fake.threshold": 0.99})  # predicts one class: 50 %
    study.optimize(objective, n_trials=2)
    good, bad = study.trials
    for trial, threshold in ((good, 0.5), (bad, 0.99)):
        value = 0.8 - expected_accuracy(split, threshold)
        assert trial.constraints[CONSTRAINT_NAME] == pytest.approx(value)
        assert trial.system_attrs[LEGACY_CONSTRAINTS_KEY] == pytest.approx([value])
    assert is_feasible(good) and not is_feasible(bad)
    assert study.best_trials == [good]


def test_within_best_constraint_uses_the_best_so_far() -> None:
    split = tiny_split()
    objective = _objective(splits=split, constraint=AccuracyConstraint(within_best=0.05))
    study = optuna.create_study(directions=objective.directions)
    thresholds = [0.99, 0.5, 0.45]
    for threshold in thresholds:
        study.enqueue_trial({"fake.C": 1.0, "fake.threshold": threshold})
    study.optimize(objective, n_trials=3)
    accuracies = [expected_accuracy(split, t) for t in thresholds]
    best = -math.inf
    for trial, accuracy in zip(study.trials, accuracies, strict=True):
        best = max(best, accuracy)
        assert trial.constraints[CONSTRAINT_NAME] == pytest.approx(best - 0.05 - accuracy)
    assert is_feasible(study.trials[0])  # the best so far when it ran, though worse trials follow
    assert accuracies[0] < max(accuracies) - 0.05


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "give exactly one of min_accuracy or within_best, got neither"),
    ({"min_accuracy": 0.5, "within_best": 0.1}, "got min_accuracy and within_best"),
    ({"min_accuracy": 1.5}, r"min_accuracy must be a number in \[0, 1\], got 1.5"),
    ({"within_best": -0.1}, r"within_best must be a number in \[0, 1\]"),
    ({"min_accuracy": True}, "min_accuracy must be a number"),
])
def test_constraint_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AccuracyConstraint(**kwargs)


def test_several_attacks_worst_case() -> None:
    strong, weak = tiny_split(0, trigger_value=1.0), tiny_split(0, trigger_value=0.0)

    class PerAttack:
        name = "fake"

        def search_space(self) -> dict:
            return FAKE.search_space()

        def fit(self, params, X, y, *, seed=0):  # noqa: ANN001, ANN201
            fitted = FAKE.fit(params, X, y, seed=seed)
            plain = fitted.backdoor_slope

            def slope(Xp, yp, Xt, yt):  # noqa: ANN001, ANN202
                result = plain(Xp, yp, Xt, yt)
                scale = 2.0 if float(Xt[0, 0, -1, -1]) == 1.0 else 0.5  # the strong trigger doubles -C
                from robust_hpo.slope import SlopeResult
                return SlopeResult.from_derivative(result.derivative * scale, n_poison=result.n_poison,
                                                   n_clean=0, n_trigger=result.n_trigger, method="fake", loss="none")
            fitted.backdoor_slope = slope
            return fitted

    objective = BackdoorSlopeObjective({"weak": weak, "strong": strong}, space=SearchSpace.from_families([FAKE]),
                                       families={"fake": PerAttack()})
    study = optuna.create_study(directions=objective.directions)
    study.enqueue_trial({"fake.C": 2.0, "fake.threshold": 0.5})
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    m = len(strong.y_poison)
    assert trial.values[1] == pytest.approx(expected_slope(4.0, m))
    assert trial.user_attrs["worst_attack"] == "strong"
    assert trial.user_attrs["attacks"]["weak"]["slope"] == pytest.approx(expected_slope(1.0, m))
    assert trial.user_attrs["derivative"] == pytest.approx(-4.0)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: BackdoorSlopeObjective({}, space=SearchSpace.from_families([FAKE])),
     "splits must be a PoisonedSplit or a non-empty"),
    (lambda: BackdoorSlopeObjective({"a": tiny_split(0), "b": tiny_split(1)}, space=SearchSpace.from_families([FAKE])),
     r"splits\['b'\].X_clean differs from splits\['a'\].X_clean"),
    (lambda: BackdoorSlopeObjective({"a": "x"}, space=SearchSpace.from_families([FAKE])),
     r"splits\['a'\] must be a PoisonedSplit"),
    (lambda: BackdoorSlopeObjective(tiny_split(), space={"fake": {}}), "space must be a SearchSpace"),
    (lambda: BackdoorSlopeObjective(tiny_split(), space=SearchSpace.from_families([FAKE]), constraint=0.9),
     "constraint must be an AccuracyConstraint"),
    (lambda: BackdoorSlopeObjective(tiny_split(), space=SearchSpace.from_families([FAKE]), seed=1.5),
     "seed must be an integer"),
    (lambda: BackdoorSlopeObjective(tiny_split(), space=SearchSpace({"nope": {"C": FloatDistribution(1, 2)}})),
     "unknown learner 'nope'"),
    (lambda: _objective().evaluate({"fake.C": 1.0}), "params must contain 'learner'"),
    (lambda: _objective().evaluate_config("other", {}), "learner must be one of"),
])
def test_bad_inputs(make, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=message):
        make()
