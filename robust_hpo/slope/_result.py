"""The value object every slope computation returns."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


def normalised_slope(influence: float) -> float:
    """The paper's Eq. 5: ``-(2/π)·arctan(influence)``, in (-1, 1); near 1 = learns the backdoor fast."""
    return -2.0 / math.pi * math.atan(influence)


@dataclass(frozen=True)
class SlopeResult:
    """Backdoor learning slope at β = 0.

    derivative: dL/dβ at β = 0, L = *mean* loss (the learner's own loss) over the triggered test
        points, β = the sample weight of all m poison points together (clean points weigh 1).
        Negative means the triggered-test loss falls as poison weight grows.
    influence: derivative / m, the paper's per-poison-point (average pairwise influence) convention.
    slope: ``-(2/π)·arctan(influence)`` (Eq. 5).
    method: what was solved (e.g. "primal-cholesky", "dual-cholesky", "svm-kkt", "finite-difference").
    """

    derivative: float
    influence: float
    slope: float
    n_clean: int
    n_poison: int
    n_trigger: int
    method: str
    loss: str
    damping: float = 0.0
    fit_seconds: float = 0.0
    slope_seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_derivative(cls, derivative: float, *, n_poison: int, **kwargs: Any) -> "SlopeResult":
        if not math.isfinite(derivative):
            raise FloatingPointError(f"the backdoor derivative is not finite ({derivative!r})")
        influence = derivative / n_poison
        return cls(derivative=float(derivative), influence=float(influence),
                   slope=normalised_slope(influence), n_poison=n_poison, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-friendly) for ``trial.set_user_attr`` and reports."""
        return asdict(self)
