"""The drop-in multi-objective Optuna objective: (clean accuracy ↑, backdoor learning slope ↓).

One trial = one learner configuration fitted once on the clean training set (β = 0), its clean-test
accuracy, and the normalised backdoor learning slope ``−(2/π)·arctan(dL/dβ / m)`` for each attack
(no poisoned retraining). With several attacks the reported slope aggregates the per-attack slopes:
the worst (largest) one by default (``aggregate="max"``), or their mean (``"mean"``).

The second objective is the paper's slope by default; ``objective="predicted_backdoor_accuracy"``
or ``"normalised_margin"`` (from the same solve, :attr:`robust_hpo.slope.SlopeResult.margins`)
replace it, still minimised. What a trial records: :mod:`robust_hpo.objective._record`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection

from robust_hpo._validation import Interval, Options, check
from robust_hpo.attacks import PoisonedSplit, shared_splits
from robust_hpo.errors import ValidationError
from robust_hpo.learners import LearnerFamily, get_family
from robust_hpo.objective._aggregate import AGGREGATES, Aggregate, aggregate_quantity, evaluate_threats
from robust_hpo.objective._constraint import AccuracyConstraint, record_constraint
from robust_hpo.objective._record import (
    MARGIN_QUANTITIES,
    OBJECTIVES,
    RECORD_ATTR,
    RECORD_FORMAT,
    failure_record,
    jsonable,
)
from robust_hpo.search_space import SearchSpace
from robust_hpo.slope import SlopeResult

FAIL_EXCEPTIONS: tuple[type[Exception], ...] = (ValueError, ArithmeticError, np.linalg.LinAlgError)
"""Errors that fail one trial (reason kept in the trial's record, ``fail_reason``) but not the study:
pass them as ``study.optimize(..., catch=FAIL_EXCEPTIONS)``. ``ArithmeticError`` covers
``FloatingPointError``; ``LinAlgError`` is a ``ValueError`` subclass in NumPy ≥ 2 but listed for clarity."""

DEFAULT_ATTACK = "attack"
"""The name a single :class:`PoisonedSplit` is given."""

@dataclass(frozen=True)
class Evaluation:
    """What one configuration scored: accuracy, every attack's result, and their aggregates.

    ``objective`` names the second objective (one of :data:`OBJECTIVES`); :attr:`value` is it
    aggregated over the attacks as ``aggregate`` says, :attr:`values` the pair a trial returns.
    """

    learner: str
    params: dict[str, Any]
    clean_accuracy: float
    slopes: dict[str, SlopeResult]
    fit_seconds: float
    predict_seconds: float
    slope_seconds: dict[str, float] = field(default_factory=dict)
    aggregate: str = "max"
    objective: str = "slope"

    def combined(self, quantity: str) -> Aggregate:
        """``quantity`` of every attack, aggregated (raises ``ValidationError`` when one is missing)."""
        return aggregate_quantity(self.slopes, quantity, self.aggregate)

    @property
    def worst_attack(self) -> str:
        """The attack with the largest value of the objective's quantity (the first on ties)."""
        return max(self.slopes, key=lambda name: getattr(self.slopes[name], self.objective))

    @property
    def slope(self) -> float:
        """The per-attack normalised slopes aggregated as ``aggregate`` says (max: the worst attack's)."""
        return self.combined("slope").value

    @property
    def value(self) -> float:
        """The second objective: the objective's quantity aggregated over the attacks."""
        return self.combined(self.objective).value

    @property
    def values(self) -> tuple[float, float]:
        return (self.clean_accuracy, self.value)


class BackdoorSlopeObjective:
    """``optuna.create_study(directions=obj.directions).optimize(obj, catch=FAIL_EXCEPTIONS)`` just works.

    Shaped like OptunaHub's ``BaseProblem``: :attr:`directions` (maximise clean accuracy, minimise
    slope), :attr:`metric_names`, :attr:`search_space` (flat ``{name: distribution}``; the conditional
    declaration is :attr:`space`), :meth:`evaluate` (params -> values) and ``__call__(trial)``.

    ``splits`` is one :class:`PoisonedSplit` or ``{name: PoisonedSplit}`` sharing the same clean
    training and test sets (one fit, one slope per attack through
    :func:`robust_hpo.objective.evaluate_threats`; the objective is ``aggregate`` of the slopes:
    ``"max"``, the worst case, by default, or ``"mean"``).
    ``objective`` chooses the second objective (:data:`OBJECTIVES`): ``"slope"`` (default, the
    paper's), ``"predicted_backdoor_accuracy"`` or ``"normalised_margin"``; all are minimised, and
    :attr:`metric_names` is ``("clean_accuracy", objective)``.
    Learner families are looked up by name in the registry unless given in ``families``.

    Each trial makes at most three storage writes of its own: one JSON user attribute
    :data:`RECORD_ATTR` (everything: slope, derivative, influence, margins-based quantities, exactness,
    timings, per-attack numbers, the attack's description; ``fail_reason`` on failure) and, with a
    constraint, :func:`~robust_hpo.objective.record_constraint` (two forms). Read it back with :func:`robust_hpo.objective.trial_record`.
    """

    directions: tuple[StudyDirection, StudyDirection] = (StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE)

    def __init__(self, splits: PoisonedSplit | Mapping[str, PoisonedSplit], *, space: SearchSpace,
                 families: Mapping[str, LearnerFamily] | None = None,
                 constraint: AccuracyConstraint | None = None, seed: int = 0,
                 aggregate: str = "max", objective: str = "slope") -> None:
        self.splits = _as_named_splits(splits)
        check("aggregate", aggregate, [Options(AGGREGATES)])
        self.aggregate = aggregate
        if objective not in OBJECTIVES:
            raise ValidationError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}")
        self.objective = objective
        if not isinstance(space, SearchSpace):
            raise ValidationError(f"space must be a SearchSpace, got {type(space).__name__}")
        if constraint is not None and not isinstance(constraint, AccuracyConstraint):
            raise ValidationError(f"constraint must be an AccuracyConstraint or None, got {type(constraint).__name__}")
        check("seed", seed, [Interval(Integral, None, None)])
        self.space = space
        self.constraint = constraint
        self.seed = int(seed)
        given = dict(families or {})
        self.families: dict[str, LearnerFamily] = {
            name: given[name] if name in given else get_family(name) for name in space.learner_names}

    @property
    def metric_names(self) -> tuple[str, str]:
        """``("clean_accuracy", <objective>)``: name the study's values with ``study.set_metric_names``."""
        return ("clean_accuracy", self.objective)

    @property
    def search_space(self) -> dict[str, BaseDistribution]:
        """Every trial parameter's distribution (conditional ones included), as OptunaHub expects."""
        return self.space.distributions()

    def evaluate(self, params: Mapping[str, Any]) -> tuple[float, float]:
        """(clean accuracy, objective) of flat trial params such as ``FrozenTrial.params``; records nothing."""
        learner, own = self.space.split_params(params)
        return self.evaluate_config(learner, own).values

    def evaluate_config(self, learner: str, params: Mapping[str, Any]) -> Evaluation:
        """Fit ``learner`` with ``params`` on the clean set; accuracy and every attack's slope."""
        if learner not in self.families:
            raise ValidationError(f"learner must be one of {sorted(self.families)}, got {learner!r}")
        first = next(iter(self.splits.values()))
        start = time.perf_counter()
        fitted = self.families[learner].fit(params, first.X_clean, first.y_clean, seed=self.seed)
        # the learner's own training time: work done in fit() for the slope (a convex learner's
        # Hessian factorisation) is counted in the slope's seconds, not twice
        fit_seconds = float(getattr(fitted, "fit_seconds", time.perf_counter() - start))
        start = time.perf_counter()
        predicted = np.asarray(fitted.predict(first.X_test))
        predict_seconds = time.perf_counter() - start
        if predicted.shape != first.y_test.shape:
            raise ValidationError(f"learner {learner!r} predicted shape {predicted.shape} for "
                             f"{first.y_test.shape[0]} test images")
        accuracy = float(np.mean(predicted == first.y_test))
        start = time.perf_counter()
        slopes = evaluate_threats(fitted, self.splits)
        elapsed = time.perf_counter() - start
        # a result's own slope time when it has one, else an equal share of the call
        slope_seconds = {name: float(getattr(r, "slope_seconds", 0.0) or elapsed / len(slopes))
                         for name, r in slopes.items()}
        for name, result in slopes.items():
            if not (math.isfinite(result.slope) and math.isfinite(result.derivative)):
                raise FloatingPointError(f"attack {name!r}: the slope is not finite "
                                         f"(derivative={result.derivative!r})")
        evaluation = Evaluation(learner=learner, params=dict(params), clean_accuracy=accuracy, slopes=slopes,
                                fit_seconds=fit_seconds, predict_seconds=predict_seconds,
                                slope_seconds=slope_seconds, aggregate=self.aggregate, objective=self.objective)
        evaluation.value  # noqa: B018 - a missing quantity (no margins) fails here, before anything is recorded
        return evaluation

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        learner, params = self.space.suggest(trial)
        try:
            evaluation = self.evaluate_config(learner, params)
        except FAIL_EXCEPTIONS as exc:
            trial.set_user_attr(RECORD_ATTR, failure_record(exc))
            raise
        trial.set_user_attr(RECORD_ATTR, self.record(evaluation))
        if self.constraint is not None:
            record_constraint(trial, self.constraint.value(evaluation.clean_accuracy, trial.study))
        return evaluation.values

    def record(self, evaluation: Evaluation) -> dict[str, Any]:
        """The JSON-ready record a trial stores for ``evaluation`` (format: :mod:`robust_hpo.objective._record`).

        One attribute on purpose: every attribute is one storage write (a journal file fsyncs each,
        a database makes a round trip).
        """
        return evaluation_record(evaluation, self.splits)


