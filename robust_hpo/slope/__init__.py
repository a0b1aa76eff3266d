"""Backdoor learning slopes: exact (implicit differentiation) for convex learners.

Networks (torch: finite-difference and conjugate-gradient influence slopes) live in
:mod:`robust_hpo.slope.networks`, imported on demand so that this package does not load torch.
"""

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
from robust_hpo.slope._influence import QUANTITIES, Quantity, TrainingInfluence
from robust_hpo.slope._hessian import LinearModelHessian, SingularHessianError
from robust_hpo.slope._result import SlopeResult, TriggerMargins, normalised_slope

__all__ = [
    "QUANTITIES",
    "Quantity",
    "ConvexSlopeModel",
    "DegenerateSolveError",
    "GramCache",
    "LinearModelHessian",
    "LogisticSlope",
    "RidgeSlope",
    "SVCSlope",
    "SingularHessianError",
    "SlopeResult",
    "TrainingInfluence",
    "TriggerMargins",
    "backdoor_slope",
    "normalised_slope",
    "slope_model",
]
