"""Backdoor learning slopes: exact (implicit differentiation) for convex learners."""

from __future__ import annotations

from robust_hpo.slope._api import backdoor_slope
from robust_hpo.slope._cache import GramCache
from robust_hpo.slope._convex import (
    ConvexSlopeModel,
    DegenerateSolveError,
    LogisticSlope,
    RidgeSlope,
    SVCSlope,
    slope_model,
)
from robust_hpo.slope._hessian import LinearModelHessian, SingularHessianError
from robust_hpo.slope._result import SlopeResult, normalised_slope

__all__ = [
    "ConvexSlopeModel",
    "DegenerateSolveError",
    "GramCache",
    "LinearModelHessian",
    "LogisticSlope",
    "RidgeSlope",
    "SVCSlope",
    "SingularHessianError",
    "SlopeResult",
    "backdoor_slope",
    "normalised_slope",
    "slope_model",
]
