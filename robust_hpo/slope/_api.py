"""``backdoor_slope``: the one call users and the objective make."""

from __future__ import annotations

from typing import Any

from robust_hpo._validation import as_finite_2d, as_labels
from robust_hpo.attacks import PoisonedSplit
from robust_hpo.errors import ValidationError
from robust_hpo.slope._base import MAX_ABS_VALUE
from robust_hpo.slope._convex import slope_model
from robust_hpo.slope._result import SlopeResult


def backdoor_slope(estimator: Any, X_clean: Any, y_clean: Any = None, X_poison: Any = None,
                   y_poison: Any = None, X_trigger: Any = None, y_trigger: Any = None,
                   *, X_test: Any = None, y_test: Any = None, damping: float = 0.0,
                   exact: bool = True, sample_weight: Any = None) -> SlopeResult:
    """Backdoor learning slope of an unfitted scikit-learn ``estimator`` at β = 0.

    Fits the estimator with scikit-learn on the clean data only, brings it to the optimum (see
    docs/slope.md), then differentiates its optimality conditions (no training on poison). Either
    pass the six arrays (2-D float ``X``, labels with exactly two classes in ``y_clean``) or a
    :class:`~robust_hpo.attacks.PoisonedSplit` as the second argument. ``damping`` (default 0: the
    exact convex problem) is added to the Hessian's diagonal (or the SVC KKT block) only if a user
    needs to regularise a singular solve. ``estimator`` may be a ``Pipeline`` of a scaler and a supported
    estimator (the scaler fitted on the β-weighted set, differentiated exactly; ``exact=False`` accepts a
    PCA step held at its clean fit — see docs/slope.md). ``sample_weight`` weighs the clean rows (poison
    rows weigh β); the estimator's ``class_weight`` (a dict, or "balanced" from the β-weighted class
    sizes) multiplies both.

    Returns a :class:`SlopeResult`: ``derivative`` = dL/dβ of the mean triggered-test loss
    (negative: the backdoor is being learned), ``influence`` = derivative / m,
    ``slope`` = −(2/π)·arctan(influence) ∈ (−1, 1), and ``margins`` — the triggered points' target
    margins and their β-derivative from the same solve. The clean test set (``X_test``, ``y_test``;
    taken from a split) sets the margins' ``scale`` and hence ``normalised_margin``.
    """
    if isinstance(X_clean, PoisonedSplit):
        if any(a is not None for a in (y_clean, X_poison, y_poison, X_trigger, y_trigger, X_test, y_test)):
            raise ValidationError("pass either a PoisonedSplit or the arrays, not both")
        split = X_clean
        X_clean, y_clean, X_poison, y_poison, X_trigger, y_trigger = split.flat()
        X_test, y_test = split.X_test, split.y_test
    missing = [name for name, v in (("y_clean", y_clean), ("X_poison", X_poison),
                                    ("y_poison", y_poison), ("X_trigger", X_trigger),
                                    ("y_trigger", y_trigger)) if v is None]
    if missing:
        raise ValidationError(f"missing arguments: {', '.join(missing)}")
    _check_arrays(X_clean, y_clean, X_poison, y_poison, X_trigger, y_trigger)  # before the (costly) fit
    model = slope_model(estimator, damping=damping, exact=exact).fit(X_clean, y_clean, sample_weight=sample_weight)
    return model.derivative(X_poison, y_poison, X_trigger, y_trigger, X_test=X_test, y_test=y_test)


def _check_arrays(X_clean: Any, y_clean: Any, X_poison: Any, y_poison: Any, X_trigger: Any, y_trigger: Any) -> None:
    """The checks the fit and the derivative make, done first: each error names its argument."""
    Xc = as_finite_2d("X_clean", X_clean, max_abs=MAX_ABS_VALUE)
    as_labels("y_clean", y_clean, Xc.shape[0], "X_clean")
    for X_name, X, y_name, y in (("X_poison", X_poison, "y_poison", y_poison),
                                 ("X_trigger", X_trigger, "y_trigger", y_trigger)):
        arr = as_finite_2d(X_name, X, max_abs=MAX_ABS_VALUE)
        if arr.shape[1] != Xc.shape[1]:
            raise ValidationError(f"{X_name} has {arr.shape[1]} features but X_clean has {Xc.shape[1]}; expected "
                                  "equal counts")
        as_labels(y_name, y, arr.shape[0], X_name)
