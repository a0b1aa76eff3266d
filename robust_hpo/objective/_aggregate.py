"""Many attacks, one fit: every attack's slope from one fitted learner, and their aggregate.

:func:`evaluate_threats` computes each attack's :class:`~robust_hpo.slope.SlopeResult` from one
learner fitted on the attacks' shared clean set (:func:`robust_hpo.attacks.poison_many`);
:func:`aggregate_slopes` combines the normalised slopes into the objective's value: the worst case
(``"max"``, default) or the mean.
"""

from __future__ import annotations

import inspect
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from robust_hpo.attacks import MultiSplit, PoisonedSplit, shared_splits
from robust_hpo.errors import ValidationError
from robust_hpo.learners import FittedLearner
from robust_hpo.slope import ConvexSlopeModel, SlopeResult

__all__ = ["AGGREGATES", "QUANTITIES", "Aggregate", "aggregate_quantity", "aggregate_slopes", "evaluate_threats"]

AGGREGATES: tuple[str, ...] = ("max", "mean")
"""How the per-attack normalised slopes combine into one objective: worst case (default) or mean."""

QUANTITIES: tuple[str, ...] = ("slope", "baseline_backdoor_accuracy", "predicted_backdoor_accuracy",
                               "normalised_margin")
"""The per-attack quantities :func:`aggregate_quantity` combines (each: larger = less robust)."""


def evaluate_threats(fitted: FittedLearner,
                     multi: MultiSplit | Mapping[str, PoisonedSplit]) -> dict[str, SlopeResult]:
    """Every attack's slope from one fitted learner (fitted on the attacks' shared clean set).

    ``multi`` is a :class:`MultiSplit` or any ``{name: PoisonedSplit}`` mapping sharing the clean set
    (what :class:`robust_hpo.objective.BackdoorSlopeObjective` holds). For the convex learners (a
    fitted learner exposing its :class:`ConvexSlopeModel` as ``.model``) all attacks are evaluated
    together by :meth:`ConvexSlopeModel.derivatives` (one batched solve; each result carries its
    margins); other learners are called once per attack, with the attack's clean test set when their
    ``backdoor_slope`` takes ``X_test``/``y_test`` (the networks: the margins' scale).
    """
    splits = _named_splits(multi)
    if not callable(getattr(fitted, "backdoor_slope", None)):
        raise ValidationError(f"fitted must be a fitted learner with backdoor_slope(...), got {type(fitted).__name__}")
    model = getattr(fitted, "model", None)
    if isinstance(model, ConvexSlopeModel) and hasattr(model, "estimator_"):
        return _grouped_convex(model, splits)
    test_set = _takes_test_set(fitted.backdoor_slope)
    return {name: fitted.backdoor_slope(s.X_poison, s.y_poison, s.X_trigger, s.y_trigger,
                                        **({"X_test": s.X_test, "y_test": s.y_test} if test_set else {}))
            for name, s in splits.items()}


def _takes_test_set(method: object) -> bool:
    """Whether a learner's ``backdoor_slope`` accepts ``X_test`` and ``y_test`` (plugins need not)."""
    try:
        parameters = inspect.signature(method).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return {"X_test", "y_test"} <= set(parameters) or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _named_splits(multi: object) -> dict[str, PoisonedSplit]:
    if isinstance(multi, MultiSplit):
        return multi.splits
    if not isinstance(multi, Mapping) or not multi:
        raise ValidationError(f"multi must be a MultiSplit (from poison_many) or a non-empty {{name: PoisonedSplit}} "
                         f"mapping, got {type(multi).__name__}")
    return shared_splits(multi, argument="multi", arrays=("X_clean", "y_clean"))


def _grouped_convex(model: ConvexSlopeModel, splits: Mapping[str, PoisonedSplit]) -> dict[str, SlopeResult]:
    """All attacks from the one fit: :meth:`ConvexSlopeModel.derivatives` batches their solves and
    returns each attack's result with its margins (scaled on the attacks' clean test set)."""
    results: dict[str, SlopeResult] = {}
    for names in _same_test_set(splits):
        first = splits[names[0]]
        attacks = [(splits[n].X_poison, splits[n].y_poison, splits[n].X_trigger, splits[n].y_trigger) for n in names]
        results.update(zip(names, model.derivatives(attacks, X_test=first.X_test, y_test=first.y_test)))
    return {name: results[name] for name in splits}


def _same_test_set(splits: Mapping[str, PoisonedSplit]) -> list[list[str]]:
    """Attack names grouped by their clean test set (one group for a MultiSplit)."""
    groups: list[list[str]] = []
    for name, split in splits.items():
        for group in groups:
            other = splits[group[0]]
            if (split.X_test is other.X_test or np.array_equal(split.X_test, other.X_test)) and \
                    np.array_equal(split.y_test, other.y_test):
                group.append(name)
                break
        else:
            groups.append([name])
    return groups


@dataclass(frozen=True)
class Aggregate:
    """An aggregated slope and the attack that attains it (``worst`` is None for the mean)."""

    value: float
    how: str
    worst: str | None = None
    per_attack: dict[str, float] = field(default_factory=dict)


def aggregate_slopes(results: Mapping[str, SlopeResult], how: str = "max") -> Aggregate:
    """Combine per-attack normalised slopes: ``"max"`` (worst case) or ``"mean"``."""
    return aggregate_quantity(results, "slope", how)


def aggregate_quantity(results: Mapping[str, SlopeResult], quantity: str, how: str = "max") -> Aggregate:
    """Combine one quantity of every attack's result (``"slope"``, ``"predicted_backdoor_accuracy"``,
    ``"baseline_backdoor_accuracy"`` or ``"normalised_margin"``; larger = less robust for each):
    ``"max"`` (worst case; ``worst`` names the attack attaining it, the first on ties) or ``"mean"``.

    Raises ``ValidationError`` when an attack's value is missing (a result without margins) or not finite.
    """
    if how not in AGGREGATES:
        raise ValidationError(f"how must be one of {list(AGGREGATES)}, got {how!r}")
    if quantity not in QUANTITIES:
        raise ValidationError(f"quantity must be one of {list(QUANTITIES)}, got {quantity!r}")
    if not isinstance(results, Mapping) or not results:
        raise ValidationError("results must be a non-empty {attack name: SlopeResult} mapping")
    values: dict[str, float] = {}
    for name, r in results.items():
        if not isinstance(r, SlopeResult):
            raise ValidationError(f"results[{name!r}] must be a SlopeResult, got {type(r).__name__}")
        value = getattr(r, quantity)
        if value is None:
            raise ValidationError(f"attack {name!r}: the {r.method!r} slope gives no {quantity.replace('_', ' ')} "
                                  "(no trigger margins); choose the objective 'slope' for this learner")
        if not math.isfinite(float(value)):
            raise ValidationError(f"results[{name!r}].{quantity} is not finite ({value!r})")
        values[name] = float(value)
    if how == "max":
        worst = max(values, key=values.__getitem__)
        return Aggregate(value=values[worst], how=how, worst=worst, per_attack=values)
    return Aggregate(value=statistics.fmean(values.values()), how=how, per_attack=values)
