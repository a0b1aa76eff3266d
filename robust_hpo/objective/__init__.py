"""The drop-in Optuna objective (clean accuracy ↑, backdoor slope ↓) and its accuracy constraint."""

from __future__ import annotations

from robust_hpo.objective._constraint import (
    CONSTRAINT_NAME,
    LEGACY_CONSTRAINTS_KEY,
    AccuracyConstraint,
    best_clean_accuracy,
    is_feasible,
    record_constraint,
)
from robust_hpo.objective._objective import (
    DEFAULT_ATTACK,
    FAIL_EXCEPTIONS,
    SLOPE_ATTR_PREFIX,
    BackdoorSlopeObjective,
    Evaluation,
)

__all__ = [
    "CONSTRAINT_NAME",
    "DEFAULT_ATTACK",
    "FAIL_EXCEPTIONS",
    "LEGACY_CONSTRAINTS_KEY",
    "SLOPE_ATTR_PREFIX",
    "AccuracyConstraint",
    "BackdoorSlopeObjective",
    "Evaluation",
    "best_clean_accuracy",
    "is_feasible",
    "record_constraint",
]
