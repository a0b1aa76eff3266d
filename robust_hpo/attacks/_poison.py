"""Poisoning: :func:`poison_many` for a list of threat models, :func:`poison` for one (the same code).

Convention ("in place" poisoning, as in the paper): poison points are drawn from the training set,
get the trigger of their base class and the attacker's target label, and leave the clean set.

Shared clean set for several attacks: the poison candidates are drawn once —
``M = round(max fraction · n)`` training points, in a seeded random order — and removed from the
clean set of *every* attack; attack k poisons the first ``m_k = round(fraction_k · n)`` candidates
(rounded half up, at least one) with its own trigger and the target label. Attacks with a smaller
fraction therefore train on ``n − M`` clean points (not ``n − m_k``): the unused candidates are left
out of training, never poisoned silently. With a single threat model this is plain in-place
poisoning: :func:`poison` is ``poison_many`` of one threat model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from robust_hpo.attacks._registry import TRIGGERS
from robust_hpo.attacks._split import PoisonedSplit
from robust_hpo.attacks._target import resolve_target, target_labels
from robust_hpo.attacks._threats import MultiSplit, ThreatModel
from robust_hpo.attacks._trigger import Trigger, check_seed
from robust_hpo.datasets import LAYOUTS, Dataset
from robust_hpo.errors import ValidationError


def poison(
    dataset: Dataset,
    trigger: Trigger,
    *,
    fraction: float = 0.1,
    target: str | int = "next",
    seed: int = 0,
) -> PoisonedSplit:
    """Poison ``round(fraction·n)`` training points in place (rounded half up, at least one).

    The points are drawn uniformly without replacement (seeded by ``seed``); each gets the trigger
    of its *base* class and the target label of ``target`` (see :func:`target_labels`) and becomes
    a poison point; the other training points form the clean set. The triggered test set is every
    clean test image with the trigger of its base class, labelled with its target. This is
    :func:`poison_many` with one threat model.
    """
    _check_dataset(dataset)
    return poison_many(dataset, [ThreatModel(trigger=trigger, fraction=fraction)], target=target, seed=seed).first


def poison_many(dataset: Dataset, threats: Sequence[ThreatModel], *, target: str | int = "next",
                seed: int = 0) -> MultiSplit:
    """Poison ``dataset`` once per threat model on a shared clean set (see the module docstring).

    ``target``: ``"next"``, or one class (id or name) for an all-to-one attack: then poison
    candidates are drawn from the training points of the *other* classes, and the triggered test set
    holds the test points of the other classes only.
    """
    _check_dataset(dataset)
    goal = resolve_target(target, dataset.classes, dataset.class_names)
    if isinstance(threats, ThreatModel) or not isinstance(threats, Sequence) or len(threats) == 0:
        raise ValidationError("threats must be a non-empty sequence of ThreatModel")
    for i, threat in enumerate(threats):
        if not isinstance(threat, ThreatModel):
            raise ValidationError(f"threats[{i}] must be a ThreatModel, got {type(threat).__name__}")
    names = [t.name for t in threats]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValidationError(f"threats must have distinct names; repeated: {duplicated}")
    seed = check_seed(seed)
    bound = [_bind(threat, dataset) for threat in threats]
    n = dataset.y_train.shape[0]
    counts = [int(math.floor(t.fraction * n + 0.5)) for t in threats]
    for threat, m in zip(threats, counts):
        who = f"threat {threat.name!r}: " if len(threats) > 1 else ""
        if m == 0:
            raise ValidationError(f"{who}fraction={threat.fraction:g} of the {n} training points rounds to 0 "
                                  f"poison points; expected fraction >= {0.5 / n:.3g}")
        if m >= n:
            raise ValidationError(f"{who}fraction={threat.fraction:g} of the {n} training points poisons all of "
                                  "them, leaving no clean training point; expected a smaller fraction")
    M = max(counts)
    y_target_train = target_labels(dataset.y_train, dataset.classes, goal)
    y_target_test = target_labels(dataset.y_test, dataset.classes, goal)
    eligible = np.arange(n, dtype=np.int64)
    shown = np.arange(dataset.y_test.shape[0], dtype=np.int64)
    if goal != "next":  # all-to-one: the target class's own points are neither poisoned nor triggered
        eligible = np.flatnonzero(dataset.y_train != goal).astype(np.int64)
        shown = np.flatnonzero(dataset.y_test != goal).astype(np.int64)
        if M > eligible.size:
            raise ValidationError(f"fraction={max(t.fraction for t in threats):g} asks for {M} poison points but only "
                                  f"{eligible.size} training points are outside the target class {goal}; expected a "
                                  "smaller fraction")
        if shown.size == 0:
            raise ValidationError(f"the test set holds only the target class {goal}; no triggered test point")
    candidates = eligible[np.random.default_rng(seed).choice(eligible.size, size=M, replace=False)]
    rest = np.setdiff1d(np.arange(n, dtype=np.int64), candidates)
    X_clean, y_clean = dataset.X_train[rest], dataset.y_train[rest]
    if len(threats) > 1 and np.unique(y_clean).size < 2:
        raise ValidationError("the shared clean set holds a single class; use smaller fractions or more "
                              "training data")
    X_test, y_test = dataset.X_test.copy(), dataset.y_test.copy()
    splits: dict[str, PoisonedSplit] = {}
    for threat, trigger, m in zip(threats, bound, counts):
        chosen = np.sort(candidates[:m])
        X_poison = _apply(trigger, dataset.X_train[chosen], dataset.y_train[chosen], "poison", dataset.value_range)
        X_trigger = _apply(trigger, dataset.X_test[shown], dataset.y_test[shown], "test", dataset.value_range)
        attack: dict[str, Any] = {
            "name": threat.name, "dataset": dataset.name, "split": dataset.split,
            "classes": [int(c) for c in dataset.classes], "trigger": trigger.describe(),
            "fraction": threat.fraction, "target": goal if goal == "next" else int(goal), "seed": seed, "n_train": n,
            "n_poison": m, "n_clean": int(rest.size), "n_candidates": M, "shared_clean": len(threats) > 1,
            "n_test": int(y_test.shape[0]), "n_trigger": int(X_trigger.shape[0]),
        }
        if dataset.feature_names is not None:  # tabular rows: what each column is (figures name them)
            attack["feature_names"] = list(dataset.feature_names)
        splits[threat.name] = PoisonedSplit(
            X_clean=X_clean, y_clean=y_clean, X_poison=X_poison, y_poison=y_target_train[chosen],
            poison_indices=chosen, X_test=X_test, y_test=y_test, X_trigger=X_trigger,
            y_trigger=y_target_test[shown], classes=tuple(dataset.classes), attack=attack,
        )
    return MultiSplit(splits=splits, threats=tuple(threats), candidates=candidates)


def _check_dataset(dataset: object) -> None:
    if not isinstance(dataset, Dataset):
        raise ValidationError(f"dataset must be a robust_hpo.datasets.Dataset, got {type(dataset).__name__}")


def _bind(threat: ThreatModel, dataset: Dataset) -> Trigger:
    """The threat's trigger checked against the data's layout (``needs``) and bound to the data
    (``bind(dataset)``, for triggers whose settings refer to the data: column names, percentiles)."""
    needs = getattr(threat.trigger, "needs", None)
    if needs is not None and needs != dataset.layout:
        kind = getattr(threat.trigger, "kind", type(threat.trigger).__name__)
        fitting = [k for k, cls in TRIGGERS.items() if cls.needs == dataset.layout]
        raise ValidationError(f"trigger {kind!r} needs {LAYOUTS.get(needs, needs)}, but dataset {dataset.name!r} holds "
                              f"{LAYOUTS[dataset.layout]}; use trigger {' or '.join(map(repr, fitting))}")
    bind = getattr(threat.trigger, "bind", None)
    return bind(dataset) if callable(bind) else threat.trigger


def _apply(trigger: Trigger, inputs: np.ndarray, labels: np.ndarray, part: str,
           value_range: tuple[float, float] | None) -> np.ndarray:
    """``trigger.apply`` with its output checked against the Trigger contract and the data's value range."""
    out = trigger.apply(inputs, labels)
    if not isinstance(out, np.ndarray) or out.shape != inputs.shape:
        raise ValidationError(
            f"trigger {trigger.describe()} returned {getattr(out, 'shape', type(out).__name__)} for "
            f"{part} inputs of shape {inputs.shape}; expected the same shape"
        )
    if out.size and not np.all(np.isfinite(out)):
        raise ValidationError(f"trigger {trigger.describe()} returned {part} values that are not finite")
    if value_range is not None and out.size and (out.min() < value_range[0] or out.max() > value_range[1]):
        raise ValidationError(f"trigger {trigger.describe()} returned {part} pixels outside "
                              f"[{value_range[0]:g}, {value_range[1]:g}]")
    return out.astype(inputs.dtype, copy=False)
