"""The drop-in Optuna objective (clean accuracy ↑, backdoor slope ↓ or another robustness measure), its
accuracy constraint, :func:`score_trial` for your own objective, the aggregation of several attacks into one objective value, what a trial
records (:func:`trial_record` reads it) and the recommendation (:func:`recommend`)."""

from __future__ import annotations

from robust_hpo.objective._aggregate import (
    AGGREGATES,
    QUANTITIES,
    Aggregate,
    aggregate_quantity,
    aggregate_slopes,
    evaluate_threats,
)
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
    BackdoorSlopeObjective,
    Evaluation,
)
from robust_hpo.objective._score import USER_OBJECTIVE_ATTR, check_user_split, score_trial
from robust_hpo.objective._recommend import RULES, Candidates, Recommendation, candidates, recommend
from robust_hpo.objective._shortlist import SHORTLIST_ATTR, check_shortlist, checked_backdoor
from robust_hpo.objective._record import (
    MARGIN_QUANTITIES,
    OBJECTIVES,
    RECORD_ATTR,
    RECORD_FORMAT,
    AttackRecord,
    TrialRecord,
    trial_record,
    trial_records,
)

__all__ = [
    "AGGREGATES",
    "CONSTRAINT_NAME",
    "DEFAULT_ATTACK",
    "DEFAULT_TOLERANCE",
    "FAIL_EXCEPTIONS",
    "LEGACY_CONSTRAINTS_KEY",
    "MARGIN_QUANTITIES",
    "OBJECTIVES",
    "QUANTITIES",
    "RECORD_ATTR",
    "RECORD_FORMAT",
    "RULES",
    "SHORTLIST_ATTR",
    "AccuracyConstraint",
    "Aggregate",
    "AttackRecord",
    "BackdoorSlopeObjective",
    "Candidates",
    "Evaluation",
    "Recommendation",
    "TrialRecord",
    "USER_OBJECTIVE_ATTR",
    "aggregate_quantity",
    "aggregate_slopes",
    "best_clean_accuracy",
    "candidates",
    "check_user_split",
    "check_shortlist",
    "checked_backdoor",
    "evaluate_threats",
    "is_feasible",
    "recommend",
    "record_constraint",
    "score_trial",
    "trial_record",
    "trial_records",
]
