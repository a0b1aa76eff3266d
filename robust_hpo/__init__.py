"""robust_hpo: the backdoor learning slope as a cheap, first-class Optuna objective.

Stages (each a module or sub-package): ``datasets`` (+ ``features``) → ``attacks`` (+ ``threats``)
→ ``learners`` → ``slope`` → ``objective`` → ``study`` (CLI: ``robust-hpo``) → reports (``plots``) and
the paper's analysis (``curves``, ``deviation``, ``explain``, ``verify``). Modules that need plotly or
torch are imported only when used.
"""

from __future__ import annotations

from robust_hpo.attacks import BadNets, InvisibleGrid, PoisonedSplit, Trigger, poison, target_labels
from robust_hpo.curves import CurveResult, backdoor_curve
from robust_hpo.datasets import Dataset, available_datasets, load_dataset
from robust_hpo.deviation import DeviationResult, parameter_deviation
from robust_hpo.explain import explain_maps, influential_points
from robust_hpo.learners._base import FittedLearner, LearnerFamily, family_names, get_family, register_family
from robust_hpo.objective import FAIL_EXCEPTIONS, AccuracyConstraint, BackdoorSlopeObjective
from robust_hpo.search_space import SearchSpace
from robust_hpo.slope import (
    DegenerateSolveError,
    GramCache,
    SingularHessianError,
    SlopeResult,
    backdoor_slope,
    slope_model,
)
from robust_hpo.threats import ThreatModel, aggregate_slopes, evaluate_threats, poison_many
from robust_hpo.verify import paper_grid, verify_study

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
    "SearchSpace",
    "SingularHessianError",
    "SlopeResult",
    "ThreatModel",
    "Trigger",
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
    "verify_study",
    "__version__",
]
