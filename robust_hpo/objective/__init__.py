"""The drop-in Optuna objective (clean accuracy ↑, backdoor slope ↓), its accuracy constraint, and the
aggregation of several attacks' slopes into one objective value."""

from __future__ import annotations

from robust_hpo.objective._aggregate import AGGREGATES, Aggregate, aggregate_slopes, evaluate_threats
from robust_hpo.objective._constraint import (
    CONSTRAINT_NAME,
    DEFAULT_TOLERANCE,
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
    "AGGREGATES",
    "CONSTRAINT_NAME",
    "DEFAULT_ATTACK",
    "DEFAULT_TOLERANCE",
    "FAIL_EXCEPTIONS",
    "LEGACY_CONSTRAINTS_KEY",
    "SLOPE_ATTR_PREFIX",
    "AccuracyConstraint",
    "Aggregate",
    "BackdoorSlopeObjective",
    "Evaluation",
    "aggregate_slopes",
    "best_clean_accuracy",
    "evaluate_threats",
    "is_feasible",
    "record_constraint",
]
