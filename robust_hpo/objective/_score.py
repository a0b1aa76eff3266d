"""``score_trial``: backdoor robustness inside *your* Optuna objective, one call per trial.

::

    def objective(trial):
        model = LogisticRegression(C=trial.suggest_float("C", 1e-3, 1e2, log=True))
        return score_trial(trial, model, split)          # (clean accuracy ↑, slope ↓)

    study = optuna.create_study(directions=["maximize", "minimize"])

The trial stores the same record as :class:`~robust_hpo.objective.BackdoorSlopeObjective`'s
(:mod:`robust_hpo.objective._record`, with the estimator's family and hyperparameters as
``learner``/``learner_params``), so ``robust-hpo report|dashboard --storage URL --study-name NAME``,
``summary.json`` and :func:`robust_hpo.analysis.verify_study` read the study. The study is marked
with the attribute :data:`USER_OBJECTIVE_ATTR` (the attacks and a fingerprint of the split's arrays).
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Mapping
from numbers import Real
from typing import Any

import numpy as np
import optuna
from optuna.exceptions import ExperimentalWarning
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils.validation import check_is_fitted

from robust_hpo._validation import flatten_images
from robust_hpo.attacks import PoisonedSplit
from robust_hpo.errors import ValidationError
from robust_hpo.objective._aggregate import AGGREGATES, evaluate_threats
from robust_hpo.objective._constraint import AccuracyConstraint, record_constraint
from robust_hpo.objective._objective import FAIL_EXCEPTIONS, Evaluation, _as_named_splits, evaluation_record
from robust_hpo.objective._record import OBJECTIVES, RECORD_ATTR, failure_record

__all__ = ["USER_OBJECTIVE_ATTR", "check_user_split", "score_trial"]

USER_OBJECTIVE_ATTR = "robust_hpo:user_objective"
"""Study user attribute written by :func:`score_trial`: ``{"attacks": {name: description}, "content":
{array: sha256}}`` — the study's trials are robust_hpo records, its problem is the user's own."""


def score_trial(trial: optuna.Trial, estimator: Any, split: PoisonedSplit | Mapping[str, PoisonedSplit], *,
                constraint: AccuracyConstraint | float | None = None, aggregate: str = "max",
                objective: str = "slope") -> tuple[float, float]:
    """(clean accuracy, slope) of ``estimator`` on ``split``, recorded on ``trial`` like the built-in objective.

    estimator: a scikit-learn estimator the exact slope supports (``LogisticRegression``,
        ``RidgeClassifier``, ``SVC`` linear or RBF), unfitted or already fitted. The slope is that of the
        estimator's configuration fitted on ``split``'s clean training set (a clone is fitted there and
        brought to the optimum); the clean accuracy is that of *your* fitted estimator on the clean test
        set when it is fitted, else of the clone. ``agreement`` in the record is the share of test points
        on which the two predict alike (1.0 when you fitted it on the same clean set).
    split: one :class:`~robust_hpo.attacks.PoisonedSplit` or ``{name: split}`` sharing one clean set.
    constraint: an :class:`AccuracyConstraint`, or a number = its ``min_accuracy``.
    aggregate, objective: as :class:`~robust_hpo.objective.BackdoorSlopeObjective` takes them; the
        second value returned is ``objective`` aggregated over the attacks.

    A trial whose fit or slope fails records its ``fail_reason`` and re-raises (pass
    ``catch=FAIL_EXCEPTIONS`` to ``study.optimize``).
    """
    if not hasattr(trial, "set_user_attr") or not hasattr(trial, "suggest_float"):
        raise ValidationError(f"trial must be an optuna Trial, got {type(trial).__name__}")
    splits = _as_named_splits(split)
    if aggregate not in AGGREGATES:
        raise ValidationError(f"aggregate must be one of {list(AGGREGATES)}, got {aggregate!r}")
    if objective not in OBJECTIVES:
        raise ValidationError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}")
    if isinstance(constraint, Real) and not isinstance(constraint, bool):
        constraint = AccuracyConstraint(min_accuracy=float(constraint))
    if constraint is not None and not isinstance(constraint, AccuracyConstraint):
        raise ValidationError(f"constraint must be an AccuracyConstraint, a minimum accuracy or None, got "
                              f"{constraint!r}")
    _mark_study(trial, splits)
    try:
        evaluation, extra = _evaluate(estimator, splits, aggregate, objective)
    except FAIL_EXCEPTIONS as exc:
        trial.set_user_attr(RECORD_ATTR, failure_record(exc))
        raise
    record = evaluation_record(evaluation, splits)
    record.update(extra)
    trial.set_user_attr(RECORD_ATTR, record)
    if constraint is not None:
        record_constraint(trial, constraint.value(evaluation.clean_accuracy, getattr(trial, "study", None)))
    return evaluation.values


def _evaluate(estimator: Any, splits: dict[str, PoisonedSplit], aggregate: str,
              objective: str) -> tuple[Evaluation, dict[str, Any]]:
    from robust_hpo.learners.convex import FittedConvexLearner, convex_family_of
    from robust_hpo.slope import slope_model

    first = next(iter(splits.values()))
    model = slope_model(clone(estimator))  # unsupported estimators are refused here, naming the supported ones
    X_clean, X_test = flatten_images(first.X_clean), flatten_images(first.X_test)
    start = time.perf_counter()
    model.fit(X_clean, first.y_clean)
    fit_seconds = time.perf_counter() - start
    refit = model.predict(X_test)
    yours = _fitted_predictions(estimator, X_test)
    predicted = yours if yours is not None else refit
    accuracy = float(np.mean(predicted == first.y_test))
    start = time.perf_counter()
    slopes = evaluate_threats(FittedConvexLearner(model), splits)
    elapsed = time.perf_counter() - start
    family = convex_family_of(estimator)
    evaluation = Evaluation(learner=family.name if family else type(estimator).__name__,
                            params=family.params_of(estimator) if family else {}, clean_accuracy=accuracy,
                            slopes=slopes, fit_seconds=fit_seconds, predict_seconds=0.0,
                            slope_seconds={name: elapsed / len(slopes) for name in slopes},
                            aggregate=aggregate, objective=objective)
    for name, result in slopes.items():
        if not (np.isfinite(result.slope) and np.isfinite(result.derivative)):
            raise FloatingPointError(f"attack {name!r}: the slope is not finite (derivative={result.derivative!r})")
    evaluation.value  # noqa: B018 - a missing quantity fails here, before anything is recorded
    extra: dict[str, Any] = {
        "learner": evaluation.learner, "learner_params": evaluation.params,
        "estimator": {"class": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
                      "params": {k: v for k, v in estimator.get_params(deep=False).items()
                                 if v is None or isinstance(v, (bool, int, float, str))}},
        "fitted_by_user": yours is not None,
        "agreement": float(np.mean(yours == refit)) if yours is not None else 1.0,
    }
    return evaluation, extra


def _fitted_predictions(estimator: Any, X: np.ndarray) -> np.ndarray | None:
    """Your fitted estimator's predictions on ``X``; None when it is not fitted."""
    try:
        check_is_fitted(estimator)
    except SklearnNotFittedError:
        return None
    n_features = getattr(estimator, "n_features_in_", X.shape[1])
    if n_features != X.shape[1]:
        raise ValidationError(f"estimator was fitted on {n_features} features but the split's rows have "
                              f"{X.shape[1]}; fit it on the split's data or pass it unfitted")
    return np.asarray(estimator.predict(X))


