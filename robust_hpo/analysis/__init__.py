"""The paper's analysis of backdoor learning, for any configuration or a study's trials.

* curves: backdoor learning curves over the poison weight β with the slope's tangent
  (:func:`backdoor_curve`; :func:`fit_path` fits once for curves and deviation);
* deviation: how far the weights move along β (:func:`parameter_deviation`);
* explain: weight / input-gradient maps and the most influential training points
  (:func:`explain_maps`, :func:`influential_points`);
* verify: retraining a study's trials on the poisoned set against their slopes (:func:`verify_study`);
* grids over (C, γ) (:func:`paper_grid`, :func:`bin_trials`).

Results are plain dataclasses; their figures are in :mod:`robust_hpo.plots`.
"""

from __future__ import annotations

from robust_hpo.analysis._common import DEFAULT_BETAS, FamilyLookup, convex_estimator
from robust_hpo.analysis._curves import (
    BetaPath,
    CurveResult,
    backdoor_curve,
    curve_from_path,
    fit_path,
    with_tolerance,
)
from robust_hpo.analysis._deviation import (
    DeviationResult,
    deviation_from_path,
    parameter_deviation,
    rkhs_inner,
    weight_inner,
)
from robust_hpo.analysis._explain import (
    ExplanationMaps,
    InfluenceResult,
    explain_influence,
    explain_maps,
    influential_points,
    input_gradient,
    target_gradient,
    trigger_window,
    window_share,
)
from robust_hpo.analysis._grid import METRICS, GridResult, bin_trials, paper_grid
from robust_hpo.analysis._verify import (
    VERIFY_ATTR,
    VERIFY_ATTR_PREFIX,
    RecommendationCheck,
    WORST,
    VerificationReport,
    VerifiedTrial,
    attack_slope,
    retrain_poisoned,
    robust_region,
    slope_backdoor_spearman,
    stored_verification,
    trial_attack,
    trial_slope,
    verify_key,
    verify_study,
)

__all__ = [
    "DEFAULT_BETAS",
    "METRICS",
    "VERIFY_ATTR",
    "VERIFY_ATTR_PREFIX",
    "RecommendationCheck",
    "WORST",
    "BetaPath",
    "CurveResult",
    "DeviationResult",
    "ExplanationMaps",
    "FamilyLookup",
    "GridResult",
    "InfluenceResult",
    "VerificationReport",
    "VerifiedTrial",
    "attack_slope",
    "backdoor_curve",
    "bin_trials",
    "convex_estimator",
    "curve_from_path",
    "deviation_from_path",
    "explain_influence",
    "explain_maps",
    "fit_path",
    "influential_points",
    "input_gradient",
    "target_gradient",
    "paper_grid",
    "parameter_deviation",
    "retrain_poisoned",
    "rkhs_inner",
    "robust_region",
    "slope_backdoor_spearman",
    "stored_verification",
    "trial_attack",
    "trial_slope",
    "trigger_window",
    "verify_key",
    "verify_study",
    "weight_inner",
    "window_share",
    "with_tolerance",
]
