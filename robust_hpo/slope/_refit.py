"""The β = 1 backdoor-accuracy estimate of a convex learner: a refit on clean ∪ poison.

A convex learner has one optimum, so training on the in-place poisoned set reaches the same model
as retraining from scratch: the refit *is* the answer, not an approximation (up to the solver's
tolerance). The refit is :meth:`ConvexSlopeModel.fit_weighted` at β = 1 — the whole pipeline (its
scaler refitted on clean ∪ poison), class weights from the poisoned class sizes, the clean rows'
sample weights — so it is the model a user would get by training on the poisoned set. A bare
``LogisticRegression`` is warm-started from the clean fit (same optimum, fewer solver iterations). A binary
``RidgeClassifier`` without a pipeline or class weights is refitted in closed form: its objective is quadratic, so the
β = 1 optimum is one Newton step from the clean one with the poison rows added, solved on the slope's Hessian
(``RidgeSlope.margins_at_one``; ``details["refit"] = "closed-form"``, else ``"scikit-learn"``). The linearised
margins it replaces were a good ranking but a poor number (held-out studies: mean |predicted −
retrained| 0.13, a strong attack predicted at 0.5 that reached 1.0; docs/slope.md).

Cost: one more fit of the learner per attack and trial (``details["estimate_seconds"]``, kept out of
``slope_seconds``: the slope itself needs no poisoned fit). Set ``ConvexSlopeModel.estimate =
"linear"`` (class or instance) to skip it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

ESTIMATES: tuple[str, ...] = ("refit", "linear")


def target_margins(estimator: Any, X: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """A fitted scikit-learn classifier's decision values turned into margins toward ``targets``
    (original labels): binary ``±f``; k classes ``f_target − max_{k≠target} f_k``; positive =
    predicted as the target."""
    f = np.asarray(estimator.decision_function(X), dtype=np.float64)
    classes = np.asarray(estimator.classes_)
    if f.ndim == 1:
        return np.where(targets == classes[1], f, -f)
    index = np.searchsorted(classes, targets)
    rows = np.arange(len(targets))
    others = f.copy()
    others[rows, index] = -np.inf
    return f[rows, index] - others.max(axis=1)


def _decode(model: Any, codes: np.ndarray) -> np.ndarray:
    """The model's label encoding (±1 for two classes, indices for K ≥ 3) back to original labels."""
    classes = model.classes_
    if classes.size == 2:
        return np.where(codes > 0, classes[1], classes[0])
    return classes[np.asarray(codes, dtype=np.intp)]


def _model_margins(model: Any, refitted: Any, X: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The refit's target margins in ``model``'s own convention (``SlopeResult.margins``: K ≥ 3 one-vs-one SVC
    the smallest target-oriented duel value, not scikit-learn's vote-based ``decision_function``), so that
    ``at_one`` and ``margin`` mean the same; ``codes`` in the model's label encoding."""
    multi = getattr(model, "_multi", None)
    if multi is None:
        return target_margins(refitted, X, _decode(model, codes))
    if hasattr(refitted, "steps"):  # a refitted pipeline: its own preprocessing
        X, refitted = refitted[:-1].transform(X), refitted[-1]
    return multi.margins_from(multi.scores_of(refitted, np.asarray(X, dtype=np.float64)), np.asarray(codes, np.intp))


def with_refits(model: Any, attacks: Any, margins: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
    """Each attack's :class:`~robust_hpo.slope.TriggerMargins` with ``at_one`` from its β = 1 refit
    and the refit's details; ``attacks`` are the model's validated attacks (``Attack.raw`` set)."""
    X_clean, y_clean, sample_weight = model.clean_rows_
    out = []
    for attack, m in zip(attacks, margins, strict=True):
        start = time.perf_counter()
        closed_form = getattr(model, "margins_at_one", None)
        at_one = None if closed_form is None else closed_form(attack)
        how = "closed-form"
        if at_one is None:
            X_poison, X_trigger = attack.raw
            refitted = model.fit_weighted(X_clean, y_clean, X_poison, _decode(model, attack.t_poison), 1.0,
                                          sample_weight, warm_start=True)
            at_one = _model_margins(model, refitted, X_trigger, attack.t_trigger)
            how = "scikit-learn"
        out.append((dataclasses.replace(m, at_one=at_one, estimate="refit"),
                    {"estimate": "refit", "refit": how, "estimate_seconds": time.perf_counter() - start}))
    return out
