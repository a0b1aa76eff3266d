"""Reports: Pareto front, recommendation (hand-checked), text table and CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest

from robust_hpo.testing import synthetic_study as _study
from robust_hpo.study import (
    format_front,
    pareto_trials,
    recommend,
    report_study,
    summarize,
    write_trials_csv,
)

optuna.logging.set_verbosity(optuna.logging.ERROR)

def test_pareto_front_excludes_infeasible_and_dominated() -> None:
    front = pareto_trials(_study())
    assert [t.number for t in front] == [0, 1, 2]


@pytest.mark.parametrize(("tolerance", "expected"), [(0.0, 0), (0.01, 1), (0.02, 2), (0.5, 2)])
def test_recommendation_by_hand(tolerance: float, expected: int) -> None:
    recommendation = recommend(pareto_trials(_study()), tolerance)
    assert recommendation is not None
    assert recommendation.trial.number == expected
    assert recommendation.best_accuracy == pytest.approx(0.99)


def test_recommendation_ignores_infeasible_trials_even_if_given() -> None:
    study = _study()
    recommendation = recommend(study.trials, 0.2)
    assert recommendation is not None and recommendation.trial.number == 2  # trial 3 (slope 0.01) is infeasible


def test_no_feasible_trial_means_no_recommendation() -> None:
    study = _study([(0.9, 0.1, 0.2), (0.8, 0.05, 0.3)])
    assert pareto_trials(study) == []
    assert recommend(study.trials, 0.1) is None


@pytest.mark.parametrize("tolerance", [-0.1, 1.5, True, "0.1"])
def test_recommend_rejects_bad_tolerance(tolerance: object) -> None:
    with pytest.raises(ValueError, match=r"tolerance must be a number in \[0, 1\]"):
        recommend([], tolerance)  # type: ignore[arg-type]


def test_format_front_and_summary() -> None:
    study = _study()
    table = format_front(pareto_trials(study))
    lines = table.splitlines()
    assert lines[0].split() == ["trial", "params", "clean", "accuracy", "slope", "feasible"]
    assert lines[2].split() == ["0", "learner=logistic,", "C=0.1", "0.9900", "0.3000", "yes"]
    assert len(lines) == 2 + 3
    assert summarize(study) == "6 trials: 5 complete, 1 failed, 4 feasible"


def test_trials_csv(tmp_path: Path) -> None:
    study = _study()
    path = write_trials_csv(study, tmp_path / "sub" / "trials.csv")
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 6
    assert rows[0]["values_clean_accuracy"] == "0.99" and rows[0]["values_slope"] == "0.3"
    assert rows[3]["feasible"] == "False" and float(rows[3]["constraint"]) == pytest.approx(0.05)
    assert rows[2]["params_logistic.C"] == str(0.1 * 3)
    assert json.loads(rows[0]["attack"]) == {"trigger": "badnets"}
    assert rows[5]["state"] == "FAIL" and rows[5]["fail_reason"] == "ValueError: boom"
    assert rows[5]["values_clean_accuracy"] == "" and rows[5]["feasible"] == ""


def test_report_study_writes_files(tmp_path: Path) -> None:
    report = report_study(_study(), tmp_path / "out", tolerance=0.02)
    assert report.html.is_file() and report.csv.is_file()
    assert report.recommendation is not None and report.recommendation.trial.number == 2
    text = report.render()
    assert "Pareto front (3 trials" in text
    assert "Recommended: trial 2 (learner=logistic, C=0.3): clean accuracy 0.9700 (best 0.9900, tolerance 0.02), " \
           "slope 0.0500" in text
