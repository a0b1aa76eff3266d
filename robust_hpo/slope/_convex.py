"""Exact backdoor slopes for scikit-learn's convex learners by implicit differentiation.

Conventions (scikit-learn's own; s_i = sample weight: 1 for clean points, β for poison points):

* ``LogisticRegression``: ``½‖w‖² + C Σ s_i log(1 + exp(−y_i f_i))``; curve loss = log-loss (nats).
* ``RidgeClassifier``:    ``α‖w‖² + Σ s_i (y_i − f_i)²``;            curve loss = squared error.
* ``SVC`` (linear, rbf):   ``½‖w‖²_K + C Σ s_i max(0, 1 − y_i f_i)``;   curve loss = hinge.

Labels are encoded y = +1 for ``classes_[1]`` and −1 for ``classes_[0]`` (scikit-learn's order), and
``f`` is ``decision_function``. The intercept is unpenalised (lbfgs, newton-*, sag, saga; Ridge's
centring), or penalised as ``½ (b / intercept_scaling)²`` with liblinear — exactly as fitted.

The derivative is ``dL/dβ`` at β = 0 of the *mean* curve loss L over the triggered test points,
β weighting all m poison points at once. By the implicit function theorem on the optimality
conditions, ``dθ/dβ = −H⁻¹ c Σ_j ∇θ ℓ(t_j, f(x̃_j))`` (c = C, or 1 for ridge), so
``dL/dβ = ∇θ Lᵀ dθ/dβ``. For SVC, the KKT conditions of the margin support vectors replace
H (NOTES.md); the hinge curve is piecewise linear in β, and the value is the right derivative.

The learners live in :mod:`._linear` (logistic, ridge: Newton polish + Hessian solves) and
:mod:`._svc` (active-set refinement + KKT solve); this module is their common entry point.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC, LinearSVC

from robust_hpo.errors import DegenerateSolveError, NotConvergedError, ValidationError
from robust_hpo.slope._base import SUPPORTED, ConvexSlopeModel
from robust_hpo.slope._cache import GramCache
from robust_hpo.slope._linear import (
    LinearSVCSlope,
    LogisticSlope,
    RidgeSlope,
    SGDLogSlope,
    SGDModifiedHuberSlope,
    _LinearModelSlope,
    check_sgd,
)
from robust_hpo.slope._preprocess import Preprocessing
from robust_hpo.slope._svc import SGDHingeSlope, SVCSlope

__all__ = [
    "SUPPORTED",
    "ConvexSlopeModel",
    "DegenerateSolveError",
    "LogisticSlope",
    "NotConvergedError",
    "RidgeSlope",
    "SVCSlope",
    "LinearSVCSlope",
    "SGDLogSlope",
    "SGDModifiedHuberSlope",
    "SGDHingeSlope",
    "slope_model",
    "_LinearModelSlope",
]


def _sgd_adapter(estimator: Any, **kwargs: Any) -> ConvexSlopeModel:
    """SGDClassifier: the adapter of its loss (refused, naming it, when unsupported)."""
    check_sgd(estimator)
    adapter = {"log_loss": SGDLogSlope, "modified_huber": SGDModifiedHuberSlope, "hinge": SGDHingeSlope}
    return adapter[estimator.loss](estimator, **kwargs)


def slope_model(estimator: Any, *, damping: float = 0.0, cache: GramCache | None = None,
                exact: bool = True) -> ConvexSlopeModel:
    """The adapter for an unfitted scikit-learn estimator or ``Pipeline``; ``ValidationError`` if
    unsupported.

    ``cache`` (a :class:`GramCache`) reuses data-only Gram products across fits on the same array.
    ``exact=False`` accepts a pipeline step that is held at its clean fit rather than
    differentiated (PCA; see :mod:`._preprocess`).
    """
    if not isinstance(exact, (bool, np.bool_)):
        raise ValidationError(f"exact must be True or False, got {exact!r}")
    if isinstance(estimator, Pipeline):
        if type(estimator) is not Pipeline:
            raise ValidationError(f"estimator must be a plain Pipeline, got {type(estimator).__name__}")
        preprocessing, final = Preprocessing.split(estimator, exact)
        if isinstance(final, Pipeline):
            raise ValidationError("a Pipeline inside a Pipeline is not supported: flatten it")
        inner = slope_model(final, damping=damping, cache=cache)
        return type(inner)(final, damping=damping, preprocessing=preprocessing, pipeline=estimator)
    if type(estimator) is SGDClassifier:
        return _sgd_adapter(estimator, damping=damping, cache=cache)
    adapters = {LogisticRegression: LogisticSlope, RidgeClassifier: RidgeSlope, SVC: SVCSlope,
                LinearSVC: LinearSVCSlope, SGDClassifier: _sgd_adapter}
    adapter = adapters.get(type(estimator))
    if adapter is not None:
        return adapter(estimator, damping=damping, cache=cache)
    base = next((cls.__name__ for cls in adapters if isinstance(estimator, cls)), None)
    if base is not None:  # a subclass (LogisticRegressionCV, ...) fits another problem than its base
        raise ValidationError(
            f"estimator must be exactly one of {SUPPORTED}; got {type(estimator).__name__}, a subclass of "
            f"{base} whose fit differs from the problem the slope differentiates. Fit it, then pass a plain "
            f"{base} with the chosen hyperparameters (e.g. LogisticRegression(C=cv.C_[0]))."
        )
    raise ValidationError(
        f"estimator must be one of {SUPPORTED}; got {type(estimator).__name__}. "
        "For other models use a network learner (finite-difference or influence slope)."
    )
