"""Reading a study: the Pareto front, the recommendation, a text table, ``trials.csv`` and ``summary.json``.

Values are ``(clean_accuracy, objective)`` as the objective returns them (the slope unless the study
chose another). The Pareto front is Optuna's ``study.best_trials`` (feasible trials only when the
study has constraints). The recommendation is :func:`robust_hpo.objective.recommend` (every feasible
trial within the tolerance is a candidate, not only the front); every number comes from
:func:`robust_hpo.objective.trial_record`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from robust_hpo._files import atomic_open, atomic_write_text
from robust_hpo.objective import RECORD_ATTR, Recommendation, TrialRecord, is_feasible, recommend, trial_records
from robust_hpo.plots import INDEX_HTML, answer_lines, pareto_figure, short_rule, write_html, write_index
from robust_hpo.search_space import format_params


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Pareto-optimal completed trials (feasible ones when constrained), by decreasing clean accuracy."""
    return sorted(study.best_trials, key=lambda t: (-t.values[0], t.values[1], t.number))


def format_trials(records: Sequence[TrialRecord], *, objective: str = "slope",
                  recommended: int | None = None) -> str:
    """A fixed-width table: trial, params, clean accuracy, slope, predicted and clean-model backdoor
    accuracy (``-`` without margins), the objective's value when it is neither, feasible, and notes
    (``recommended``, ``local only`` for a non-positive slope, ``not exact``)."""
    extra = objective not in ("slope", "predicted_backdoor_accuracy")
    header = ("trial", "params", "clean acc.", "slope", "backdoor β=1 (pred.)", "backdoor β=0",
              *((objective.replace("_", " "),) if extra else ()), "feasible", "note")
    rows = []
    for r in records:
        notes = [n for n, on in (("recommended", r.number == recommended), ("local only", r.local_only),
                                 ("not exact", not r.exact)) if on]
        rows.append((str(r.number), format_params(r.params), _fmt(r.clean_accuracy, 4), _fmt(r.slope, 4),
                     _fmt(r.predicted_backdoor_accuracy, 3), _fmt(r.baseline_backdoor_accuracy, 3),
                     *((_fmt(r.objective_value, 4),) if extra else ()),
                     "yes" if r.feasible else "no", ", ".join(notes)))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    left = (1, len(header) - 1)
    lines = ["  ".join(cell.ljust(width) if column in left else cell.rjust(width)
                       for column, (cell, width) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_front(trials: Sequence[FrozenTrial], metric_names: Sequence[str] | None = None,
                 recommended: int | None = None) -> str:
    """:func:`format_trials` of ``trials`` (read with :func:`robust_hpo.objective.trial_record`)."""
    records = trial_records(trials, metric_names)
    objective = records[0].objective if records else "slope"
    return format_trials(records, objective=objective, recommended=recommended)


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


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
    path = Path(path).expanduser().absolute()
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
    with atomic_open(path, "w", newline="") as handle:
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
SUMMARY_JSON = "summary.json"
SUMMARY_FORMAT = 1
SHOWN_CANDIDATES = 10
"""How many candidates (best first by the rule) the printed report lists."""


def trial_counts(study: optuna.Study) -> dict[str, int]:
    """How many trials are in each state (every Optuna state, RUNNING and WAITING included), and how
    many COMPLETE trials are feasible (``"FEASIBLE"``)."""
    trials = study.get_trials(deepcopy=False)
    counts = {state.name: 0 for state in TrialState}
    for t in trials:
        counts[t.state.name] += 1
    records = trial_records([t for t in trials if t.state == TrialState.COMPLETE], study.metric_names)
    counts["FEASIBLE"] = sum(bool(r.feasible) for r in records)
    counts["TOTAL"] = len(trials)
    return counts


def study_summary(study: optuna.Study, front: Sequence[FrozenTrial], recommendation: Recommendation | None,
                  tolerance: float) -> dict[str, Any]:
    """The JSON ``summary.json`` holds (format :data:`SUMMARY_FORMAT`)::

        {"format": 1, "study": NAME, "objective": "slope" | ..., "tolerance": t,
         "trials": {"COMPLETE": n, "FAIL": n, "RUNNING": n, "WAITING": n, "PRUNED": n, "FEASIBLE": n, "TOTAL": n},
         "recommended": {number, learner, params, clean_accuracy, slope, predicted_backdoor_accuracy,
                         baseline_backdoor_accuracy, normalised_margin, exact, local_only, rule,
                         rule_sentence, best_accuracy, tolerance, candidates, ranking, warnings, ...} | null,
         "pareto_front": [TrialRecord.to_dict() without per-attack details, ...],
         "most_accurate": the front's most accurate trial, as a pareto_front entry | null}

    ``most_accurate`` (the first of ``front``, ordered as :func:`pareto_trials` orders it) is what the
    recommendation is compared with in ``report``, ``index.html`` and the Pareto figure.
    """
    objective = list(study.metric_names or ["clean_accuracy", "slope"])[-1]
    front_records = trial_records(front, study.metric_names)
    return {
        "format": SUMMARY_FORMAT,
        "study": study.study_name,
        "objective": objective,
        "tolerance": float(tolerance),
        "trials": trial_counts(study),
        "recommended": recommendation.to_dict() if recommendation is not None else None,
        "pareto_front": [_brief(r) for r in front_records],
        "most_accurate": _brief(most_accurate(front_records)) if front_records else None,
    }


def most_accurate(records: Sequence[TrialRecord]) -> TrialRecord:
    """The most accurate of ``records`` (ties: the lower objective, then the lower trial number)."""
    return min(records, key=lambda r: (-float(r.clean_accuracy or 0.0), float(r.objective_value or 0.0), r.number))


def _brief(record: TrialRecord) -> dict[str, Any]:
    out = record.to_dict()
    out["attacks"] = {name: {k: v for k, v in a.items() if k != "details"} for name, a in out["attacks"].items()}
    return out


@dataclass(frozen=True)
class StudyReport:
    """The Pareto front, the recommendation and the files written for a study."""

    study: optuna.Study
    front: list[FrozenTrial]
    recommendation: Recommendation | None
    html: Path
    csv: Path
    summary: Path | None = None

    def render(self) -> str:
        """The text the CLI prints: summary, Pareto table, recommendation with its rule, file paths."""
        names = self.study.metric_names
        objective = list(names or ["clean_accuracy", "slope"])[-1]
        chosen = self.recommendation.trial.number if self.recommendation is not None else None
        lines = [f"study {self.study.study_name!r}: {summarize(self.study)}"]
        if self.front:
            lines += ["", f"Pareto front ({len(self.front)} trials; clean accuracy ↑, "
                          f"{objective.replace('_', ' ')} ↓):",
                      format_front(self.front, names, recommended=chosen), ""]
        else:
            lines += ["", "Pareto front: empty (no completed feasible trial)", ""]
        rec = self.recommendation
        if rec is not None:
            shown = rec.ranked[:SHOWN_CANDIDATES]
            more = f", the first {len(shown)} by the rule" if len(rec.ranked) > len(shown) else ""
            lines += [f"Candidates ({len(rec.candidates.records)} feasible trials within {rec.tolerance:g} of the "
                      f"best clean accuracy {rec.best_accuracy:.4f}{more}):",
                      format_trials(shown, objective=objective, recommended=chosen), "",
                      *answer_lines(rec.to_dict(), self._most_accurate()), short_rule(rec.to_dict())]
            lines += [f"  warning: {w}" for w in rec.warnings()]
            if rec.vulnerable:
                lines.append(str(rec.vulnerability_warning()))
        else:
            lines.append("Recommended: none (no completed feasible trial with an exact slope)")
        lines += [f"Pareto plot: {self.html}", f"All trials:  {self.csv}"]
        if self.summary is not None:
            lines.append(f"Summary:     {self.summary}")
        lines.append(f"All files:   {self.html.parent / INDEX_HTML}")
        return "\n".join(lines)

    def _most_accurate(self) -> dict[str, Any] | None:
        records = trial_records(self.front, self.study.metric_names)
        return most_accurate(records).to_dict() if records else None


def report_study(study: optuna.Study, output: str | Path, *, tolerance: float,
                 storage: str | None = None) -> StudyReport:
    """Compute the front and recommendation; write ``pareto.html``, ``trials.csv``, ``summary.json`` and
    ``index.html`` into ``output`` (each atomically; ``storage``: how the index describes the storage)."""
    front = pareto_trials(study)
    recommendation = recommend(study, tolerance)
    output = Path(output).expanduser().absolute()
    figure = pareto_figure(study, recommended=recommendation.trial if recommendation else None,
                           recommendation_note=(f"Ringed: trial {recommendation.trial.number}, the recommendation. "
                                                + short_rule(recommendation.to_dict())
                                                if recommendation else None),
                           tolerance=recommendation.tolerance if recommendation else None)
    html = write_html(figure, output / PARETO_HTML)
    csv_path = write_trials_csv(study, output / TRIALS_CSV)
    summary = atomic_write_text(output / SUMMARY_JSON, json.dumps(study_summary(study, front, recommendation,
                                                                                 tolerance), indent=2) + "\n")
    write_study_index(output, study.study_name, storage=storage)
    return StudyReport(study=study, front=front, recommendation=recommendation, html=html, csv=csv_path,
                       summary=summary)


def write_study_index(output: str | Path, study_name: str, *, storage: str | None = None) -> Path:
    """(Re)write ``output/index.html`` for study ``study_name`` (``storage``: its description)."""
    details = [f"Storage: {storage}"] if storage else []
    return write_index(output, title=f"robust_hpo study {study_name!r}", details=details)
