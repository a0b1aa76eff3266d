"""robust_hpo: the backdoor learning slope as a cheap, first-class Optuna objective.

Stages (each a module or sub-package): ``datasets`` → ``attacks`` → ``learners`` → ``slope`` →
``objective`` → ``study`` (CLI: ``robust-hpo``) → reports (``plots``).
"""

from __future__ import annotations

from robust_hpo.attacks import BadNets, InvisibleGrid, PoisonedSplit, Trigger, poison, target_labels
from robust_hpo.datasets import Dataset, available_datasets, load_dataset
from robust_hpo.learners._base import FittedLearner, LearnerFamily, family_names, get_family, register_family
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
    "BadNets",
    "Dataset",
    "DegenerateSolveError",
    "FittedLearner",
    "GramCache",
    "InvisibleGrid",
    "LearnerFamily",
    "PoisonedSplit",
    "SingularHessianError",
    "SlopeResult",
    "Trigger",
    "__version__",
    "available_datasets",
    "backdoor_slope",
    "family_names",
    "get_family",
    "load_dataset",
    "poison",
    "register_family",
    "slope_model",
    "target_labels",
]
