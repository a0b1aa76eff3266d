"""The β = 1 backdoor-accuracy estimate of a convex learner: a refit on clean ∪ poison.

A convex learner has one optimum, so training on the in-place poisoned set from the clean solution
reaches the same model as retraining from scratch: the refit *is* the answer, not an approximation
(up to the solver's tolerance). It is warm-started from the clean solution where scikit-learn allows
(``LogisticRegression``: ``warm_start``; ``RidgeClassifier`` is closed-form; ``SVC`` has no warm
start and is refitted from scratch). The linearised margins it replaces were a good ranking but a
poor number (held-out studies: mean |predicted − retrained| 0.13, a strong attack predicted at 0.5
that reached 1.0; docs/slope.md).

Cost: one more fit of the learner per trial (``details["estimate_seconds"]``). Set
``ConvexSlopeModel.estimate = "linear"`` (class or instance) to skip it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sklearn.base import clone

ESTIMATES: tuple[str, ...] = ("refit", "linear")


def refit_margins(model: Any, X_clean: np.ndarray, y_clean: np.ndarray, X_poison: np.ndarray,
                  y_poison: np.ndarray, X_trigger: np.ndarray, y_trigger: np.ndarray
                  ) -> tuple[np.ndarray, dict[str, Any]]:
    """Target margins of the triggered points after the β = 1 refit, and its details.

    ``model`` is a fitted :class:`~robust_hpo.slope.ConvexSlopeModel`; ``X_*`` are float rows;
    ``y_*`` original labels (``y_trigger``: the attacker's targets). The margin is ``f`` toward the
    target (binary: ``±f``; k classes: ``f_target − max_{k≠target} f_k``); positive = predicted as
    the target.
    """
    start = time.perf_counter()
    estimator = clone(model.estimator_)
    warm = "warm_start" in estimator.get_params(deep=False) and hasattr(model.estimator_, "coef_")
    if warm:
        estimator.set_params(warm_start=True)
        estimator.coef_ = np.array(model.estimator_.coef_, copy=True)
        estimator.intercept_ = np.array(model.estimator_.intercept_, copy=True)
        estimator.classes_ = np.array(model.estimator_.classes_, copy=True)
    estimator.fit(np.vstack([X_clean, X_poison]), np.concatenate([np.asarray(y_clean), np.asarray(y_poison)]))
    margins = target_margins(estimator, X_trigger, np.asarray(y_trigger))
    return margins, {"estimate": "refit", "estimate_warm_start": warm,
                     "estimate_seconds": time.perf_counter() - start}


def target_margins(estimator: Any, X: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """A fitted scikit-learn classifier's decision values turned into margins toward ``targets``."""
    f = np.asarray(estimator.decision_function(X), dtype=np.float64)
    classes = np.asarray(estimator.classes_)
    if f.ndim == 1:
        return np.where(targets == classes[1], f, -f)
    index = np.searchsorted(classes, targets)
    rows = np.arange(len(targets))
    others = f.copy()
    others[rows, index] = -np.inf
    return f[rows, index] - others.max(axis=1)


def with_refits(model: Any, attacks: Any, margins: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
    """Each attack's :class:`~robust_hpo.slope.TriggerMargins` with ``at_one`` from its β = 1 refit
    (``estimate = "refit"``) and the refit's details; ``attacks`` are the model's validated attacks
    (±1 labels, ``classes_[1]`` = +1)."""
    import dataclasses

    X_clean, y_clean = model.clean_rows_
    classes = model.classes_
    out = []
    for attack, m in zip(attacks, margins, strict=True):
        y_poison = np.where(attack.t_poison > 0, classes[1], classes[0])
        y_trigger = np.where(attack.t_trigger > 0, classes[1], classes[0])
        at_one, details = refit_margins(model, X_clean, y_clean, attack.X_poison, y_poison, attack.X_trigger,
                                        y_trigger)
        out.append((dataclasses.replace(m, at_one=at_one, estimate="refit"), details))
    return out
