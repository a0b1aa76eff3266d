"""Reading a finished study: the Pareto front, the recommendation, a text table and a CSV of all trials.

Values are ``(clean_accuracy, slope)`` as the objective returns them. The Pareto front is Optuna's
``study.best_trials`` (feasible trials only when the study has constraints).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from robust_hpo._validation import Interval, check
from robust_hpo.objective import RECORD_ATTR, is_feasible, trial_records
from robust_hpo.plots import pareto_figure, write_html
from robust_hpo.search_space import format_params


@dataclass(frozen=True)
class Recommendation:
    """The most robust Pareto trial whose clean accuracy is within ``tolerance`` of the best."""

    trial: FrozenTrial
    best_accuracy: float
    tolerance: float

    @property
    def clean_accuracy(self) -> float:
        return float(self.trial.values[0])

    @property
    def slope(self) -> float:
        return float(self.trial.values[1])

    def describe(self) -> str:
        return (f"trial {self.trial.number} ({format_params(self.trial.params)}): clean accuracy "
                f"{self.clean_accuracy:.4f} (best {self.best_accuracy:.4f}, tolerance {self.tolerance:g}), "
                f"slope {self.slope:.4f}")


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Pareto-optimal completed trials (feasible ones when constrained), by decreasing clean accuracy."""
    return sorted(study.best_trials, key=lambda t: (-t.values[0], t.values[1], t.number))


def recommend(trials: Sequence[FrozenTrial], tolerance: float) -> Recommendation | None:
    """Among feasible ``trials``: the lowest slope with clean accuracy ≥ best − ``tolerance``.

    Ties go to the higher clean accuracy, then the lower trial number. ``None`` if no trial is feasible.
    """
    check("tolerance", tolerance, [Interval(Real, 0, 1)])
    feasible = [t for t in trials if t.state == TrialState.COMPLETE and t.values and is_feasible(t)]
    if not feasible:
        return None
    best = max(t.values[0] for t in feasible)
    close = [t for t in feasible if t.values[0] >= best - tolerance - 1e-12]
    chosen = min(close, key=lambda t: (t.values[1], -t.values[0], t.number))
    return Recommendation(trial=chosen, best_accuracy=float(best), tolerance=float(tolerance))


def format_front(trials: Sequence[FrozenTrial]) -> str:
    """A fixed-width table of ``trials``: trial, params, clean accuracy, slope, feasible."""
    header = ("trial", "params", "clean accuracy", "slope", "feasible")
    rows = [(str(t.number), format_params(t.params), f"{t.values[0]:.4f}", f"{t.values[1]:.4f}",
             "yes" if is_feasible(t) else "no") for t in trials]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) if column == 1 else cell.rjust(width)
                       for column, (cell, width) in enumerate(zip(row, widths, strict=True)))
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summarize(study: optuna.Study) -> str:
    """One line counting every trial: complete and failed always, running, waiting (queued, e.g.
    retries) and pruned when there are any, then how many complete trials are feasible."""
    trials = study.get_trials(deepcopy=False)
    counts = {state: sum(t.state == state for t in trials) for state in TrialState}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    parts = [f"{counts[TrialState.COMPLETE]} complete", f"{counts[TrialState.FAIL]} failed"]
    parts += [f"{counts[state]} {state.name.lower()}" for state in (TrialState.RUNNING, TrialState.WAITING,
                                                                     TrialState.PRUNED) if counts[state]]
    if any(t.constraints for t in complete):
        parts.append(f"{sum(is_feasible(t) for t in complete)} feasible")
    return f"{len(trials)} trials: {', '.join(parts)}"


RECORD_COLUMNS: tuple[str, ...] = (
    "slope", "predicted_backdoor_accuracy", "baseline_backdoor_accuracy", "normalised_margin", "exact",
    "local_only", "worst_attack", "derivative", "influence", "n_poison", "method", "fit_seconds",
    "predict_seconds", "slope_seconds", "fail_reason")
