"""``poison``: in-place BadNets-style poisoning of a dataset's training set."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import numpy as np

from robust_hpo.attacks._split import PoisonedSplit
from robust_hpo.attacks._target import target_labels
from robust_hpo.attacks._trigger import Trigger, check_seed
from robust_hpo.datasets._dataset import Dataset


def poison(
    dataset: Dataset,
    trigger: Trigger,
    *,
    fraction: float = 0.1,
    target: str = "next",
    seed: int = 0,
) -> PoisonedSplit:
    """Poison ``round(fraction·n)`` training points in place (rounded half up, at least one).

    The points are drawn uniformly without replacement (seeded by ``seed``); each gets the trigger
    of its *base* class and the target label of ``target`` (see :func:`target_labels`) and becomes
    a poison point; the other training points form the clean set. The triggered test set is every
    clean test image with the trigger of its base class, labelled with its target.
    """
    if not isinstance(dataset, Dataset):
        raise ValueError(f"dataset must be a robust_hpo.datasets.Dataset, got {type(dataset).__name__}")
    if not isinstance(trigger, Trigger):
        raise ValueError(
            f"trigger must provide apply(images, base_labels) and describe() (e.g. BadNets()), "
            f"got {type(trigger).__name__}"
        )
    if isinstance(fraction, bool) or not isinstance(fraction, Real) or not (0.0 < float(fraction) < 1.0):
        raise ValueError(f"fraction must be a number in the open interval (0, 1), got {fraction!r}")
    seed = check_seed(seed)
    n = dataset.y_train.shape[0]
    m = int(math.floor(float(fraction) * n + 0.5))
    if m == 0:
        raise ValueError(
            f"fraction={fraction} of the {n} training points rounds to 0 poison points; "
            f"expected fraction >= {0.5 / n:.3g}"
        )
    if m >= n:
        raise ValueError(
            f"fraction={fraction} of the {n} training points poisons all of them, leaving no clean "
            "training point; expected a smaller fraction"
        )
    y_poison = target_labels(dataset.y_train, dataset.classes, target)  # validates target first
    chosen = np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False)).astype(np.int64)
    rest = np.setdiff1d(np.arange(n, dtype=np.int64), chosen)
    X_poison = _apply(trigger, dataset.X_train[chosen], dataset.y_train[chosen], "poison")
    X_trigger = _apply(trigger, dataset.X_test, dataset.y_test, "test")
    attack: dict[str, Any] = {
        "dataset": dataset.name,
        "split": dataset.split,
        "classes": [int(c) for c in dataset.classes],
        "trigger": trigger.describe(),
        "fraction": float(fraction),
        "target": target,
        "seed": seed,
        "n_train": n,
        "n_poison": m,
        "n_clean": n - m,
        "n_test": int(dataset.y_test.shape[0]),
        "n_trigger": int(X_trigger.shape[0]),
    }
    return PoisonedSplit(
        X_clean=dataset.X_train[rest], y_clean=dataset.y_train[rest],
        X_poison=X_poison, y_poison=y_poison[chosen], poison_indices=chosen,
        X_test=dataset.X_test.copy(), y_test=dataset.y_test.copy(),
        X_trigger=X_trigger, y_trigger=target_labels(dataset.y_test, dataset.classes, target),
        classes=tuple(dataset.classes), attack=attack,
    )


def _apply(trigger: Trigger, images: np.ndarray, labels: np.ndarray, part: str) -> np.ndarray:
    """``trigger.apply`` with its output checked against the Trigger contract."""
    out = trigger.apply(images, labels)
    if not isinstance(out, np.ndarray) or out.shape != images.shape:
        raise ValueError(
            f"trigger {trigger.describe()} returned {getattr(out, 'shape', type(out).__name__)} for "
            f"{part} images of shape {images.shape}; expected the same shape"
        )
    if not np.all(np.isfinite(out)) or out.min() < 0.0 or out.max() > 1.0:
        raise ValueError(f"trigger {trigger.describe()} returned {part} pixels outside [0, 1] or not finite")
    return out.astype(np.float32, copy=False)
