"""Many attacks, one fit: every attack's slope from one fitted learner, and their aggregate.

:func:`evaluate_threats` computes each attack's :class:`~robust_hpo.slope.SlopeResult` from one
learner fitted on the attacks' shared clean set (:func:`robust_hpo.attacks.poison_many`);
:func:`aggregate_slopes` combines the normalised slopes into the objective's value: the worst case
(``"max"``, default) or the mean.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from robust_hpo._validation import flatten_images
from robust_hpo.attacks import MultiSplit, PoisonedSplit, shared_splits
from robust_hpo.errors import ValidationError
from robust_hpo.learners import FittedLearner
from robust_hpo.slope import ConvexSlopeModel, SlopeResult, TrainingInfluence

__all__ = ["AGGREGATES", "Aggregate", "aggregate_slopes", "evaluate_threats"]

AGGREGATES: tuple[str, ...] = ("max", "mean")
"""How the per-attack normalised slopes combine into one objective: worst case (default) or mean."""


def evaluate_threats(fitted: FittedLearner,
                     multi: MultiSplit | Mapping[str, PoisonedSplit]) -> dict[str, SlopeResult]:
    """Every attack's slope from one fitted learner (fitted on the attacks' shared clean set).

    ``multi`` is a :class:`MultiSplit` or any ``{name: PoisonedSplit}`` mapping sharing the clean set
    (what :class:`robust_hpo.objective.BackdoorSlopeObjective` holds). For the convex learners (a
    fitted learner exposing its :class:`ConvexSlopeModel` as ``.model``) the attacks that share a
    trigger — hence the triggered test set, and poison points drawn from the same training points —
    are evaluated together: the derivative is a sum over poison points (``dL/dβ = Σ_j dL/ds_j``), so
    the per-point influences are computed once per trigger on the union of its poison points and
    summed over each attack's own points. The values equal ``fitted.backdoor_slope(...)`` per attack
    (up to rounding); other learners are called once per attack.
    """
    splits = _named_splits(multi)
    if not callable(getattr(fitted, "backdoor_slope", None)):
        raise ValidationError(f"fitted must be a fitted learner with backdoor_slope(...), got {type(fitted).__name__}")
    model = getattr(fitted, "model", None)
    if isinstance(model, ConvexSlopeModel) and hasattr(model, "estimator_"):
        return _grouped_convex(model, splits)
    return {name: fitted.backdoor_slope(s.X_poison, s.y_poison, s.X_trigger, s.y_trigger)
            for name, s in splits.items()}


def _named_splits(multi: object) -> dict[str, PoisonedSplit]:
    if isinstance(multi, MultiSplit):
        return multi.splits
    if not isinstance(multi, Mapping) or not multi:
        raise ValidationError(f"multi must be a MultiSplit (from poison_many) or a non-empty {{name: PoisonedSplit}} "
                         f"mapping, got {type(multi).__name__}")
    return shared_splits(multi, argument="multi", arrays=("X_clean", "y_clean"))


def _trigger_groups(splits: Mapping[str, PoisonedSplit]) -> list[list[str]]:
    """Attack names grouped by trigger and target (same description, same triggered test set)."""
    groups: dict[str, list[str]] = {}
    for name, split in splits.items():
        key = json.dumps([split.attack.get("trigger", name), split.attack.get("target")], sort_keys=True,
                         default=str)
        groups.setdefault(key, []).append(name)
    out: list[list[str]] = []
    for names in groups.values():
        first = splits[names[0]]
        same, other = [names[0]], []
        for name in names[1:]:
            s = splits[name]
            equal = np.array_equal(s.X_trigger, first.X_trigger) and np.array_equal(s.y_trigger, first.y_trigger)
            (same if equal else other).append(name)
        out.append(same)
        out.extend([n] for n in other)
    return out


def _union(splits: Mapping[str, PoisonedSplit], names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Sorted training indices of the group's poison points and their rows; None if two attacks disagree."""
    index = np.concatenate([splits[n].poison_indices for n in names])
    X = np.concatenate([splits[n].X_poison for n in names])
    y = np.concatenate([splits[n].y_poison for n in names])
    order, first, inverse = np.unique(index, return_index=True, return_inverse=True)
    if not (np.array_equal(y, y[first][inverse]) and np.array_equal(X, X[first][inverse])):
        return None
    return order, flatten_images(X[first]), y[first]


def _grouped_convex(model: ConvexSlopeModel, splits: Mapping[str, PoisonedSplit]) -> dict[str, SlopeResult]:
    results: dict[str, SlopeResult] = {}
    influence = TrainingInfluence(model)
    for names in _trigger_groups(splits):
        start = time.perf_counter()
        union = _union(splits, names) if len(names) > 1 else None
        if union is None:  # a single attack, or poison rows that differ between attacks: one by one
            for name in names:
                s = splits[name]
                results[name] = model.derivative(flatten_images(s.X_poison), s.y_poison,
                                                 flatten_images(s.X_trigger), s.y_trigger)
            continue
        order, X_union, y_union = union
        first = splits[names[0]]
        values = influence.out_of_fit(X_union, y_union, flatten_images(first.X_trigger), first.y_trigger)
        shared = (time.perf_counter() - start) / len(names) + model.prepare_seconds_
        for name in names:
            s = splits[name]
            picked = np.searchsorted(order, s.poison_indices)
            results[name] = SlopeResult.from_derivative(
                float(np.sum(values[picked])), n_poison=len(picked), n_clean=model.n_clean_,
                n_trigger=int(s.y_trigger.shape[0]), method=f"{model.details_['method']}+grouped",
                loss=model.loss_name, damping=model.damping, fit_seconds=model.fit_seconds_,
                slope_seconds=shared, details={**model.details_, "attacks_sharing_trigger": len(names)},
            )
    return {name: results[name] for name in splits}


@dataclass(frozen=True)
class Aggregate:
    """An aggregated slope and the attack that attains it (``worst`` is None for the mean)."""

    value: float
    how: str
    worst: str | None = None
    per_attack: dict[str, float] = field(default_factory=dict)


def aggregate_slopes(results: Mapping[str, SlopeResult], how: str = "max") -> Aggregate:
    """Combine per-attack normalised slopes: ``"max"`` (worst case) or ``"mean"``."""
    if how not in AGGREGATES:
        raise ValidationError(f"how must be one of {list(AGGREGATES)}, got {how!r}")
    if not isinstance(results, Mapping) or not results:
        raise ValidationError("results must be a non-empty {attack name: SlopeResult} mapping")
    slopes = {name: float(r.slope) for name, r in results.items()}
    for name, value in slopes.items():
        if not math.isfinite(value):
            raise ValidationError(f"results[{name!r}].slope is not finite ({value!r})")
    if how == "max":
        worst = max(slopes, key=slopes.__getitem__)
        return Aggregate(value=slopes[worst], how=how, worst=worst, per_attack=slopes)
    return Aggregate(value=statistics.fmean(slopes.values()), how=how, per_attack=slopes)
