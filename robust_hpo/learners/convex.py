"""Learner families for scikit-learn's convex learners (registered by name).

=============  =====================================  ==========================================
family         estimator                              hyperparameters (default search range)
=============  =====================================  ==========================================
logistic       LogisticRegression(C)                  C ∈ [1e-4, 1e2], log
ridge          RidgeClassifier(alpha = 1 / (2C))      C ∈ [1e-4, 1e2], log (the paper's α = 1/2C)
linear_svm     SVC(kernel="linear", C)                C ∈ [1e-4, 1e2], log
rbf_svm        SVC(kernel="rbf", C, gamma)            C ∈ [1e-1, 1e2], gamma ∈ [1e-4, 1e1], log
=============  =====================================  ==========================================

Images are flattened to rows; the slope is exact (``robust_hpo.slope``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, FloatDistribution
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.svm import SVC

from robust_hpo._arrays import flatten_images
from robust_hpo.learners._base import register_family
from robust_hpo.slope._cache import GramCache
from robust_hpo.slope._convex import ConvexSlopeModel, slope_model
from robust_hpo.slope._result import SlopeResult


class FittedConvexLearner:
    """A convex learner fitted on clean images; predicts and differentiates (exact slope)."""

    def __init__(self, model: ConvexSlopeModel) -> None:
        self.model = model
        self.fit_seconds = model.fit_seconds_

    @property
    def estimator(self) -> Any:
        """The fitted scikit-learn estimator."""
        return self.model.estimator_

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict(flatten_images(np.asarray(X)))

    def backdoor_slope(self, X_poison: np.ndarray, y_poison: np.ndarray,
                       X_trigger: np.ndarray, y_trigger: np.ndarray) -> SlopeResult:
        return self.model.derivative(flatten_images(np.asarray(X_poison)), y_poison,
                                     flatten_images(np.asarray(X_trigger)), y_trigger)


@dataclass(frozen=True)
class ConvexFamily:
    """A scikit-learn convex learner family: ``build(params) -> unfitted estimator``.

    Trials of a study fit on the same clean array: the family's :class:`GramCache` reuses the
    flattened array and its data-only Gram products across them.
    """

    name: str
    build: Callable[[Mapping[str, Any]], Any]
    space: dict[str, BaseDistribution] = field(default_factory=dict)
    cache: GramCache = field(default_factory=GramCache, compare=False, repr=False)

    def search_space(self) -> dict[str, BaseDistribution]:
        return dict(self.space)

    def estimator(self, params: Mapping[str, Any]) -> Any:
        unknown = set(params) - set(self.space)
        if unknown:
            raise ValueError(
                f"unknown hyperparameters {sorted(unknown)} for learner {self.name!r}; "
                f"expected {sorted(self.space)}"
            )
        missing = set(self.space) - set(params)
        if missing:
            raise ValueError(f"learner {self.name!r} needs hyperparameters {sorted(missing)}")
        return self.build(params)

    def fit(self, params: Mapping[str, Any], X_clean: np.ndarray, y_clean: np.ndarray,
            *, seed: int = 0) -> FittedConvexLearner:
        X = self.cache.flat(X_clean) if isinstance(X_clean, np.ndarray) else flatten_images(np.asarray(X_clean))
        model = slope_model(self.estimator(params), cache=self.cache).fit(X, y_clean)
        return FittedConvexLearner(model)


def _log(low: float, high: float) -> FloatDistribution:
    return FloatDistribution(low, high, log=True)


LOGISTIC = register_family(ConvexFamily(
    "logistic", lambda p: LogisticRegression(C=p["C"], max_iter=2000), {"C": _log(1e-4, 1e2)}))
RIDGE = register_family(ConvexFamily(
    "ridge", lambda p: RidgeClassifier(alpha=1.0 / (2.0 * p["C"])), {"C": _log(1e-4, 1e2)}))
LINEAR_SVM = register_family(ConvexFamily(
    "linear_svm", lambda p: SVC(kernel="linear", C=p["C"]), {"C": _log(1e-4, 1e2)}))
RBF_SVM = register_family(ConvexFamily(
    "rbf_svm", lambda p: SVC(kernel="rbf", C=p["C"], gamma=p["gamma"]),
    {"C": _log(1e-1, 1e2), "gamma": _log(1e-4, 1e1)}))