"""The columns ``trials.csv`` takes from each trial's record (:func:`robust_hpo.objective.trial_record`)."""


def write_trials_csv(study: optuna.Study, path: str | Path) -> Path:
    """Every trial as a row: number, state, values, feasibility, system times, ``params_*``, the
    record's quantities (:data:`RECORD_COLUMNS`; ``slope:<attack>`` per attack when there are several),
    the attack's description and any other user attribute as ``user_attrs_*`` (dicts as JSON text).

    Value columns follow ``study.trials_dataframe()``'s naming (``values_clean_accuracy``, ...).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    names = _metric_names(study)
    records = trial_records(trials, study.metric_names)
    params = sorted({k for t in trials for k in t.params})
    attacks = sorted({a for r in records for a in r.attacks}) if any(len(r.attacks) > 1 for r in records) else []
    attrs = sorted({k for t in trials for k in t.user_attrs if k != RECORD_ATTR})
    header = (["number", "state", *[f"values_{n}" for n in names], "feasible", "constraint",
               "datetime_start", "datetime_complete", "duration_seconds"]
              + [f"params_{p}" for p in params] + list(RECORD_COLUMNS) + [f"slope:{a}" for a in attacks]
              + ["attack"] + [f"user_attrs_{a}" for a in attrs])
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for t, record in zip(trials, records, strict=True):
            values = list(t.values) if t.values is not None else [None] * len(names)
            duration = t.duration.total_seconds() if t.duration is not None else None
            row = [t.number, t.state.name, *values, record.feasible, record.constraint,
                   t.datetime_start.isoformat() if t.datetime_start else None,
                   t.datetime_complete.isoformat() if t.datetime_complete else None, duration]
            row += [t.params.get(p) for p in params]
            row += [_cell(getattr(record, column)) if record.complete or column == "fail_reason" else None
                    for column in RECORD_COLUMNS]
            row += [_cell(record.attacks[a].slope) if a in record.attacks else None for a in attacks]
            row += [_cell(record.attack)]
            row += [_cell(t.user_attrs.get(a)) for a in attrs]
            writer.writerow(["" if v is None else v for v in row])
    return path


def _metric_names(study: optuna.Study) -> list[str]:
    names = study.metric_names
    return list(names) if names is not None else [f"{i}" for i in range(len(study.directions))]


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


PARETO_HTML = "pareto.html"
TRIALS_CSV = "trials.csv"


@dataclass(frozen=True)
class StudyReport:
    """The Pareto front, the recommendation and the files written for a study."""

    study: optuna.Study
    front: list[FrozenTrial]
    recommendation: Recommendation | None
    html: Path
    csv: Path

    def render(self) -> str:
        """The text the CLI prints: summary, Pareto table, recommendation, file paths."""
        lines = [f"study {self.study.study_name!r}: {summarize(self.study)}"]
        if self.front:
            lines += ["", f"Pareto front ({len(self.front)} trials; clean accuracy ↑, slope ↓):",
                      format_front(self.front), ""]
        else:
            lines += ["", "Pareto front: empty (no completed feasible trial)", ""]
        if self.recommendation is not None:
            lines.append(f"Recommended: {self.recommendation.describe()}")
        else:
            lines.append("Recommended: none (no completed feasible trial)")
        lines += [f"Pareto plot: {self.html}", f"All trials:  {self.csv}"]
        return "\n".join(lines)


def report_study(study: optuna.Study, output: str | Path, *, tolerance: float) -> StudyReport:
    """Compute the front and recommendation; write ``pareto.html`` and ``trials.csv`` into ``output``."""
    front = pareto_trials(study)
    recommendation = recommend(front, tolerance)
    output = Path(output)
    figure = pareto_figure(study, recommended=recommendation.trial if recommendation else None)
    html = write_html(figure, output / PARETO_HTML)
    csv_path = write_trials_csv(study, output / TRIALS_CSV)
    return StudyReport(study=study, front=front, recommendation=recommendation, html=html, csv=csv_path)
