"""The optional clean-accuracy constraint, recorded the way Optuna 5 *and* optuna-dashboard 0.21 read it.

Optuna's convention: a trial is feasible when every constraint value is ≤ 0. The value recorded here is
``threshold − clean_accuracy`` where the threshold is either an absolute ``min_accuracy`` or
``best − within_best``, ``best`` being the best clean accuracy among the study's completed trials *at
the time the trial finishes* (this trial included). Values are fixed when written: a trial that was
within ``within_best`` of the best so far stays feasible even if a better trial comes later.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from numbers import Real
from typing import Any

import optuna
from optuna.trial import TrialState

from robust_hpo._validation import Interval, check
from robust_hpo.errors import ValidationError

CONSTRAINT_NAME = "clean_accuracy"
"""Key of the constraint in ``Trial.set_constraint`` (Optuna ≥ 5)."""

DEFAULT_TOLERANCE = 0.01
"""How much clean accuracy a recommendation (or verification's robust region) may give up relative
to the best: the one default of ``[report] tolerance``, ``report``, ``explain`` and ``verify``."""

LEGACY_CONSTRAINTS_KEY = "constraints"
"""The list-form system attribute Optuna < 5 samplers wrote and optuna-dashboard 0.21 reads."""


@dataclass(frozen=True, kw_only=True)
class AccuracyConstraint:
    """Clean accuracy ≥ ``min_accuracy``, or ≥ (best so far − ``within_best``); exactly one is given."""

    min_accuracy: float | None = None
    within_best: float | None = None

    def __post_init__(self) -> None:
        given = [name for name in ("min_accuracy", "within_best") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValidationError("give exactly one of min_accuracy or within_best, got "
                             + (" and ".join(given) if given else "neither"))
        check(given[0], getattr(self, given[0]), [Interval(Real, 0, 1)])

    def threshold(self, accuracy: float, best_so_far: float | None) -> float:
        """The clean accuracy a trial with ``accuracy`` must reach."""
        if self.min_accuracy is not None:
            return float(self.min_accuracy)
        assert self.within_best is not None
        best = accuracy if best_so_far is None else max(accuracy, best_so_far)
        return float(best - self.within_best)

    def value(self, accuracy: float, study: optuna.Study | None = None) -> float:
        """``threshold − accuracy`` (≤ 0: feasible); reads the study's best only for ``within_best``."""
        best = None
        if self.within_best is not None and study is not None:
            best = best_clean_accuracy(study)
        return self.threshold(accuracy, best) - float(accuracy)

    def describe(self) -> str:
        if self.min_accuracy is not None:
            return f"clean accuracy ≥ {self.min_accuracy:g}"
        return f"clean accuracy within {self.within_best:g} of the best so far"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def best_clean_accuracy(study: optuna.Study) -> float | None:
    """Best first objective (clean accuracy) among completed trials, or ``None`` if there are none."""
    values = [t.values[0] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if t.values]
    return max(values) if values else None


def record_constraint(trial: optuna.Trial, value: float) -> None:
    """Write ``value`` as Optuna's named constraint *and* as the list-form attribute the dashboard reads.

    Optuna 5 reads both forms (``trial.constraints`` then shows ``{"0": v, "clean_accuracy": v}``,
    the same value twice, so feasibility is unchanged); optuna-dashboard 0.21 reads only the list.
    Two storage writes; the list form goes once the dashboard adapter computes feasibility itself.
    """
    value = float(value)
    if not math.isfinite(value):
        raise ValidationError(f"constraint value must be finite, got {value!r}")
    trial.set_constraint(CONSTRAINT_NAME, value)
    # No public setter exists for system attributes; this is the write Optuna's own samplers made.
    trial.storage.set_trial_system_attr(trial._trial_id, LEGACY_CONSTRAINTS_KEY, [value])


def is_feasible(trial: optuna.trial.FrozenTrial) -> bool:
    """Optuna's rule: every constraint value ≤ 0 (a trial without constraints is feasible)."""
    return all(v <= 0.0 for v in trial.constraints.values())
