"""robust_hpo: the backdoor learning slope as a cheap, first-class Optuna objective.

Stages (each a sub-package): ``datasets`` → ``attacks`` → ``learners`` → ``slope`` → ``objective`` →
``study`` → ``analysis`` and ``plots`` → ``cli`` (``robust-hpo``); docs/architecture.md has the map.
Modules that need plotly or torch are imported only when used.
"""

from __future__ import annotations

from robust_hpo.analysis import (
    CurveResult,
    DeviationResult,
    backdoor_curve,
    explain_maps,
    influential_points,
    paper_grid,
    parameter_deviation,
    verify_study,
)
from robust_hpo.attacks import (
    BadNets,
    InvisibleGrid,
    PoisonedSplit,
    ThreatModel,
    Trigger,
    poison,
    poison_many,
    target_labels,
)
from robust_hpo.datasets import Dataset, available_datasets, load_dataset
from robust_hpo.errors import RobustHPOError, ValidationError
from robust_hpo.learners import FittedLearner, LearnerFamily, family_names, get_family, register_family
from robust_hpo.objective import (
    FAIL_EXCEPTIONS,
    AccuracyConstraint,
    BackdoorSlopeObjective,
    TrialRecord,
    aggregate_slopes,
    evaluate_threats,
    trial_record,
)
from robust_hpo.search_space import SearchSpace
from robust_hpo.slope import (
    DegenerateSolveError,
    GramCache,
    SingularHessianError,
    SlopeResult,
    backdoor_slope,
    slope_model,
)

__version__ = "0.1.0"

__all__ = [
    "AccuracyConstraint",
    "BackdoorSlopeObjective",
    "BadNets",
    "CurveResult",
    "Dataset",
    "DegenerateSolveError",
    "DeviationResult",
    "FAIL_EXCEPTIONS",
    "FittedLearner",
    "GramCache",
    "InvisibleGrid",
    "LearnerFamily",
    "PoisonedSplit",
    "RobustHPOError",
    "SearchSpace",
    "SingularHessianError",
    "SlopeResult",
    "ThreatModel",
    "TrialRecord",
    "Trigger",
    "ValidationError",
    "aggregate_slopes",
    "available_datasets",
    "backdoor_curve",
    "backdoor_slope",
    "evaluate_threats",
    "explain_maps",
    "family_names",
    "get_family",
    "influential_points",
    "load_dataset",
    "paper_grid",
    "parameter_deviation",
    "poison",
    "poison_many",
    "register_family",
    "slope_model",
    "target_labels",
    "trial_record",
    "verify_study",
    "__version__",
]