_CONTENT = ("X_clean", "y_clean", "X_test", "y_test")


def _content(split: PoisonedSplit) -> dict[str, str]:
    return {name: hashlib.sha256(np.ascontiguousarray(getattr(split, name)).tobytes()).hexdigest()
            for name in _CONTENT}


def check_user_split(study: optuna.Study, splits: Mapping[str, PoisonedSplit]) -> None:
    """``ValidationError`` when ``study`` was scored by :func:`score_trial` on other clean data than
    ``splits`` hold (the arrays that differ are named); nothing to check for other studies."""
    marker = study.user_attrs.get(USER_OBJECTIVE_ATTR)
    if not isinstance(marker, Mapping) or not isinstance(marker.get("content"), Mapping) or not splits:
        return
    current = _content(next(iter(splits.values())))
    differ = [name for name in _CONTENT if marker["content"].get(name) != current[name]]
    if differ:
        raise ValidationError(f"study {study.study_name!r} was scored (score_trial) on other data: {', '.join(differ)} "
                              "differ from what the study file builds; describe the data and attack it ran on")


def _mark_study(trial: Any, splits: dict[str, PoisonedSplit]) -> None:
    """Write :data:`USER_OBJECTIVE_ATTR` and the metric names once per study (the first trial does)."""
    study = getattr(trial, "study", None)
    if study is None or USER_OBJECTIVE_ATTR in study.user_attrs:
        return
    study.set_user_attr(USER_OBJECTIVE_ATTR, {"attacks": {n: s.attack for n, s in splits.items()},
                                              "content": _content(next(iter(splits.values())))})
    if study.metric_names is None and len(study.directions) == 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            study.set_metric_names(["clean_accuracy", "slope"])
