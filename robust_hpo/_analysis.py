"""Shared input handling of the analysis toolkit (curves, deviation, explain, verify, threats).

Validation with errors that name the argument, the β grid, readable labels of estimators, and the
mapping from a study trial's parameters to a learner configuration.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.svm import SVC

from robust_hpo.attacks._split import PoisonedSplit
from robust_hpo.search_space import LEARNER_PARAM

DEFAULT_BETAS: tuple[float, ...] = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
"""The default β grid: 0 (the clean model), then dense near 0 (where the slope lives), up to 1."""


def check_split(split: object, name: str = "split") -> PoisonedSplit:
    if not isinstance(split, PoisonedSplit):
        raise ValueError(f"{name} must be a robust_hpo.attacks.PoisonedSplit, got {type(split).__name__}")
    for part in ("clean", "poison", "test", "trigger"):
        if getattr(split, f"y_{part}").shape[0] == 0:
            raise ValueError(f"{name} has no {part} points; expected at least one")
    return split


def check_betas(betas: Sequence[float] | np.ndarray | None) -> np.ndarray:
    """β grid as a float array: starts at 0, strictly increasing, finite (``None`` = the default)."""
    if betas is None:
        return np.asarray(DEFAULT_BETAS, dtype=np.float64)
    try:
        arr = np.asarray(betas, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"betas must be a 1-D sequence of numbers, got {betas!r}") from None
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError(f"betas must be a 1-D sequence of at least two numbers, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("betas must be finite numbers, got NaN or infinity")
    if arr[0] != 0.0:
        raise ValueError(f"betas must start at 0 (the clean model, where the slope is taken), got {arr[0]!r}")
    if not np.all(np.diff(arr) > 0):
        raise ValueError(f"betas must be strictly increasing, got {arr.tolist()}")
    return arr


def check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_fraction(name: str, value: object, *, low: float = 0.0, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or not low <= float(value) <= high:
        raise ValueError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def check_index(name: str, value: object, n: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value < n:
        raise ValueError(f"{name} must be an integer in [0, {n - 1}] (an index into the {n} {what}), "
                         f"got {value!r}")
    return int(value)


def estimator_label(estimator: Any) -> str:
    """A short readable label: ``logistic C=0.1``, ``ridge C=2 (α=0.25)``, ``RBF SVM C=10, γ=0.01``."""
    if isinstance(estimator, LogisticRegression):
        return f"logistic C={estimator.C:.3g}"
    if isinstance(estimator, RidgeClassifier):
        return f"ridge C={1.0 / (2.0 * estimator.alpha):.3g} (α={estimator.alpha:.3g})"
    if isinstance(estimator, SVC):
        if estimator.kernel == "rbf":
            gamma = estimator.gamma if isinstance(estimator.gamma, str) else f"{estimator.gamma:.3g}"
            return f"RBF SVM C={estimator.C:.3g}, γ={gamma}"
        return f"{estimator.kernel} SVM C={estimator.C:.3g}"
    return type(estimator).__name__


def trial_config(params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A trial's parameters -> (learner name, {hyperparameter: value}).

    Accepts the plugin's layout (``{"learner": "rbf_svm", "rbf_svm.C": 1.0, "rbf_svm.gamma": 0.01}``)
    and the plain one (``{"learner": "rbf_svm", "C": 1.0, "gamma": 0.01}``).
    """
    if LEARNER_PARAM not in params:
        raise ValueError(f"trial params must contain {LEARNER_PARAM!r} (the learner name); got keys {sorted(params)}")
    learner = params[LEARNER_PARAM]
    if not isinstance(learner, str) or not learner:
        raise ValueError(f"trial params[{LEARNER_PARAM!r}] must be a learner name, got {learner!r}")
    prefix = f"{learner}."
    own = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
    if not own:
        own = {k: v for k, v in params.items() if k != LEARNER_PARAM and "." not in k}
    return learner, own


def default_family(name: str) -> Any:
    """The learner family called ``name``: the built-in convex ones without importing torch, else the registry."""
    from robust_hpo.learners import convex

    builtin = {f.name: f for f in (convex.LOGISTIC, convex.RIDGE, convex.LINEAR_SVM, convex.RBF_SVM)}
    if name in builtin:
        return builtin[name]
    from robust_hpo.learners._base import get_family

    return get_family(name)


def convex_estimator(learner: str, params: Mapping[str, Any], family_lookup: Any = None) -> Any:
    """The unfitted scikit-learn estimator of a convex learner family (``family.estimator(params)``)."""
    family = (family_lookup or default_family)(learner)
    build = getattr(family, "estimator", None)
    if build is None:
        raise ValueError(
            f"learner {learner!r} is not a convex scikit-learn family (no estimator(params)); curves, "
            "deviation and explanations need one of 'logistic', 'ridge', 'linear_svm', 'rbf_svm'"
        )
    return build(dict(params))

