"""The optimality tolerances of the Newton polish, shared by the binary and multi-class linear models."""

from __future__ import annotations

POLISH_RTOL = 1e-6
"""Newton polishing stops at this relative gradient norm (see :mod:`._linear`)."""

RESIDUAL_LIMIT = 1e-5
"""Above this relative gradient norm after polishing, the fit is refused (NotConvergedError)."""

MAX_NEWTON_STEPS = 100
"""Newton steps allowed to a polish: the semismooth Newton of a piecewise-quadratic loss (SGD's
modified_huber restarted from θ = 0 on separable d = 100 blobs) takes 25–45 steps with its Armijo halvings."""
