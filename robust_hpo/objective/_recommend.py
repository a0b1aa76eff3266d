"""The recommendation: which trial a user should deploy, and the candidates it was chosen from.

**Candidates**: the study's COMPLETE, feasible trials (every one, not only the Pareto front) whose
clean accuracy is ≥ best − ``tolerance``, ``best`` being the best feasible clean accuracy.

**Rule**: among the candidates whose slope is exact (``TrialRecord.exact``), the lowest *predicted
backdoor accuracy* (each trial's estimate at β = 1, see below), ties broken by the lower slope, then the higher clean accuracy, then the lower trial
number. A candidate with a non-positive slope (``local_only``: poison does not help the backdoor at
β = 0, which says nothing about β = 1) ranks after every positive-slope candidate and is flagged.
When a candidate has no predicted backdoor accuracy (a plugin family's slope without margins, a
study written by robust_hpo 0.1), all are ranked by slope instead, and the recommendation says so.

The predicted backdoor accuracy is each trial's estimate at β = 1 (convex learners: a refit on
clean ∪ poison, the retrained model's own value; networks: a short poisoned fine-tune). After a run,
``robust-hpo run`` trains the first network candidates once on the poisoned set (the *shortlist
check*, :mod:`robust_hpo.objective._shortlist`); a checked candidate ranks by that measurement.

Measured (``benchmarks/decision_quality.py``, docs/benchmarks.md): the smallest slope within
tolerance picks the over-regularised edge, whose slope is small but whose triggered points already
sit on the target side; the predicted backdoor accuracy sees where the model starts *and* how fast
it moves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from robust_hpo._validation import Interval, check
from robust_hpo.errors import ValidationError
from robust_hpo.objective._record import TrialRecord, jsonable, trial_record
from robust_hpo.search_space import format_params

__all__ = ["RULES", "VULNERABLE_AT", "Candidates", "Recommendation", "candidates", "recommend"]

VULNERABLE_AT = 0.5
"""A recommendation whose estimated backdoor accuracy (β = 1) is at least this is *vulnerable*: the
attack is expected to succeed on most triggered inputs even with the most robust candidate."""

RULES: dict[str, str] = {
    "predicted_backdoor_accuracy": "the lowest predicted backdoor accuracy (the estimate at β = 1: a refit on "
                                   "clean ∪ poison for convex learners, a short poisoned fine-tune for networks), "
                                   "ties broken by the lower slope, then the higher clean accuracy",
    "slope": "the lowest slope, ties broken by the higher clean accuracy",
}
"""The two rankings, as the one sentence printed with a recommendation."""

_EPS = 1e-12

SHORTLIST_ATTR = "robust_hpo:shortlist"
"""The study user attribute holding the shortlist check (:mod:`robust_hpo.objective._shortlist`)."""


def checked_backdoor(study: optuna.Study) -> dict[int, float]:
    """The stored shortlist measurements ``{trial number: backdoor accuracy}`` (empty when none)."""
    stored = study.user_attrs.get(SHORTLIST_ATTR)
    if not isinstance(stored, Mapping):
        return {}
    out = {}
    for key, value in (stored.get("trials") or {}).items():
        try:
            out[int(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return out


@dataclass(frozen=True)
class Candidates:
    """The trials a recommendation is chosen from (and ``verify`` retrains): feasible, COMPLETE, clean
    accuracy ≥ ``best`` − ``tolerance``; ``records`` in trial order."""

    best_accuracy: float
    tolerance: float
    trials: tuple[FrozenTrial, ...]
    records: tuple[TrialRecord, ...]
    n_feasible: int

    @property
    def numbers(self) -> list[int]:
        return [r.number for r in self.records]


@dataclass(frozen=True)
class Recommendation:
    """The recommended trial, the rule that chose it, and what the user must know about it."""

    trial: FrozenTrial
    record: TrialRecord
    candidates: Candidates
    rule: str
    ranked: tuple[TrialRecord, ...]
    skipped_inexact: tuple[int, ...] = ()
    without_margins: tuple[int, ...] = ()
    local_only: tuple[int, ...] = ()
    notes: tuple[str, ...] = field(default=())
    checked: dict[int, float] = field(default_factory=dict)
    """Candidates trained once on poison after the study (:mod:`robust_hpo.objective._shortlist`):
    ``{trial number: backdoor accuracy}``; they rank by it instead of their estimate."""

    @property
    def best_accuracy(self) -> float:
        return self.candidates.best_accuracy

    @property
    def tolerance(self) -> float:
        return self.candidates.tolerance

    @property
    def clean_accuracy(self) -> float:
        return float(self.record.clean_accuracy)  # type: ignore[arg-type]

    @property
    def slope(self) -> float | None:
        return self.record.slope

    @property
    def predicted_backdoor_accuracy(self) -> float | None:
        return self.record.predicted_backdoor_accuracy

    @property
    def baseline_backdoor_accuracy(self) -> float | None:
        return self.record.baseline_backdoor_accuracy

    @property
    def checked_backdoor_accuracy(self) -> float | None:
        """The recommendation's backdoor accuracy after one training on poison (None: not checked)."""
        return self.checked.get(self.record.number)

    @property
    def expected_backdoor_accuracy(self) -> float | None:
        """What the rule ranked the recommendation by: the shortlist check, else the estimate."""
        checked = self.checked_backdoor_accuracy
        return checked if checked is not None else self.record.predicted_backdoor_accuracy

    @property
    def vulnerable(self) -> bool:
        """The recommendation's backdoor accuracy (the shortlist check, else the estimate) is ≥
        :data:`VULNERABLE_AT` (False when there is neither: the slope fallback)."""
        p = self.expected_backdoor_accuracy
        return p is not None and p >= VULNERABLE_AT

    def vulnerability_warning(self) -> str | None:
        """``Warning: ...`` with the estimate and what to try, when :attr:`vulnerable`; else None."""
        if not self.vulnerable:
            return None
        safer = [r for r in self.ranked if _value(r, self.checked) is not None
                 and _value(r, self.checked) < VULNERABLE_AT]  # type: ignore[operator]
        how = "measured" if self.checked_backdoor_accuracy is not None else "estimated"
        return (f"Warning: the recommended trial {self.record.number} is still vulnerable — its {how} backdoor "
                f"accuracy after training on the poisoned set is {self.expected_backdoor_accuracy:.3f} "
                f"(≥ {VULNERABLE_AT:g}){'' if safer else ', and no candidate is below that'}. Try stronger "
                "regularisation (a smaller C, more weight decay), fewer epochs or a smaller network, or accept a lower "
                f"clean accuracy (a larger tolerance than {self.tolerance:g}, e.g. `robust-hpo report --tolerance "
                f"{min(1.0, 2 * self.tolerance + 0.02):g}`); check it with `robust-hpo verify`.")

    def rule_sentence(self) -> str:
        """One sentence: how the recommendation was chosen."""
        return (f"Rule: among the {len(self.candidates.records)} feasible trials with clean accuracy ≥ "
                f"{self.best_accuracy:.4f} − {self.tolerance:g} (the best feasible accuracy minus the tolerance), "
                f"{RULES[self.rule]}; trials whose slope is not exact are never recommended and non-positive "
                "slopes (local only) rank last."
                + (f" {_trials(sorted(self.checked))} {'was' if len(self.checked) == 1 else 'were'} trained once "
                   f"on the poisoned set after the study (the shortlist check) and rank"
                   f"{'s' if len(self.checked) == 1 else ''} by that backdoor accuracy instead of the estimate."
                   if self.checked else ""))

    def describe(self) -> str:
        """``trial N (params): clean accuracy …, predicted backdoor accuracy …, slope …``."""
        r = self.record
        parts = [f"clean accuracy {self.clean_accuracy:.4f} (best {self.best_accuracy:.4f}, "
                 f"tolerance {self.tolerance:g})"]
        if r.predicted_backdoor_accuracy is not None:
            parts.append(f"predicted backdoor accuracy {r.predicted_backdoor_accuracy:.3f} "
                         f"(clean model {r.baseline_backdoor_accuracy:.3f})")
        if self.checked_backdoor_accuracy is not None:
            parts.append(f"backdoor accuracy after one training on the poisoned set "
                         f"{self.checked_backdoor_accuracy:.3f}")
        parts.append(f"slope {_num(r.slope)}")
        return f"trial {r.number} ({format_params(r.params)}): " + ", ".join(parts)

    def warnings(self) -> list[str]:
        """What the user must know: skipped inexact trials, the slope fallback, a local-only slope."""
        out = list(self.notes)
        if self.skipped_inexact:
            out.append(f"skipped {_trials(self.skipped_inexact)}: slope not exact (a documented one-sided value "
                       "at a degenerate SVC, docs/slope.md)")
        if self.rule == "slope" and self.without_margins:
            out.append(f"{len(self.without_margins)} of {len(self.ranked)} candidates have no predicted backdoor "
                       f"accuracy ({_trials(self.without_margins)}: slopes without margins, or a study written "
                       "before robust_hpo recorded them): ranked by slope instead")
        if self.record.local_only:
            out.append(f"local only: trial {self.record.number}'s slope is {_num(self.record.slope)} ≤ 0 — poison "
                       "does not help the backdoor at β = 0, which says nothing about β = 1; check it with "
                       "`robust-hpo verify`")
        elif self.local_only:
            out.append(f"{_trials(self.local_only)} have a non-positive slope (local only) and rank last")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the trial, the rule and its sentence, the candidates, the warnings."""
        r = self.record
        return jsonable({
            "number": r.number, "learner": r.learner, "params": r.params, "clean_accuracy": r.clean_accuracy,
            "slope": r.slope, "predicted_backdoor_accuracy": r.predicted_backdoor_accuracy,
            "baseline_backdoor_accuracy": r.baseline_backdoor_accuracy, "normalised_margin": r.normalised_margin,
            "exact": r.exact, "local_only": r.local_only, "objective": r.objective,
            "objective_value": r.objective_value,
            "rule": self.rule, "rule_sentence": self.rule_sentence(),
            "best_accuracy": self.best_accuracy, "tolerance": self.tolerance,
            "candidates": self.candidates.numbers, "ranking": [c.number for c in self.ranked],
            "skipped_inexact": list(self.skipped_inexact), "warnings": self.warnings(),
            "vulnerable": self.vulnerable, "vulnerability_warning": self.vulnerability_warning(),
            "checked_backdoor_accuracy": self.checked_backdoor_accuracy,
            "checked": {str(k): v for k, v in sorted(self.checked.items())}})


def candidates(trials: optuna.Study | Sequence[FrozenTrial], tolerance: float,
               metric_names: Sequence[str] | None = None) -> Candidates | None:
    """The feasible COMPLETE trials within ``tolerance`` of the best feasible clean accuracy (None if no
    trial is feasible). ``trials`` is a study (all its trials) or a sequence of trials."""
    tolerance = float(check("tolerance", tolerance, [Interval(Real, 0, 1)]))
    trials, metric_names = _trials_of(trials, metric_names)
    pairs = [(t, trial_record(t, metric_names)) for t in trials if t.state == TrialState.COMPLETE and t.values]
    feasible = [(t, r) for t, r in pairs if r.feasible and r.clean_accuracy is not None]
    if not feasible:
        return None
    best = max(r.clean_accuracy for _, r in feasible)  # type: ignore[type-var]
    close = [(t, r) for t, r in feasible if r.clean_accuracy >= best - tolerance - _EPS]  # type: ignore[operator]
    close.sort(key=lambda pair: pair[1].number)
    return Candidates(best_accuracy=float(best), tolerance=tolerance, trials=tuple(t for t, _ in close),
                      records=tuple(r for _, r in close), n_feasible=len(feasible))


def recommend(trials: optuna.Study | Sequence[FrozenTrial], tolerance: float,
              metric_names: Sequence[str] | None = None, *,
              checked: Mapping[int, float] | None = None) -> Recommendation | None:
    """The recommended trial of a study (see the module docstring); None if no trial can be recommended
    (no feasible trial, or every candidate's slope is inexact — :func:`candidates` still lists them).

    Pass the study (or ALL its trials): candidates are every feasible trial within the tolerance, not
    only the Pareto front. ``checked`` (default: a study's stored shortlist check,
    :mod:`robust_hpo.objective._shortlist`) gives measured backdoor accuracies that replace the
    estimates of those candidates in the ranking.
    """
    if checked is None:
        checked = checked_backdoor(trials) if isinstance(trials, optuna.Study) else {}
    trials, metric_names = _trials_of(trials, metric_names)
    pool = candidates(trials, tolerance, metric_names)
    if pool is None:
        return None
    by_number = {t.number: t for t in pool.trials}
    exact = [r for r in pool.records if r.exact and r.slope is not None]
    skipped = tuple(r.number for r in pool.records if not r.exact)
    if not exact:
        return None
    without = tuple(r.number for r in exact if r.predicted_backdoor_accuracy is None)
    rule = "slope" if without else "predicted_backdoor_accuracy"
    checked = {n: float(v) for n, v in checked.items() if n in by_number}
    ranked = tuple(sorted(exact, key=lambda r: _rank(r, rule, checked)))
    chosen = ranked[0]
    return Recommendation(trial=by_number[chosen.number], record=chosen, candidates=pool, rule=rule,
                          ranked=ranked, skipped_inexact=skipped, without_margins=without,
                          local_only=tuple(r.number for r in exact if r.local_only), checked=checked)


def _value(record: TrialRecord, checked: Mapping[int, float]) -> float | None:
    """A candidate's backdoor accuracy for the ranking: measured by the shortlist check, else estimated."""
    return checked.get(record.number, record.predicted_backdoor_accuracy)


def _rank(record: TrialRecord, rule: str, checked: Mapping[int, float]) -> tuple[Any, ...]:
    slope = float(record.slope)  # type: ignore[arg-type]
    key: tuple[Any, ...] = (record.local_only,)
    if rule == "predicted_backdoor_accuracy":
        key += (float(_value(record, checked)),)  # type: ignore[arg-type]
    return key + (slope, -float(record.clean_accuracy), record.number)  # type: ignore[arg-type]


def _trials_of(trials: optuna.Study | Sequence[FrozenTrial],
               metric_names: Sequence[str] | None) -> tuple[list[FrozenTrial], Sequence[str] | None]:
    if isinstance(trials, optuna.Study):
        return trials.get_trials(deepcopy=False), metric_names if metric_names is not None else trials.metric_names
    if isinstance(trials, (str, bytes)) or not isinstance(trials, Sequence):
        raise ValidationError(f"trials must be an optuna.Study or a sequence of FrozenTrials, got {type(trials).__name__}")
    return list(trials), metric_names


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _trials(numbers: Sequence[int]) -> str:
    return ("trial " if len(numbers) == 1 else "trials ") + ", ".join(str(n) for n in numbers)
