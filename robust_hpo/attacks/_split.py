"""The poisoned split every later stage consumes.

Convention ("in place" poisoning, as in the paper): a fraction p of the training set is chosen;
those points get the trigger and the attacker's target label and become the *poison* set; the
remaining training points are the *clean* set. β = 0 trains on the clean set only, β = 1 on the
in-place poisoned training set (clean ∪ poison).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robust_hpo._validation import flatten_images
from robust_hpo.errors import ValidationError


@dataclass(frozen=True)
class PoisonedSplit:
    """Clean training, poison, clean test and triggered test arrays plus the attack's description.

    Images keep their shape (n, C, H, W), float32 in [0, 1]; labels are original class ids.
    ``poison_indices`` are the poison points' indices in the original training set.
    ``y_trigger`` holds the attacker's target labels for the triggered test images ``X_trigger``
    (the clean test images with the trigger added).
    """

    X_clean: np.ndarray
    y_clean: np.ndarray
    X_poison: np.ndarray
    y_poison: np.ndarray
    poison_indices: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    X_trigger: np.ndarray
    y_trigger: np.ndarray
    classes: tuple[int, ...]
    attack: dict[str, Any] = field(default_factory=dict)

    def flat(self) -> tuple[np.ndarray, ...]:
        """(X_clean, y_clean, X_poison, y_poison, X_trigger, y_trigger) with 2-D float64 X."""
        return (
            flatten_images(self.X_clean), self.y_clean,
            flatten_images(self.X_poison), self.y_poison,
            flatten_images(self.X_trigger), self.y_trigger,
        )

    @property
    def X_train_poisoned(self) -> np.ndarray:
        """The in-place poisoned training set (clean ∪ poison), β = 1."""
        return np.concatenate([self.X_clean, self.X_poison])

    @property
    def y_train_poisoned(self) -> np.ndarray:
        return np.concatenate([self.y_clean, self.y_poison])


CLEAN_TRAIN_AND_TEST = ("X_clean", "y_clean", "X_test", "y_test")


def shared_splits(splits: Mapping[str, object], *, argument: str,
                  arrays: tuple[str, ...] = CLEAN_TRAIN_AND_TEST) -> dict[str, PoisonedSplit]:
    """``splits`` as a dict, checked: every value a :class:`PoisonedSplit` whose ``arrays`` equal the
    first split's (one clean fit serves every attack). Errors name ``argument`` and the attack."""
    named = dict(splits)
    first_name, first = next(iter(named.items()))
    sets = "clean training and test sets" if "X_test" in arrays else "clean training set"
    for name, split in named.items():
        if not isinstance(split, PoisonedSplit):
            raise ValidationError(f"{argument}[{name!r}] must be a PoisonedSplit, got {type(split).__name__}")
        for array in arrays:
            a, b = getattr(split, array), getattr(first, array)
            if a is not b and not np.array_equal(a, b):
                raise ValidationError(f"{argument}[{name!r}].{array} differs from {argument}[{first_name!r}]."
                                      f"{array}; every attack must share the {sets} (one fit)")
    return named
