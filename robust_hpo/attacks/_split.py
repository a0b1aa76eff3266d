"""The poisoned split every later stage consumes.

Convention ("in place" poisoning, as in the paper): a fraction p of the training set is chosen;
those points get the trigger and the attacker's target label and become the *poison* set; the
remaining training points are the *clean* set. β = 0 trains on the clean set only, β = 1 on the
in-place poisoned training set (clean ∪ poison).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robust_hpo._arrays import flatten_images


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
