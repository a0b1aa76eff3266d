"""The drop-in multi-objective Optuna objective: (clean accuracy ↑, backdoor learning slope ↓).

One trial = one learner configuration fitted once on the clean training set (β = 0), its clean-test
accuracy, and the normalised backdoor learning slope ``−(2/π)·arctan(dL/dβ / m)`` for each attack
(no poisoned retraining). With several attacks the reported slope aggregates the per-attack slopes:
the worst (largest) one by default (``aggregate="max"``), or their mean (``"mean"``).
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
from robust_hpo.objective._aggregate import AGGREGATES, aggregate_slopes, evaluate_threats
from robust_hpo.objective._constraint import AccuracyConstraint, record_constraint
from robust_hpo.search_space import SearchSpace
from robust_hpo.slope import SlopeResult

FAIL_EXCEPTIONS: tuple[type[Exception], ...] = (ValueError, ArithmeticError, np.linalg.LinAlgError)
"""Errors that fail one trial (reason kept in user attr ``fail_reason``) but not the study:
pass them as ``study.optimize(..., catch=FAIL_EXCEPTIONS)``. ``ArithmeticError`` covers
``FloatingPointError``; ``LinAlgError`` is a ``ValueError`` subclass in NumPy ≥ 2 but listed for clarity."""

DEFAULT_ATTACK = "attack"
"""The name a single :class:`PoisonedSplit` is given."""

SLOPE_ATTR_PREFIX = "slope:"
"""With several attacks, each attack's normalised slope is the user attr ``slope:<attack name>``."""


@dataclass(frozen=True)
class Evaluation:
    """What one configuration scored: accuracy, the aggregated slope, and every attack's result."""

    learner: str
    params: dict[str, Any]
    clean_accuracy: float
    slopes: dict[str, SlopeResult]
    fit_seconds: float
    predict_seconds: float
    slope_seconds: dict[str, float] = field(default_factory=dict)
    aggregate: str = "max"

    @property
    def worst_attack(self) -> str:
        """The attack with the largest normalised slope (the first on ties)."""
        return max(self.slopes, key=lambda name: self.slopes[name].slope)

    @property
    def slope(self) -> float:
        """The per-attack normalised slopes aggregated as ``aggregate`` says (max: the worst attack's)."""
        return aggregate_slopes(self.slopes, self.aggregate).value

    @property
    def values(self) -> tuple[float, float]:
        return (self.clean_accuracy, self.slope)


class BackdoorSlopeObjective:
    """``optuna.create_study(directions=obj.directions).optimize(obj, catch=FAIL_EXCEPTIONS)`` just works.

    Shaped like OptunaHub's ``BaseProblem``: :attr:`directions` (maximise clean accuracy, minimise
    slope), :attr:`metric_names`, :attr:`search_space` (flat ``{name: distribution}``; the conditional
    declaration is :attr:`space`), :meth:`evaluate` (params -> values) and ``__call__(trial)``.

    ``splits`` is one :class:`PoisonedSplit` or ``{name: PoisonedSplit}`` sharing the same clean
    training and test sets (one fit, one slope per attack through
    :func:`robust_hpo.objective.evaluate_threats`; the objective is ``aggregate`` of the slopes:
    ``"max"``, the worst case, by default, or ``"mean"``).
    Learner families are looked up by name in the registry unless given in ``families``.

    Each completed trial records user attrs: ``derivative`` (dL/dβ of the mean triggered-test loss),
    ``influence`` (derivative / m), ``n_poison``, ``fit_seconds``, ``slope_seconds``, ``attack`` (the
    attack's description), ``details`` (slope method, loss, damping, n_clean, n_trigger,
    predict_seconds), and with several attacks ``slope:<name>`` (each attack's normalised slope),
    ``worst_attack`` and ``attacks`` (per-attack summaries); the learner is the ``learner``
    parameter. A failed trial records ``fail_reason``.
    """

    directions: tuple[StudyDirection, StudyDirection] = (StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE)
    metric_names: tuple[str, str] = ("clean_accuracy", "slope")

    def __init__(self, splits: PoisonedSplit | Mapping[str, PoisonedSplit], *, space: SearchSpace,
                 families: Mapping[str, LearnerFamily] | None = None,
                 constraint: AccuracyConstraint | None = None, seed: int = 0,
                 aggregate: str = "max") -> None:
        self.splits = _as_named_splits(splits)
        check("aggregate", aggregate, [Options(AGGREGATES)])
        self.aggregate = aggregate
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
    def search_space(self) -> dict[str, BaseDistribution]:
        """Every trial parameter's distribution (conditional ones included), as OptunaHub expects."""
        return self.space.distributions()

    def evaluate(self, params: Mapping[str, Any]) -> tuple[float, float]:
        """(clean accuracy, slope) of flat trial params such as ``FrozenTrial.params``; records nothing."""
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
        return Evaluation(learner=learner, params=dict(params), clean_accuracy=accuracy, slopes=slopes,
                          fit_seconds=fit_seconds, predict_seconds=predict_seconds,
                          slope_seconds=slope_seconds, aggregate=self.aggregate)

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        learner, params = self.space.suggest(trial)
        try:
            evaluation = self.evaluate_config(learner, params)
        except FAIL_EXCEPTIONS as exc:
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            raise
        for key, value in self.user_attrs(evaluation).items():
            trial.set_user_attr(key, value)
        if self.constraint is not None:
            record_constraint(trial, self.constraint.value(evaluation.clean_accuracy, trial.study))
        return evaluation.values

    def user_attrs(self, evaluation: Evaluation) -> dict[str, Any]:
        """The JSON-ready attributes a trial records for ``evaluation`` (worst attack's numbers).

        Few keys on purpose: every attribute is one storage write (a journal file fsyncs each).
        """
        worst = evaluation.worst_attack
        result = evaluation.slopes[worst]
        attrs: dict[str, Any] = {
            "derivative": result.derivative,
            "influence": result.influence,
            "n_poison": result.n_poison,
            "fit_seconds": evaluation.fit_seconds,
            "slope_seconds": evaluation.slope_seconds[worst],
            "attack": _jsonable(self.splits[worst].attack),
            "details": {"slope_method": result.method, "loss": result.loss, "damping": result.damping,
                        "n_clean": result.n_clean, "n_trigger": result.n_trigger,
                        "predict_seconds": evaluation.predict_seconds},
        }
        if len(self.splits) > 1:
            attrs["aggregate"] = evaluation.aggregate
            attrs.update({f"{SLOPE_ATTR_PREFIX}{name}": r.slope for name, r in evaluation.slopes.items()})
            attrs["worst_attack"] = worst
            attrs["attacks"] = {
                name: {"slope": r.slope, "derivative": r.derivative, "influence": r.influence,
                       "n_poison": r.n_poison, "slope_seconds": evaluation.slope_seconds[name]}
                for name, r in evaluation.slopes.items()}
        return attrs


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


def _jsonable(value: Any) -> Any:
    """``value`` with NumPy scalars/arrays and tuples turned into JSON types (storage-safe)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
