"""Shared input handling of the analysis toolkit (curves, deviation, explain, verify, grids)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np

from robust_hpo._validation import Interval, check
from robust_hpo.attacks import PoisonedSplit
from robust_hpo.errors import ValidationError
from robust_hpo.learners import CONVEX_FAMILIES, get_family

DEFAULT_BETAS: tuple[float, ...] = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
"""The default β grid of curves and deviation: 0 (the clean model), then dense near 0 (where the
slope lives), up to 1."""

FamilyLookup = Callable[[str], Any]
"""A function from a learner name to its family (default :func:`robust_hpo.learners.get_family`)."""


def check_split(split: object, name: str = "split") -> PoisonedSplit:
    if not isinstance(split, PoisonedSplit):
        raise ValidationError(f"{name} must be a robust_hpo.attacks.PoisonedSplit, got {type(split).__name__}")
    for part in ("clean", "poison", "test", "trigger"):
        if getattr(split, f"y_{part}").shape[0] == 0:
            raise ValidationError(f"{name} has no {part} points; expected at least one")
    return split


def check_positive_int(name: str, value: object) -> int:
    return int(check(name, value, (Interval(Integral, 1, None),)))


def check_fraction(name: str, value: object) -> float:
    return float(check(name, value, (Interval(Real, 0, 1),)))


def check_index(name: str, value: object, n: int, what: str) -> int:
    return int(check(name, value, (Interval(Integral, 0, n - 1),), note=f"an index into the {n} {what}"))


def lookup(family_lookup: FamilyLookup | None) -> FamilyLookup:
    """``family_lookup``, or the learner registry when None."""
    if family_lookup is None:
        return get_family
    if not callable(family_lookup):
        raise ValidationError(f"family_lookup must be callable (name -> learner family), got {family_lookup!r}")
    return family_lookup


def convex_estimator(learner: str, params: Mapping[str, Any], family_lookup: FamilyLookup | None = None) -> Any:
    """The unfitted scikit-learn estimator of a convex learner family (``family.estimator(params)``)."""
    family = lookup(family_lookup)(learner)
    build = getattr(family, "estimator", None)
    if build is None:
        raise ValidationError(
            f"learner {learner!r} is not a convex scikit-learn family (no estimator(params)); curves, "
            f"deviation and explanations need one of {[f.name for f in CONVEX_FAMILIES]}"
        )
    return build(dict(params))


def ovo_machines(estimator: Any) -> list[tuple[int, int, Any, Any, float]]:
    """The one-vs-one machines of a fitted multi-class ``SVC``: ``(i, j, support vectors, dual
    coefficients, intercept)`` per pair i < j, such that libsvm's pair decision value is
    ``Σ coef K(x, sv) + intercept`` (positive: a vote for class i)."""
    starts = [0]
    for count in estimator.n_support_:
        starts.append(starts[-1] + int(count))
    K = len(starts) - 1
    out = []
    p = 0
    for i in range(K):
        for j in range(i + 1, K):
            rows_i, rows_j = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
            sv = np.vstack([estimator.support_vectors_[rows_i], estimator.support_vectors_[rows_j]])
            coef = np.concatenate([estimator.dual_coef_[j - 1, rows_i], estimator.dual_coef_[i, rows_j]])
            out.append((i, j, sv, coef, float(estimator.intercept_[p])))
            p += 1
    return out
