"""Per-training-point influence on a test loss, from a fitted :class:`ConvexSlopeModel` (no refits).

Convention (Koh & Liang's ``I_up,loss``): the influence of point j is ``dL/ds_j``, the derivative of
the *mean* curve loss L over the chosen test points when the sample weight ``s_j`` of point j grows
from its value in the fit. Negative: up-weighting j *lowers* the test loss (j supports the test
labels); positive: j works against them. Summed over the poison points (weight 0 in a clean fit)
this is exactly :meth:`ConvexSlopeModel.derivative`.

``quantity="margin"`` replaces the loss by the negative signed margin ``−y f(x)`` (same sign
convention). Useful for SVMs, whose hinge loss is flat — every influence 0 — at test points
classified beyond the margin; for logistic regression it ranks points exactly like the loss.

* Logistic / ridge: ``dL/ds_j = −c ∇θℓ_jᵀ H⁻¹ ∇θL`` with the model's factorised Hessian: one solve
  for all j (H is symmetric), whether j is in the fit (weight 1) or not (weight 0).
* SVC: the KKT system of the margin support vectors (symmetric) is solved once for the test side.
  A point enters (its α grows with its weight, ``α = C s``) if it is a bound support vector of the
  fit, or, for a point outside the fit, if it violates its margin (``y f < 1``); other points have
  influence 0 (right derivative).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from robust_hpo._validation import as_finite_2d, as_labels
from robust_hpo.errors import ValidationError
from robust_hpo.slope._base import ConvexSlopeModel

__all__ = ["QUANTITIES", "TrainingInfluence"]

QUANTITIES: tuple[str, ...] = ("loss", "margin")
Quantity = Literal["loss", "margin"]


class TrainingInfluence:
    """Influence of training points on the mean loss of test points, for a fitted ``model``.

    ``in_fit(X_train, y_train, X_test, y_test)``: the points ``model`` was fitted on (weight 1),
    in the same order. ``out_of_fit(X, y, X_test, y_test)``: points with weight 0 in the fit
    (e.g. the poison points of a clean model). Both return one value per point (see the module
    docstring for the sign and for ``quantity``).
    """

    def __init__(self, model: ConvexSlopeModel, *, quantity: Quantity = "loss") -> None:
        if not isinstance(model, ConvexSlopeModel):
            raise ValidationError("model must be a ConvexSlopeModel (robust_hpo.slope.slope_model), "
                             f"got {type(model).__name__}")
        if not hasattr(model, "estimator_"):
            raise ValidationError("model must be fitted: call model.fit(X_clean, y_clean) first")
        if getattr(model, "preprocessing", None) is not None:
            raise ValidationError("per-point influences are not defined for a Pipeline model; fit its estimator on "
                                  "the transformed rows")
        if getattr(model, "weights_", None) is not None and not model.weights_.trivial:
            raise ValidationError("per-point influences are defined without class_weight and sample_weight; refit "
                                  "the model without them")
        if quantity not in QUANTITIES:
            raise ValidationError(f"quantity must be one of {list(QUANTITIES)}, got {quantity!r}")
        self.model = model
        self.quantity = quantity

    # -- inputs ------------------------------------------------------------------------------------
    def _inputs(self, X: Any, y: Any, X_test: Any, y_test: Any, names: tuple[str, str]) -> tuple[np.ndarray, ...]:
        Xa = as_finite_2d(names[0], X)
        Xt = as_finite_2d("X_test", X_test)
        for name, arr in ((names[0], Xa), ("X_test", Xt)):
            if arr.shape[1] != self.model.n_features_:
                raise ValidationError(f"{name} has {arr.shape[1]} features but the model was fitted on "
                                 f"{self.model.n_features_}")
        ya = self.model.encode(names[1], as_labels(names[1], y, Xa.shape[0], names[0]))
        yt = self.model.encode("y_test", as_labels("y_test", y_test, Xt.shape[0], "X_test"))
        return Xa, ya, Xt, yt

    def in_fit(self, X_train: Any, y_train: Any, X_test: Any, y_test: Any) -> np.ndarray:
        Xa, ya, Xt, yt = self._inputs(X_train, y_train, X_test, y_test, ("X_train", "y_train"))
        if Xa.shape[0] != self.model.n_clean_:
            raise ValidationError(f"X_train has {Xa.shape[0]} rows but the model was fitted on {self.model.n_clean_}; "
                             "pass the training set the model was fitted on, in its order")
        return self._influences(Xa, ya, Xt, yt, in_fit=True)

    def out_of_fit(self, X: Any, y: Any, X_test: Any, y_test: Any) -> np.ndarray:
        Xa, ya, Xt, yt = self._inputs(X, y, X_test, y_test, ("X", "y"))
        return self._influences(Xa, ya, Xt, yt, in_fit=False)

    def _influences(self, X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, *,
                    in_fit: bool) -> np.ndarray:
        part = getattr(self.model, "_multi", None)  # K ≥ 3: the learner's multi-class part
        owner = self.model if part is None else part
        return owner.point_influences(X, y, X_test, y_test, in_fit=in_fit, quantity=self.quantity)
