"""Backdoor learning curves (the paper's Eq. 1 swept over β) with the slope's tangent at β = 0.

For one configuration and one :class:`~robust_hpo.attacks.PoisonedSplit`, θ*(β) is refitted with
scikit-learn for every β of a grid — clean points weigh 1, every poison point weighs β — and the
curve records, per β:

* ``trigger_loss``: the *mean* curve loss (the learner's own: log-loss in nats, squared error on ±1
  targets, hinge) over the triggered test points, labelled with the attacker's target;
* ``trigger_accuracy``: the fraction of triggered test points classified as the target (the
  *backdoor accuracy*, or attack success rate);
* ``clean_loss`` / ``clean_accuracy``: the same on the clean test set with the true labels.

The tangent at β = 0 is ``trigger_loss[0] + derivative·β``, where ``derivative`` is
:class:`~robust_hpo.slope.SlopeResult`'s ``dL/dβ`` of the *same* mean loss, with β weighting all m
poison points together — the curve's own x and y axes, so the tangent touches the curve at 0.
For SVMs the hinge curve is piecewise linear in β and the derivative is its right derivative.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from robust_hpo._validation import Interval, check, check_betas, flatten_images
from robust_hpo.analysis._common import DEFAULT_BETAS, check_split
from robust_hpo.attacks import PoisonedSplit
from robust_hpo.errors import ValidationError
from robust_hpo.learners import estimator_label
from robust_hpo.slope import ConvexSlopeModel, SlopeResult, slope_model

__all__ = ["BetaPath", "CurveResult", "backdoor_curve", "curve_from_path", "fit_path",
           "with_tolerance"]


@dataclass(frozen=True, eq=False)
class BetaPath:
    """The fits θ*(β) along a β grid, shared by curves and parameter deviation.

    ``model`` is the clean fit (β = 0), factorised for the slope; ``estimators[i]`` is the fitted
    scikit-learn estimator at ``betas[i]`` (``estimators[0] is model.estimator_``). ``data`` holds
    the split's flat arrays ``(X_clean, y_clean, X_poison, y_poison, X_trigger, y_trigger)``.
    """

    label: str
    betas: np.ndarray
    model: ConvexSlopeModel
    estimators: tuple[Any, ...]
    split: PoisonedSplit
    data: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        if len(self.estimators) != self.betas.size:
            raise ValidationError(f"estimators has {len(self.estimators)} fits but betas has {self.betas.size} values")


def with_tolerance(estimator: Any, tol: float | None) -> Any:
    """A clone of ``estimator`` with its solver tolerance ``tol`` (``None``: the estimator unchanged).

    Curves near β = 0 differ by tiny amounts; scikit-learn's default tolerances (1e-4 for
    ``LogisticRegression``, 1e-3 for ``SVC``) can blur them. A tighter ``tol`` solves the *same*
    objective more precisely.
    """
    if tol is None:
        return estimator
    check("tol", tol, [Interval(Real, 0, 1, closed="neither")])
    est = clone(estimator)
    key = f"{est.steps[-1][0]}__tol" if isinstance(est, Pipeline) else "tol"  # a pipeline: its learner's
    if key not in est.get_params():
        raise ValidationError(f"{type(estimator).__name__} has no 'tol' parameter; pass tol=None")
    return est.set_params(**{key: float(tol)})


def fit_path(estimator: Any, split: PoisonedSplit, *, betas: Any = None, label: str | None = None,
             tol: float | None = None) -> BetaPath:
    """Fit an unfitted scikit-learn ``estimator`` on ``split`` at every β (see the module docstring).

    ``tol`` overrides the solver tolerance of every fit, the slope's clean fit included
    (:func:`with_tolerance`).
    """
    split = check_split(split)
    grid = np.asarray(check_betas(DEFAULT_BETAS if betas is None else betas, include_zero=True))
    label = label if label is not None else estimator_label(estimator)
    estimator = with_tolerance(estimator, tol)
    model = slope_model(estimator)  # ValueError for unsupported estimators
    data = split.flat()
    Xc, yc, Xp, yp, _, _ = data
    model.fit(Xc, yc)
    fits: list[Any] = [model.estimator_]
    fits += [model.fit_weighted(Xc, yc, Xp, yp, float(b)) for b in grid[1:]]
    return BetaPath(label=label, betas=grid,
                    model=model, estimators=tuple(fits), split=split, data=data)


@dataclass(frozen=True, eq=False)
class CurveResult:
    """A backdoor learning curve: per β, loss and accuracy on clean and triggered test points.

    All arrays have the length of ``betas`` (``betas[0] = 0``). ``loss`` names the curve loss
    (``"log-loss"``, ``"squared"``, ``"hinge"``); ``slope`` is the exact slope at β = 0 whose
    ``derivative`` is the tangent's gradient (same mean loss, same β).
    """

    label: str
    betas: np.ndarray
    trigger_loss: np.ndarray
    trigger_accuracy: np.ndarray
    clean_loss: np.ndarray
    clean_accuracy: np.ndarray
    loss: str
    slope: SlopeResult
    attack: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.betas.shape
        for name in ("trigger_loss", "trigger_accuracy", "clean_loss", "clean_accuracy"):
            if getattr(self, name).shape != n:
                raise ValidationError(f"{name} has shape {getattr(self, name).shape}; expected {n} like betas")

    @property
    def derivative(self) -> float:
        """dL/dβ at β = 0 of the mean triggered-test loss (the tangent's gradient)."""
        return self.slope.derivative

    def tangent(self, betas: Any = None) -> np.ndarray:
        """The tangent ``trigger_loss[0] + derivative·β`` at the given β (default: the curve's grid)."""
        b = self.betas if betas is None else np.asarray(betas, dtype=np.float64)
        return self.trigger_loss[0] + self.derivative * b

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (lists instead of arrays)."""
        return {
            "label": self.label, "loss": self.loss, "betas": self.betas.tolist(),
            "trigger_loss": self.trigger_loss.tolist(), "trigger_accuracy": self.trigger_accuracy.tolist(),
            "clean_loss": self.clean_loss.tolist(), "clean_accuracy": self.clean_accuracy.tolist(),
            "slope": self.slope.to_dict(), "attack": self.attack,
        }


def curve_from_path(path: BetaPath) -> CurveResult:
    """The learning curve of already fitted β-path (no further fitting besides the slope's solves)."""
    model = path.model
    _, _, Xp, yp, Xt, yt = path.data
    X_test = flatten_images(path.split.X_test)
    y_test = path.split.y_test
    rows = []
    for est in path.estimators:
        rows.append((model.loss(Xt, yt, est), float(np.mean(est.predict(Xt) == yt)),
                     model.loss(X_test, y_test, est), float(np.mean(est.predict(X_test) == y_test))))
    cols = np.asarray(rows, dtype=np.float64).T
    return CurveResult(label=path.label, betas=path.betas.copy(), trigger_loss=cols[0], trigger_accuracy=cols[1],
                       clean_loss=cols[2], clean_accuracy=cols[3], loss=model.loss_name,
                       slope=model.derivative(Xp, yp, Xt, yt), attack=dict(path.split.attack))


def backdoor_curve(estimator: Any, split: PoisonedSplit, *, betas: Any = None, label: str | None = None,
                   tol: float | None = None) -> CurveResult:
    """The backdoor learning curve of an unfitted scikit-learn ``estimator`` on ``split``.

    ``betas`` defaults to :data:`DEFAULT_BETAS` (must start at 0 and increase). Supported estimators
    are those of :func:`robust_hpo.slope.slope_model` (logistic, ridge, linear and RBF SVC).
    ``tol`` optionally tightens the solver tolerance of every fit (see :func:`with_tolerance`).
    """
    return curve_from_path(fit_path(estimator, split, betas=betas, label=label, tol=tol))
