"""Learner families for scikit-learn's convex learners: :data:`CONVEX_FAMILIES` declares each once.

=============  =====================================  ==========================================
family         estimator                              hyperparameters (default search range)
=============  =====================================  ==========================================
logistic       LogisticRegression(C)                  C ∈ [1e-4, 1e2], log
ridge          RidgeClassifier(alpha = 1 / (2C))      C ∈ [1e-4, 1e2], log (the paper's α = 1/2C)
linear_svm     SVC(kernel="linear", C)                C ∈ [1e-4, 1e2], log
rbf_svm        SVC(kernel="rbf", C, gamma)            C ∈ [1e-1, 1e2], gamma ∈ [1e-4, 1e1], log
linear_svc     LinearSVC(C) (squared hinge)           C ∈ [1e-4, 1e2], log
sgd_log        SGDClassifier(loss="log_loss", alpha)  alpha ∈ [1e-6, 1e-1], log
sgd_hinge      SGDClassifier(loss="hinge", alpha)     alpha ∈ [1e-6, 1e-1], log
=============  =====================================  ==========================================

Images are flattened to rows; the slope is exact (``robust_hpo.slope``) for any number of classes.
:meth:`ConvexFamily.scaled` (a study's ``[search] scale = "standard"``) puts a ``StandardScaler``
in front of the estimator: the scaler is fitted on the β-weighted set and differentiated exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from optuna.distributions import BaseDistribution, FloatDistribution
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from robust_hpo._validation import Interval, Options, check, flatten_images
from robust_hpo.errors import NotConvergedError, ValidationError
from robust_hpo.search_space import format_config
from robust_hpo.slope import ConvexSlopeModel, GramCache, SlopeResult, slope_model


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
        return self.model.predict(X)  # images are flattened by the model (which remembers f for the margins)

    def backdoor_slope(self, X_poison: np.ndarray, y_poison: np.ndarray,
                       X_trigger: np.ndarray, y_trigger: np.ndarray, *,
                       X_test: np.ndarray | None = None, y_test: np.ndarray | None = None) -> SlopeResult:
        """The exact slope with the triggered points' margins (``X_test``, ``y_test``: the clean test
        set, for the margins' scale); images are flattened."""
        return self.model.derivative(X_poison, y_poison, X_trigger, y_trigger, X_test=X_test, y_test=y_test)


@dataclass(frozen=True)
class ConvexFamily:
    """A scikit-learn convex learner family, declared in one entry of :data:`CONVEX_FAMILIES`.

    ``estimator_class(**kind, **fixed, **to_estimator(params))`` is the unfitted estimator of a
    configuration; ``kind`` are the constructor arguments that identify the family among estimators
    of one class (an SVC's kernel), ``fixed`` other constructor arguments. ``to_estimator`` maps the
    searched hyperparameters (``space``) to constructor arguments and ``from_estimator`` back
    (default: same names), so an estimator is recognised and labelled by its family.

    Trials of a study fit on the same clean array: the family's :class:`GramCache` reuses the
    flattened array and its data-only Gram products across them. The exact slope takes any number
    of classes (``binary_only`` is False; kept for families of your own that need two).
    ``scale="standard"`` wraps the estimator in ``make_pipeline(StandardScaler(), estimator)``.
    """

    binary_only: ClassVar[bool] = False

    name: str
    estimator_class: type
    space: Mapping[str, BaseDistribution]
    kind: Mapping[str, Any] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    to_estimator: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    from_estimator: Callable[[Any], dict[str, Any]] | None = None
    cache: GramCache = field(default_factory=GramCache, compare=False, repr=False)
    scale: str | None = None

    def scaled(self, scale: str | None) -> "ConvexFamily":
        """This family with its estimator behind a scaler (``"standard"``), or bare (None)."""
        if scale not in (None, "standard"):
            raise ValidationError(f"scale must be 'standard' or None, got {scale!r}")
        return replace(self, scale=scale, cache=GramCache())

    def search_space(self) -> dict[str, BaseDistribution]:
        return dict(self.space)

    @property
    def option_keys(self) -> tuple[str, ...]:
        """The estimator's fixed options a study file may set (``[options.<learner>]``), all of which the
        exact slope supports: the solver's stopping rule (``tol``, ``max_iter``) and its cache."""
        return tuple(key for key in CONVEX_OPTIONS if key in self.estimator_class().get_params())

    def with_options(self, **options: Any) -> ConvexFamily:
        """A copy whose estimators get these fixed options, e.g. ``LINEAR_SVM.with_options(tol=1e-5)``."""
        for key, value in options.items():
            if key not in self.option_keys:
                raise ValidationError(f"unknown option {key!r} for learner {self.name!r}; expected some of "
                                      f"{list(self.option_keys)}")
            check(key, value, CONVEX_OPTIONS[key])
        return replace(self, fixed={**self.fixed, **options})

    def estimator(self, params: Mapping[str, Any]) -> Any:
        """The unfitted scikit-learn estimator of the configuration ``params``."""
        unknown = set(params) - set(self.space)
        if unknown:
            raise ValidationError(
                f"unknown hyperparameters {sorted(unknown)} for learner {self.name!r}; "
                f"expected {sorted(self.space)}"
            )
        missing = set(self.space) - set(params)
        if missing:
            raise ValidationError(f"learner {self.name!r} needs hyperparameters {sorted(missing)}")
        arguments = self.to_estimator(params) if self.to_estimator is not None else dict(params)
        estimator = self.estimator_class(**self.kind, **self.fixed, **arguments)
        return make_pipeline(StandardScaler(), estimator) if self.scale == "standard" else estimator

    def recognises(self, estimator: Any) -> bool:
        """Whether ``estimator`` is of this family (its class and identifying arguments; a pipeline
        by its final estimator)."""
        if isinstance(estimator, Pipeline):
            estimator = estimator.steps[-1][1]
        if not isinstance(estimator, self.estimator_class):
            return False
        given = estimator.get_params(deep=False)
        return all(given.get(key) == value for key, value in self.kind.items())

    def params_of(self, estimator: Any) -> dict[str, Any]:
        """The family's hyperparameters of an estimator it recognises (the inverse of :meth:`estimator`)."""
        if isinstance(estimator, Pipeline):
            estimator = estimator.steps[-1][1]
        if self.from_estimator is not None:
            return self.from_estimator(estimator)
        given = estimator.get_params(deep=False)
        return {name: given[name] for name in self.space}

    def fit(self, params: Mapping[str, Any], X_clean: np.ndarray, y_clean: np.ndarray,
            *, seed: int = 0) -> FittedConvexLearner:
        X = self.cache.flat(X_clean) if isinstance(X_clean, np.ndarray) else flatten_images(np.asarray(X_clean))
        estimator = self.estimator(params)
        try:
            model = slope_model(estimator, cache=self.cache).fit(X, y_clean)
        except NotConvergedError:
            # the error's advice, followed once: the solver's tol lowered RETRY_TOL_FACTOR times
            tol = estimator.get_params().get("tol")
            if not isinstance(tol, (int, float)) or tol * RETRY_TOL_FACTOR < MIN_RETRY_TOL:
                raise
            retried = clone(estimator).set_params(tol=tol * RETRY_TOL_FACTOR)
            model = slope_model(retried, cache=self.cache).fit(X, y_clean)
            model.details_["retry_tol"] = tol * RETRY_TOL_FACTOR
        return FittedConvexLearner(model)