def evaluation_record(evaluation: Evaluation, splits: Mapping[str, PoisonedSplit]) -> dict[str, Any]:
    """The JSON-ready trial record of ``evaluation`` on ``splits`` (see :meth:`BackdoorSlopeObjective.record`)."""
    worst = evaluation.worst_attack
    combined: dict[str, float | None] = {}
    for quantity in ("slope", *MARGIN_QUANTITIES):
        try:
            combined[quantity] = evaluation.combined(quantity).value
        except ValidationError:  # an attack without margins (networks, finite differences)
            combined[quantity] = None
    record: dict[str, Any] = {
        "format": RECORD_FORMAT,
        "objective": evaluation.objective,
        "aggregate": evaluation.aggregate,
        "worst_attack": worst,
        **combined,
        "exact": all(r.exact for r in evaluation.slopes.values()),
        "fit_seconds": evaluation.fit_seconds,
        "predict_seconds": evaluation.predict_seconds,
        "slope_seconds": sum(evaluation.slope_seconds.values()),
        "attack": splits[worst].attack,
        "attacks": {name: {"slope": r.slope, "derivative": r.derivative, "influence": r.influence,
                           "n_poison": r.n_poison, "n_clean": r.n_clean, "n_trigger": r.n_trigger,
                           "method": r.method, "loss": r.loss, "damping": r.damping, "exact": r.exact,
                           "slope_seconds": evaluation.slope_seconds[name],
                           **{q: getattr(r, q) for q in MARGIN_QUANTITIES},
                           "details": r.details}
                    for name, r in evaluation.slopes.items()},
    }
    return jsonable(record)


def _as_named_splits(splits: PoisonedSplit | Mapping[str, PoisonedSplit]) -> dict[str, PoisonedSplit]:
    if isinstance(splits, PoisonedSplit):
        return {DEFAULT_ATTACK: splits}
    if not isinstance(splits, Mapping) or len(splits) == 0:
        raise ValidationError("splits must be a PoisonedSplit or a non-empty {name: PoisonedSplit} mapping, "
                         f"got {type(splits).__name__}")
    named = shared_splits(splits, argument="splits")
    for name, split in named.items():
        if len(split.y_test) == 0:
            raise ValidationError(f"splits[{name!r}] has no clean test points; expected at least one")
    return named
