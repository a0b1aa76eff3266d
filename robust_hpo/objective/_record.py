"""What a trial records, and the one reader every consumer uses.

**Writes.** A trial of :class:`~robust_hpo.objective.BackdoorSlopeObjective` makes at most three
storage writes of its own: ONE JSON user attribute :data:`RECORD_ATTR` (``"robust_hpo"``) holding
everything below and, with a clean-accuracy constraint, ``trial.set_constraint("clean_accuracy", v)``
plus the list form optuna-dashboard 0.21 reads (:func:`~robust_hpo.objective.record_constraint`).
(Optuna itself writes the trial, its parameters and its values.)

**The record** (format :data:`RECORD_FORMAT`)::

    {"format": 1,
     "objective": "slope" | "predicted_backdoor_accuracy" | "normalised_margin",  # the 2nd objective
     "aggregate": "max" | "mean",          # how the attacks' quantities combine
     "worst_attack": NAME,                 # the attack that decided the objective (max of its quantity)
     "slope": s,                           # aggregated normalised slope -(2/π)·atan(dL/dβ / m)
     "baseline_backdoor_accuracy": b,      # aggregated; None when an attack has no margins
     "predicted_backdoor_accuracy": p,     #   (network families without margins, finite differences)
     "normalised_margin": g,
     "exact": bool,                        # every attack's slope exact (False: documented approximation)
     "fit_seconds": f, "predict_seconds": p, "slope_seconds": s,   # slope: all attacks together
     "attack": {...},                      # the worst attack's description (dataset, trigger, counts)
     "attacks": {NAME: {"slope", "derivative", "influence", "n_poison", "n_clean", "n_trigger",
                        "method", "loss", "damping", "exact", "slope_seconds",
                        "baseline_backdoor_accuracy", "predicted_backdoor_accuracy",
                        "normalised_margin", "details": {...}}, ...}}

A failed trial records ``{"format": 1, "fail_reason": "<ExceptionType>: <message>"}``.

**Reading.** :func:`trial_record` turns any ``FrozenTrial`` into a :class:`TrialRecord`: values,
feasibility, the record's quantities (flat), per-attack :class:`AttackRecord` s. Trials written by
robust_hpo 0.1 (one user attribute per quantity: ``derivative``, ``influence``, ``n_poison``,
``fit_seconds``, ``slope_seconds``, ``attack``, ``details``, ``slope:<name>``, ``worst_attack``,
``attacks``, ``fail_reason``) are read too (``legacy=True``; no margins, ``exact`` assumed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from robust_hpo.errors import ValidationError
from robust_hpo.objective._constraint import is_feasible
from robust_hpo.search_space import LEARNER_PARAM, learner_config

__all__ = [
    "MARGIN_QUANTITIES",
    "OBJECTIVES",
    "RECORD_ATTR",
    "RECORD_FORMAT",
    "AttackRecord",
    "TrialRecord",
    "failure_record",
    "jsonable",
    "trial_record",
    "trial_records",
]

RECORD_ATTR = "robust_hpo"
"""The one trial user attribute the objective writes (a JSON object, see the module docstring)."""

RECORD_FORMAT = 1

OBJECTIVES: tuple[str, ...] = ("slope", "predicted_backdoor_accuracy", "normalised_margin")
"""What the second objective (minimised) may be: the paper's normalised slope (default), the
linearised backdoor accuracy at β = 1, or the normalised linearised target margin at β = 1."""

MARGIN_QUANTITIES: tuple[str, ...] = ("baseline_backdoor_accuracy", "predicted_backdoor_accuracy",
                                      "normalised_margin")
"""The quantities that come from :attr:`robust_hpo.slope.SlopeResult.margins` (None without them)."""

_LEGACY_SLOPE_PREFIX = "slope:"


@dataclass(frozen=True)
class AttackRecord:
    """One attack's numbers for a trial (see :class:`robust_hpo.slope.SlopeResult`)."""

    slope: float
    derivative: float | None = None
    influence: float | None = None
    n_poison: int | None = None
    n_clean: int | None = None
    n_trigger: int | None = None
    method: str | None = None
    loss: str | None = None
    damping: float | None = None
    exact: bool = True
    slope_seconds: float | None = None
    baseline_backdoor_accuracy: float | None = None
    predicted_backdoor_accuracy: float | None = None
    normalised_margin: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttackRecord:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class TrialRecord:
    """Everything robust_hpo knows about one trial, read from its values, constraint and record.

    ``clean_accuracy`` and ``objective_value`` are the trial's two values (None unless COMPLETE);
    ``objective`` names the second one (``"slope"`` unless the study chose another). ``slope`` and
    the margin quantities are aggregated over the attacks as ``aggregate`` says. ``feasible`` is
    Optuna's rule (every constraint ≤ 0; None unless COMPLETE); ``constraint`` the largest value.
    """

    number: int
    state: str
    params: dict[str, Any]
    learner: str | None = None
    learner_params: dict[str, Any] = field(default_factory=dict)
    clean_accuracy: float | None = None
    objective: str = "slope"
    objective_value: float | None = None
    slope: float | None = None
    baseline_backdoor_accuracy: float | None = None
    predicted_backdoor_accuracy: float | None = None
    normalised_margin: float | None = None
    exact: bool = True
    feasible: bool | None = None
    constraint: float | None = None
    aggregate: str = "max"
    worst_attack: str | None = None
    attacks: dict[str, AttackRecord] = field(default_factory=dict)
    attack: dict[str, Any] | None = None
    fit_seconds: float | None = None
    predict_seconds: float | None = None
    slope_seconds: float | None = None
    fail_reason: str | None = None
    legacy: bool = False

    @property
    def complete(self) -> bool:
        return self.state == TrialState.COMPLETE.name

    @property
    def worst(self) -> AttackRecord | None:
        """The deciding attack's record (None when the trial recorded none)."""
        if self.worst_attack is not None and self.worst_attack in self.attacks:
            return self.attacks[self.worst_attack]
        return next(iter(self.attacks.values()), None)

    @property
    def derivative(self) -> float | None:
        """dL/dβ of the deciding attack."""
        return None if self.worst is None else self.worst.derivative

    @property
    def influence(self) -> float | None:
        return None if self.worst is None else self.worst.influence

    @property
    def n_poison(self) -> int | None:
        return None if self.worst is None else self.worst.n_poison

    @property
    def method(self) -> str | None:
        """How the deciding attack's slope was solved (``"primal-cholesky"``, ``"svm-kkt"``, ...)."""
        return None if self.worst is None else self.worst.method

    @property
    def local_only(self) -> bool:
        """A non-positive slope: poison does not help the backdoor *at β = 0*, which says nothing of
        β = 1 (measured: such configurations often learn the backdoor once trained on poison)."""
        return self.slope is not None and self.slope <= 0.0

    def attack_slope(self, name: str) -> float:
        """The normalised slope of attack ``name``."""
        if name not in self.attacks:
            raise ValidationError(f"trial {self.number} has no slope for attack {name!r}; it recorded "
                                  f"{sorted(self.attacks) or 'none'}")
        return float(self.attacks[name].slope)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``summary.json``, the dashboard adapter); per-attack details included."""
        out = asdict(self)
        out.update(derivative=self.derivative, influence=self.influence, n_poison=self.n_poison,
                   method=self.method, local_only=self.local_only)
        return jsonable(out)


def trial_record(trial: FrozenTrial, metric_names: Sequence[str] | None = None) -> TrialRecord:
    """The :class:`TrialRecord` of ``trial`` (any state; robust_hpo 0.2 or 0.1 attributes).

    ``metric_names`` (``study.metric_names``) says which value is which; without it a two-valued
    trial is read as (clean accuracy, second objective).
    """
    if not isinstance(trial, FrozenTrial):
        raise ValidationError(f"trial must be an optuna FrozenTrial, got {type(trial).__name__}")
    stored = trial.user_attrs.get(RECORD_ATTR)
    legacy = not isinstance(stored, Mapping)
    data: dict[str, Any] = _legacy_record(trial) if legacy else dict(stored)
    learner, own = _learner(trial.params)
    if learner is None and isinstance(data.get("learner"), str):  # score_trial: your own parameter names
        learner, own = data["learner"], dict(data.get("learner_params") or {})
    complete = trial.state == TrialState.COMPLETE
    objective = str(data.get("objective") or _objective_from_names(metric_names))
    accuracy, second = _values(trial, metric_names, objective)
    attacks = {str(name): AttackRecord.from_dict(a) for name, a in (data.get("attacks") or {}).items()}
    slope = _float(data.get("slope"))
    if slope is None and objective == "slope":
        slope = second
    constraints = trial.constraints if complete else {}
    return TrialRecord(
        number=trial.number, state=trial.state.name, params=dict(trial.params), learner=learner,
        learner_params=own, clean_accuracy=accuracy, objective=objective, objective_value=second,
        slope=slope,
        baseline_backdoor_accuracy=_float(data.get("baseline_backdoor_accuracy")),
        predicted_backdoor_accuracy=_float(data.get("predicted_backdoor_accuracy")),
        normalised_margin=_float(data.get("normalised_margin")),
        exact=bool(data.get("exact", True)),
        feasible=is_feasible(trial) if complete else None,
        constraint=max(constraints.values()) if constraints else None,
        aggregate=str(data.get("aggregate", "max")), worst_attack=data.get("worst_attack"),
        attacks=attacks, attack=data.get("attack"),
        fit_seconds=_float(data.get("fit_seconds")), predict_seconds=_float(data.get("predict_seconds")),
        slope_seconds=_float(data.get("slope_seconds")),
        fail_reason=data.get("fail_reason"), legacy=legacy)


def trial_records(trials: Sequence[FrozenTrial], metric_names: Sequence[str] | None = None) -> list[TrialRecord]:
    """:func:`trial_record` of each trial, in order."""
    return [trial_record(t, metric_names) for t in trials]


def failure_record(exc: BaseException) -> dict[str, Any]:
    """The record a failed trial writes."""
    return {"format": RECORD_FORMAT, "fail_reason": f"{type(exc).__name__}: {exc}"}


def _learner(params: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    if LEARNER_PARAM not in params:
        return None, {}
    try:
        return learner_config(params)
    except ValidationError:
        return None, {}


def _objective_from_names(metric_names: Sequence[str] | None) -> str:
    names = list(metric_names or [])
    return names[1] if len(names) == 2 and names[1] in OBJECTIVES else "slope"


def _values(trial: FrozenTrial, metric_names: Sequence[str] | None,
            objective: str) -> tuple[float | None, float | None]:
    values = list(trial.values or [])
    if trial.state != TrialState.COMPLETE or not values:
        return None, None
    names = list(metric_names or [])
    if len(names) == len(values) and "clean_accuracy" in names:
        accuracy = float(values[names.index("clean_accuracy")])
        second = float(values[names.index(objective)]) if objective in names else None
        return accuracy, second
    if len(values) == 2:
        return float(values[0]), float(values[1])
    return None, None


def _legacy_record(trial: FrozenTrial) -> dict[str, Any]:
    """A version-0.1 trial's separate user attributes as a record."""
    attrs = trial.user_attrs
    details = dict(attrs.get("details") or {})
    out: dict[str, Any] = {key: attrs[key] for key in ("fit_seconds", "slope_seconds", "attack", "fail_reason",
                                                        "aggregate", "worst_attack") if key in attrs}
    out["predict_seconds"] = details.get("predict_seconds")
    if "derivative" not in attrs:
        return out
    base = {"derivative": attrs.get("derivative"), "influence": attrs.get("influence"),
            "n_poison": attrs.get("n_poison"), "n_clean": details.get("n_clean"),
            "n_trigger": details.get("n_trigger"), "method": details.get("slope_method"),
            "loss": details.get("loss"), "damping": details.get("damping"),
            "slope_seconds": attrs.get("slope_seconds")}
    per_attack = attrs.get("attacks")
    if isinstance(per_attack, Mapping) and per_attack:
        worst = attrs.get("worst_attack")
        out["attacks"] = {name: {**(base if name == worst else {}), **dict(a)} for name, a in per_attack.items()}
        slopes = [float(a["slope"]) for a in per_attack.values() if "slope" in a]
        if slopes:
            how = attrs.get("aggregate", "max")
            out["slope"] = max(slopes) if how == "max" else float(np.mean(slopes))
    else:
        slope = None
        if trial.values and len(trial.values) == 2:
            slope = float(trial.values[1])
        elif base["influence"] is not None:
            slope = -2.0 / math.pi * math.atan(float(base["influence"]))
        if slope is not None:
            out["attacks"] = {"attack": {**base, "slope": slope}}
            out["worst_attack"] = "attack"
    return out


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def jsonable(value: Any) -> Any:
    """``value`` with NumPy scalars/arrays and tuples turned into JSON types (storage-safe); non-finite
    floats become None (JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)
