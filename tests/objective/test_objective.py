"""The drop-in objective: values against independent computations, samplers, the trial record, failures,
the accuracy constraint, several attacks, and bad inputs."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from robust_hpo.testing import FAKE, FLAKY, expected_accuracy, expected_margins, expected_slope, tiny_split
from optuna.distributions import FloatDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState
from sklearn.linear_model import LogisticRegression

from robust_hpo.learners import get_family
from robust_hpo.objective import (
    CONSTRAINT_NAME,
    FAIL_EXCEPTIONS,
    LEGACY_CONSTRAINTS_KEY,
    RECORD_ATTR,
    AccuracyConstraint,
    BackdoorSlopeObjective,
    is_feasible,
    trial_record,
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
        record = trial_record(trial)
        assert record.derivative == pytest.approx(-C)
        assert record.influence == pytest.approx(-C / m)
        assert trial.values[1] == pytest.approx(-2 / math.pi * math.atan(record.influence))
    assert study.best_trials


def test_one_record_attribute() -> None:
    split = tiny_split()
    study = optuna.create_study(directions=_objective().directions)
    study.enqueue_trial({"fake.C": 2.0, "fake.threshold": 0.45})
    study.optimize(_objective(splits=split), n_trials=1)
    trial = study.trials[0]
    assert set(trial.user_attrs) == {RECORD_ATTR}
    record = trial_record(trial)
    assert record.n_poison == len(split.y_poison) and record.method == "fake"
    assert record.attack == {"trigger": {"name": "corner", "value": 1.0}, "fraction": 0.1, "pixels": [3, 3]}
    assert record.attacks["attack"].n_trigger == len(split.y_trigger)
    assert record.fit_seconds >= 0.0 and record.slope_seconds >= 0.0 and record.predict_seconds >= 0.0
    assert record.exact and record.objective == "slope" and record.slope == trial.values[1]
    assert record.clean_accuracy == trial.values[0] and record.feasible is True
    # the margins-based quantities, against the fake's hand-computed margins
    margin, derivative = expected_margins(split.X_trigger, split.y_trigger, C=2.0, threshold=0.45,
                                          classes=split.classes)
    assert record.baseline_backdoor_accuracy == pytest.approx(np.mean(margin > 0))
    assert record.predicted_backdoor_accuracy == pytest.approx(np.mean(margin + derivative > 0))
    assert record.normalised_margin == pytest.approx(np.mean(margin + derivative))
    assert 0 < record.baseline_backdoor_accuracy < record.predicted_backdoor_accuracy < 1


def test_real_learner_record_matches_the_slope_api() -> None:
    """Logistic regression: the record's margins-based quantities are the slope API's on the same fit."""
    split = tiny_split(1, n=80, n_test=40)
    objective = BackdoorSlopeObjective(split, space=SearchSpace.from_families([get_family("logistic")]))
    study = optuna.create_study(directions=objective.directions)
    study.enqueue_trial({"logistic.C": 5.0})
    study.optimize(objective, n_trials=1)
    record = trial_record(study.trials[0])
    reference = backdoor_slope(LogisticRegression(C=5.0, max_iter=2000), split)
    assert record.slope == pytest.approx(reference.slope, rel=1e-6)
    for quantity in ("baseline_backdoor_accuracy", "predicted_backdoor_accuracy", "normalised_margin"):
        assert getattr(record, quantity) == pytest.approx(getattr(reference, quantity), rel=1e-6), quantity
    assert record.exact is True and record.method == reference.method


class _CountingStorage(optuna.storages.InMemoryStorage):
    """In-memory storage counting every write per trial (Optuna's own included)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: dict[str, int] = {}

    def _count(self, kind: str) -> None:
        self.writes[kind] = self.writes.get(kind, 0) + 1

    def set_trial_user_attr(self, trial_id, key, value):  # noqa: ANN001, ANN201
        self._count("user_attr")
        return super().set_trial_user_attr(trial_id, key, value)

    def set_trial_system_attr(self, trial_id, key, value):  # noqa: ANN001, ANN201
        self._count("system_attr")
        return super().set_trial_system_attr(trial_id, key, value)


@pytest.mark.parametrize("constraint", [None, AccuracyConstraint(min_accuracy=0.8)])
def test_at_most_three_attribute_writes_per_trial(constraint: AccuracyConstraint | None) -> None:
    storage = _CountingStorage()
    objective = _objective(constraint=constraint)
    study = optuna.create_study(directions=objective.directions, storage=storage,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=5)
    assert storage.writes.get("user_attr", 0) == 5
    assert storage.writes.get("system_attr", 0) == (10 if constraint is not None else 0)  # named + list form


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
    assert trial_record(first).fail_reason == "ValueError: C=50 is too large for flaky"
    assert set(first.user_attrs) == {RECORD_ATTR}
    assert second.state == TrialState.COMPLETE and trial_record(second).fail_reason is None
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
    assert trial_record(study.trials[0]).fail_reason.startswith("FloatingPointError: attack 'attack'")


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
    record = trial_record(trial)
    assert record.worst_attack == "strong"
    assert record.attack_slope("weak") == pytest.approx(expected_slope(1.0, m))
    assert record.derivative == pytest.approx(-4.0)
    assert record.slope == trial.values[1]


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


@pytest.mark.parametrize("objective", ["predicted_backdoor_accuracy", "normalised_margin"])
def test_the_second_objective_can_be_a_margin_quantity(objective: str) -> None:
    split = tiny_split()
    study_objective = _objective(splits=split, objective=objective)
    assert study_objective.metric_names == ("clean_accuracy", objective)
    assert study_objective.directions == (StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE)
    study = optuna.create_study(directions=study_objective.directions)
    study.enqueue_trial({"fake.C": 3.0, "fake.threshold": 0.5})
    study.optimize(study_objective, n_trials=1)
    trial = study.trials[0]
    margin, derivative = expected_margins(split.X_trigger, split.y_trigger, C=3.0, threshold=0.5,
                                          classes=split.classes)
    expected = {"predicted_backdoor_accuracy": np.mean(margin + derivative > 0),
                "normalised_margin": np.mean(margin + derivative)}[objective]
    assert trial.values[1] == pytest.approx(expected)
    record = trial_record(trial, study_objective.metric_names)
    assert record.objective == objective and record.objective_value == trial.values[1]
    assert record.slope == pytest.approx(expected_slope(3.0, len(split.y_poison)))  # still recorded


def test_a_margin_objective_without_margins_fails_the_trial_with_the_reason() -> None:
    from robust_hpo.testing import NET

    objective = BackdoorSlopeObjective(tiny_split(), space=SearchSpace.from_families([NET]),
                                       objective="predicted_backdoor_accuracy")
    study = optuna.create_study(directions=objective.directions)
    study.optimize(objective, n_trials=1, catch=FAIL_EXCEPTIONS)
    reason = trial_record(study.trials[0]).fail_reason
    assert study.trials[0].state == TrialState.FAIL
    assert reason.startswith("ValidationError: attack 'attack': the 'fake' slope gives no predicted backdoor "
                             "accuracy") and "choose the objective 'slope'" in reason


def test_unknown_objective_is_refused() -> None:
    with pytest.raises(ValueError, match=r"objective must be one of \['slope', 'predicted_backdoor_accuracy', "
                                         r"'normalised_margin'\], got 'margin'"):
        _objective(objective="margin")
