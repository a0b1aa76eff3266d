"""The value object every slope computation returns."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from robust_hpo.errors import ValidationError


def normalised_slope(influence: float) -> float:
    """The paper's Eq. 5: ``-(2/π)·arctan(influence)``, in (-1, 1); near 1 = learns the backdoor fast."""
    return -2.0 / math.pi * math.atan(influence)


@dataclass(frozen=True, eq=False)
class TriggerMargins:
    """Where the triggered test points stand at β = 0 and how fast they move toward the target.

    ``margin[t]``: the clean model's margin toward the attacker's target on triggered test point t —
    binary learners ``τ_t · f(x_t)`` (``τ_t = ±1`` the target's encoding, ``f`` the decision
    function), k-class networks ``z_target − max_{k ≠ target} z_k`` (logits). Positive: the point is
    already predicted as the target. ``derivative[t]``: ``d margin[t] / dβ`` at β = 0, from the same
    implicit solve as the slope (``∇θ m_tᵀ dθ/dβ``; the KKT solve for SVC). ``scale``: mean
    ``|margin|`` of the clean test points toward their true labels (None when not computed), so that
    margins compare across configurations.

    ``at_one``: an *estimate* of every margin at β = 1 from a second point (None: none was made):
    a short poisoned fine-tune of the clean network (networks) or a β = 1 refit on clean ∪ poison
    (convex learners, the same optimum as retraining); ``estimate`` names it
    (``"fine-tune"``, ``"refit"``) and is ``"linear"`` without one. With ``at_one`` the β = 1
    quantities use it; without, the linearisation ``m_t(1) ≈ m_t(0) + dm_t/dβ`` (rough for
    networks: it overshoots to 0.9–1.0, docs/networks.md).
    """

    margin: np.ndarray
    derivative: np.ndarray
    scale: float | None = None
    at_one: np.ndarray | None = None
    estimate: str = "linear"

    def __post_init__(self) -> None:
        margin = np.asarray(self.margin, dtype=np.float64).ravel()
        derivative = np.asarray(self.derivative, dtype=np.float64).ravel()
        if margin.shape != derivative.shape or margin.size == 0:
            raise ValidationError(f"margin and derivative must be non-empty and of equal length, got "
                             f"{margin.shape} and {derivative.shape}")
        object.__setattr__(self, "margin", margin)
        object.__setattr__(self, "derivative", derivative)
        if self.at_one is not None:
            at_one = np.asarray(self.at_one, dtype=np.float64).ravel()
            if at_one.shape != margin.shape or not np.all(np.isfinite(at_one)):
                raise ValidationError(f"at_one must hold {margin.size} finite margins, got shape {at_one.shape}")
            object.__setattr__(self, "at_one", at_one)
        elif self.estimate != "linear":
            raise ValidationError(f"estimate {self.estimate!r} needs at_one (the margins at β = 1)")

    def linearised(self, beta: float = 1.0) -> np.ndarray:
        """``m_t(0) + β·dm_t/dβ`` per triggered test point."""
        return self.margin + float(beta) * self.derivative

    def at(self, beta: float = 1.0) -> np.ndarray:
        """The margins at β: exact at 0, ``at_one`` at 1 when there is one, else linearised."""
        if beta == 1.0 and self.at_one is not None:
            return self.at_one
        return self.linearised(beta)

    def backdoor_accuracy(self, beta: float = 1.0) -> float:
        """Share of triggered test points predicted as the target at β (β = 0: exact; β = 1: from
        ``at_one`` when there is one; otherwise linearised)."""
        return float(np.mean(self.at(beta) > 0.0))

    def normalised_margin(self, beta: float = 1.0) -> float | None:
        """Mean target margin at β (as :meth:`backdoor_accuracy` takes it) over ``scale`` (None without one)."""
        if self.scale is None or not self.scale > 0:
            return None
        return float(np.mean(self.at(beta)) / self.scale)


@dataclass(frozen=True)
class SlopeResult:
    """Backdoor learning slope at β = 0.

    derivative: dL/dβ at β = 0, L = *mean* loss (the learner's own loss) over the triggered test
        points, β = the sample weight of all m poison points together (clean points weigh 1).
        Negative means the triggered-test loss falls as poison weight grows.
    influence: derivative / m, the paper's per-poison-point (average pairwise influence) convention.
    slope: ``-(2/π)·arctan(influence)`` (Eq. 5).
    method: what was solved (e.g. "primal-cholesky", "dual-cholesky", "svm-kkt", "finite-difference").
    exact: False when the value is a documented approximation where an exact derivative was expected
        (e.g. a one-sided value at a degenerate SVC); a recommendation never rests on such a trial.
    margins: the triggered test points' target margins at β = 0 and their derivative (from the same
        solve; for networks' finite differences, differenced from the same refits); None where a result
        was built without them (``finite_difference_from_losses`` given bare losses).
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
    exact: bool = True
    margins: TriggerMargins | None = field(default=None, repr=False)

    @property
    def baseline_backdoor_accuracy(self) -> float | None:
        """Share of triggered test points the *clean* model already predicts as the target (β = 0)."""
        return None if self.margins is None else self.margins.backdoor_accuracy(0.0)

    @property
    def predicted_backdoor_accuracy(self) -> float | None:
        """The estimated backdoor accuracy at β = 1: from ``margins.at_one`` (a fine-tune or refit,
        ``margins.estimate``) when there is one, else linearised."""
        return None if self.margins is None else self.margins.backdoor_accuracy(1.0)

    @property
    def normalised_margin(self) -> float | None:
        """Mean target margin at β = 1 (as the predicted backdoor accuracy takes it) over the clean
        test points' mean |margin|."""
        return None if self.margins is None else self.margins.normalised_margin(1.0)

    @classmethod
    def from_derivative(cls, derivative: float, *, n_poison: int, **kwargs: Any) -> "SlopeResult":
        if not math.isfinite(derivative):
            raise FloatingPointError(f"the backdoor derivative is not finite ({derivative!r})")
        influence = derivative / n_poison
        return cls(derivative=float(derivative), influence=float(influence),
                   slope=normalised_slope(influence), n_poison=n_poison, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-friendly) for ``trial.set_user_attr`` and reports; ``margins`` is reduced
        to ``baseline_backdoor_accuracy``, ``predicted_backdoor_accuracy`` and ``normalised_margin``."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "margins"}
        out["details"] = copy.deepcopy(self.details)
        out["baseline_backdoor_accuracy"] = self.baseline_backdoor_accuracy
        out["predicted_backdoor_accuracy"] = self.predicted_backdoor_accuracy
        out["normalised_margin"] = self.normalised_margin
        return out
