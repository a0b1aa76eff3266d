"""The seam between learners and the Optuna objective.

A *learner family* (logistic regression, an MLP, ...) declares its hyperparameter search space as
Optuna distributions and fits a configuration on clean data. The fitted learner predicts and
computes the backdoor learning slope for any poison/trigger set *without* training on poison.
Images come in as (n, C, H, W) float arrays; families that need vectors flatten them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
from optuna.distributions import BaseDistribution

from robust_hpo.slope import SlopeResult


@runtime_checkable
class FittedLearner(Protocol):
    """A configuration fitted on the clean training set (β = 0)."""

    fit_seconds: float

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class labels (original ids) for images (n, C, H, W)."""
        ...

    def backdoor_slope(self, X_poison: np.ndarray, y_poison: np.ndarray,
                       X_trigger: np.ndarray, y_trigger: np.ndarray) -> SlopeResult:
        """Slope at β = 0 for this poison set and triggered test set (no poisoned training)."""
        ...


@runtime_checkable
class LearnerFamily(Protocol):
    """A family of learners and its hyperparameters."""

    name: str

    def search_space(self) -> dict[str, BaseDistribution]:
        """Default ranges, e.g. ``{"C": FloatDistribution(1e-4, 1e2, log=True)}``."""
        ...

    def fit(self, params: Mapping[str, Any], X_clean: np.ndarray, y_clean: np.ndarray,
            *, seed: int = 0) -> FittedLearner:
        ...