RETRY_TOL_FACTOR = 1e-3
"""A fit whose solution the exact slope cannot bring to the optimum (``NotConvergedError``) is retried
once with the estimator's ``tol`` times this factor (not below ``MIN_RETRY_TOL``); the slope's
details record ``retry_tol``."""
MIN_RETRY_TOL = 1e-12

CONVEX_OPTIONS: dict[str, list[Any]] = {
    "tol": [Interval(Real, 0, None, closed="neither")],
    "max_iter": [Interval(Integral, 1, None), Options([-1])],
    "cache_size": [Interval(Real, 0, None, closed="neither")],
}
"""Fixed options of the convex families (``[options.<learner>]``) and their constraints; each family
takes those its estimator has (``ConvexFamily.option_keys``)."""


def _log(low: float, high: float) -> FloatDistribution:
    return FloatDistribution(low, high, log=True)


CONVEX_FAMILIES: tuple[ConvexFamily, ...] = (
    ConvexFamily("logistic", LogisticRegression, {"C": _log(1e-4, 1e2)}, fixed={"max_iter": 2000}),
    ConvexFamily("ridge", RidgeClassifier, {"C": _log(1e-4, 1e2)},
                 to_estimator=lambda p: {"alpha": 1.0 / (2.0 * p["C"])},
                 from_estimator=lambda e: {"C": 1.0 / (2.0 * e.alpha)}),
    ConvexFamily("linear_svm", SVC, {"C": _log(1e-4, 1e2)}, kind={"kernel": "linear"}),
    ConvexFamily("rbf_svm", SVC, {"C": _log(1e-1, 1e2), "gamma": _log(1e-4, 1e1)}, kind={"kernel": "rbf"}),
    ConvexFamily("linear_svc", LinearSVC, {"C": _log(1e-4, 1e2)}),
    ConvexFamily("sgd_log", SGDClassifier, {"alpha": _log(1e-6, 1e-1)}, kind={"loss": "log_loss"},
                 fixed={"random_state": 0}),
    ConvexFamily("sgd_hinge", SGDClassifier, {"alpha": _log(1e-6, 1e-1)}, kind={"loss": "hinge"},
                 fixed={"random_state": 0}),
)
"""The convex learner families: adding one here is all a new scikit-learn convex learner needs
(its slope must be supported by :func:`robust_hpo.slope.slope_model`)."""

LOGISTIC, RIDGE, LINEAR_SVM, RBF_SVM, LINEAR_SVC, SGD_LOG, SGD_HINGE = CONVEX_FAMILIES


def convex_family_of(estimator: Any) -> ConvexFamily | None:
    """The family that recognises a scikit-learn ``estimator``, or ``None``."""
    return next((family for family in CONVEX_FAMILIES if family.recognises(estimator)), None)


def estimator_label(estimator: Any) -> str:
    """A short readable label of an estimator: ``ridge C=2``, ``rbf_svm C=10, gamma=0.01``
    (its family and hyperparameters; the class name for an estimator of no family)."""
    family = convex_family_of(estimator)
    if family is None:
        return type(estimator).__name__
    try:
        params = family.params_of(estimator)
    except (TypeError, ValueError, ZeroDivisionError):
        return family.name
    return format_config(family.name, params)
