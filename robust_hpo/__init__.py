"""robust_hpo: the backdoor learning slope as a cheap, first-class Optuna objective.

Stages (each a sub-package): ``datasets`` → ``attacks`` → ``learners`` → ``slope`` → ``objective`` →
``study`` → ``analysis`` and ``plots`` → ``cli`` (``robust-hpo``); docs/architecture.md has the map.
Every name below is imported on first use (PEP 562), so ``import robust_hpo`` is cheap and the
``robust-hpo`` program can handle Ctrl-C while the libraries load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        FeatureTrigger,
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

_EXPORTS: dict[str, str] = {
    "CurveResult": "robust_hpo.analysis",
    "DeviationResult": "robust_hpo.analysis",
    "backdoor_curve": "robust_hpo.analysis",
    "explain_maps": "robust_hpo.analysis",
    "influential_points": "robust_hpo.analysis",
    "paper_grid": "robust_hpo.analysis",
    "parameter_deviation": "robust_hpo.analysis",
    "verify_study": "robust_hpo.analysis",
    "BadNets": "robust_hpo.attacks",
    "FeatureTrigger": "robust_hpo.attacks",
    "InvisibleGrid": "robust_hpo.attacks",
    "PoisonedSplit": "robust_hpo.attacks",
    "ThreatModel": "robust_hpo.attacks",
    "Trigger": "robust_hpo.attacks",
    "poison": "robust_hpo.attacks",
    "poison_many": "robust_hpo.attacks",
    "target_labels": "robust_hpo.attacks",
    "Dataset": "robust_hpo.datasets",
    "available_datasets": "robust_hpo.datasets",
    "load_dataset": "robust_hpo.datasets",
    "RobustHPOError": "robust_hpo.errors",
    "ValidationError": "robust_hpo.errors",
    "FittedLearner": "robust_hpo.learners",
    "LearnerFamily": "robust_hpo.learners",
    "family_names": "robust_hpo.learners",
    "get_family": "robust_hpo.learners",
    "register_family": "robust_hpo.learners",
    "FAIL_EXCEPTIONS": "robust_hpo.objective",
    "AccuracyConstraint": "robust_hpo.objective",
    "BackdoorSlopeObjective": "robust_hpo.objective",
    "TrialRecord": "robust_hpo.objective",
    "aggregate_slopes": "robust_hpo.objective",
    "evaluate_threats": "robust_hpo.objective",
    "trial_record": "robust_hpo.objective",
    "SearchSpace": "robust_hpo.search_space",
    "DegenerateSolveError": "robust_hpo.slope",
    "GramCache": "robust_hpo.slope",
    "SingularHessianError": "robust_hpo.slope",
    "SlopeResult": "robust_hpo.slope",
    "backdoor_slope": "robust_hpo.slope",
    "slope_model": "robust_hpo.slope",
}
"""Public name -> the module it is imported from on first use."""

_SUBPACKAGES = ("analysis", "attacks", "cli", "dashboard", "datasets", "errors", "learners", "objective",
                "plots", "search_space", "slope", "study", "testing")


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "AccuracyConstraint",
    "BackdoorSlopeObjective",
    "BadNets",
    "FeatureTrigger",
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
