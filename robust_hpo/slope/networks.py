"""Backdoor learning slopes of torch networks (this module imports torch).

* :func:`influence_slope` — implicit differentiation at the clean network (no poisoned training):
  ``dL/dβ = −∇L_trigᵀ (H + (λ + δ) I)⁻¹ (1/n) Σ_j ∇ℓ_j`` by conjugate gradients on Gauss-Newton
  (default) or exact Hessian-vector products, over all parameters or the last layers.
* :func:`finite_difference_slope` — the paper's Eq. 7, ``(L(θ*(β)) − L(θ*(0))) / β`` for a list of β.

Both return :class:`~robust_hpo.slope.SlopeResult` (mean cross-entropy on the triggered points,
``influence = derivative / m``, ``slope = −(2/π)·arctan(influence)``) with ``margins``: the triggered
points' target margins ``z_t − max_{k≠t} z_k`` and their β-derivative (:func:`target_margins`,
:func:`clean_test_scale` for the scale, :func:`logits_of`). Conventions: docs/networks.md.
"""

from __future__ import annotations

from robust_hpo.errors import requires_torch

with requires_torch("the network slopes (robust_hpo.slope.networks)"):
    from robust_hpo.slope._torch_cg import CGSolution, InfluenceSolveError, conjugate_gradient
    from robust_hpo.slope._torch_finite_difference import (
        FD_BETAS,
        finite_difference_from_losses,
        finite_difference_slope,
        triggered_loss,
    )
    from robust_hpo.slope._torch_influence import MAX_EXACT_PARAMETERS, InfluenceConfig, influence_slope
    from robust_hpo.slope._torch_linearised import LinearisedNetwork
    from robust_hpo.slope._torch_margins import clean_test_scale, logits_of, target_margins

__all__ = [
    "FD_BETAS",
    "MAX_EXACT_PARAMETERS",
    "CGSolution",
    "InfluenceConfig",
    "InfluenceSolveError",
    "LinearisedNetwork",
    "clean_test_scale",
    "conjugate_gradient",
    "finite_difference_from_losses",
    "finite_difference_slope",
    "influence_slope",
    "logits_of",
    "target_margins",
    "triggered_loss",
]
