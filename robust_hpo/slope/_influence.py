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
* K ≥ 3 classes: L is the multi-class curve loss of the slope (docs/slope.md: cross-entropy of the
  label, Σ_k (Y_k − f_k)², the hinges of the label's one-vs-one duels, the label's one-vs-rest
  machine's loss), and ``"margin"`` the negative target margin (label score minus the best other
  score; one-vs-one SVC: the label's weakest duel) — each learner's multi-class part
  (``MulticlassPart.point_influences``) from the same solves as its slope.
* A ``Pipeline`` with a scaler: the learner's part in the clean scaler's coordinates, plus the
  scaler's: up-weighting row j moves the scaler's statistics exactly as a poison set of that one row
  does in the slope (:mod:`._preprocess`; features whose statistics jump are held at their clean
  values, as there).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from robust_hpo._validation import as_finite_2d, as_labels
from robust_hpo.errors import ValidationError
from robust_hpo.slope._base import Attack, ConvexSlopeModel
from robust_hpo.slope._preprocess import Motion

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
        if getattr(model, "preprocessing", None) is not None and model.preprocessing.has_pca:
            raise ValidationError("per-point influences are not defined through a PCA step (held at its clean fit); "
                                  "use a Pipeline of one scaler and the estimator")
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
        model = self.model
        part = getattr(model, "_multi", None)  # K ≥ 3: the learner's multi-class part
        owner = model if part is None else part
        Z, Z_test = model._pre(X), model._pre(X_test)  # a pipeline: the clean scaler's coordinates
        out = owner.point_influences(Z, y, Z_test, y_test, in_fit=in_fit, quantity=self.quantity)
        if model.preprocessing is not None:
            out = out + self._through_scaler(X, Z_test, y_test)
        return out

    def _through_scaler(self, X: np.ndarray, Z_test: np.ndarray, y_test: np.ndarray) -> np.ndarray:
        """The scaler's part of ``dL/ds_j`` (a pipeline): up-weighting row j moves the scaler's statistics
        by its :class:`~._preprocess.Motion` ``(ρ'_j, a_j)`` — the slope's own motion for a poison set of
        that one row, the same whether j is in the fit or not — and the test quantity by
        ``Σ_f ρ'_jf ∂L/∂ρ_f + a_jf ∂L/∂a_f``. Linear learners give those 2d partial derivatives from one
        adjoint solve (``scaler_sensitivity``); SVMs from the slope's own solves with no poison row and a
        unit motion per feature (their moving kernel). Features whose statistics jump are held, as in
        the slope."""
        model = self.model
        motions = [model.preprocessing.motion(X[j:j + 1]) for j in range(X.shape[0])]
        rho = np.vstack([m.rho for m in motions])
        shift = np.vstack([m.a for m in motions])
        owner = model if model._multi is None else model._multi
        sensitivity = getattr(owner, "scaler_sensitivity", None)  # linear learners: one adjoint solve
        partials = sensitivity(Z_test, y_test, self.quantity) if sensitivity is not None else None
        if partials is not None:
            return rho @ partials[0] + shift @ partials[1]
        d = X.shape[1]
        empty = np.empty((0, Z_test.shape[1]))
        codes = np.empty(0, dtype=np.intp if model._multi is not None else np.float64)
        units = [(0, f) for f in np.flatnonzero(np.any(rho != 0, axis=0))]
        units += [(1, f) for f in np.flatnonzero(np.any(shift != 0, axis=0))]
        if not units:
            return np.zeros(X.shape[0])
        attacks = []
        for kind, f in units:
            e = np.zeros(d)
            e[f] = 1.0
            motion = Motion(e, np.zeros(d), 0) if kind == 0 else Motion(np.zeros(d), e, 0)
            attacks.append(Attack(empty, codes, Z_test, y_test, motion))
        solutions = model._multi.solve(attacks) if model._multi is not None else model._solve_attacks(attacks)
        partial = np.zeros((2, d))
        for (kind, f), s in zip(units, solutions):
            if self.quantity == "loss":
                partial[kind, f] = s.derivative
            else:  # the mean negative target margin
                partial[kind, f] = -float(np.mean(s.df_trigger if s.oriented else y_test * s.df_trigger))
        return rho @ partial[0] + shift @ partial[1]
