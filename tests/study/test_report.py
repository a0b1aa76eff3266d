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


@pytest.mark.parametrize(("tolerance", "expected"), [(0.0, 0), (0.01, 1), (0.02, 1), (0.05, 4), (0.5, 4)])
def test_recommendation_by_hand(tolerance: float, expected: int) -> None:
    """The lowest predicted backdoor accuracy among feasible trials within the tolerance — every such
    trial, not only the Pareto front (trial 4 is dominated)."""
    recommendation = recommend(_study(), tolerance)
    assert recommendation is not None
    assert recommendation.trial.number == expected
    assert recommendation.best_accuracy == pytest.approx(0.99)
    assert recommendation.rule == "predicted_backdoor_accuracy"
    expected_candidates = [n for n, a in enumerate([0.99, 0.98, 0.97, 0.90, 0.95]) if n != 3 and a >= 0.99 - tolerance - 1e-12]
    assert recommendation.candidates.numbers == expected_candidates


def test_recommendation_ignores_infeasible_trials() -> None:
    recommendation = recommend(_study(), 0.2)
    assert recommendation is not None and recommendation.trial.number == 4  # trial 3 (predicted 0.0) is infeasible


def test_ties_go_to_the_lower_slope_then_the_higher_accuracy() -> None:
    study = _study([(0.99, 0.30, None, 0.10), (0.985, 0.20, None, 0.10), (0.98, 0.20, None, 0.10),
                    (0.99, 0.10, None, 0.12)])
    assert recommend(study, 0.02).trial.number == 1


def test_inexact_trials_are_skipped_and_named() -> None:
    study = _study([(0.99, 0.30, None, 0.50), (0.98, 0.05, None, 0.00, False), (0.975, 0.2, None, 0.30)])
    recommendation = recommend(study, 0.02)
    assert recommendation.trial.number == 2 and recommendation.skipped_inexact == (1,)
    assert any(w.startswith("skipped trial 1: slope not exact") for w in recommendation.warnings())
    assert recommend(_study([(0.99, 0.30, None, 0.5, False)]), 0.02) is None


def test_non_positive_slopes_rank_last_and_are_flagged() -> None:
    study = _study([(0.99, 0.30, None, 0.50), (0.985, -0.10, None, 0.00), (0.98, 0.0, None, 0.00)])
    recommendation = recommend(study, 0.02)
    assert recommendation.trial.number == 0 and recommendation.local_only == (1, 2)
    assert "trials 1, 2 have a non-positive slope (local only) and rank last" in recommendation.warnings()
    only = recommend(_study([(0.99, -0.2, None, 0.1)]), 0.02)
    assert only.trial.number == 0 and only.record.local_only
    assert any(w.startswith("local only: trial 0's slope is -0.2000 ≤ 0") for w in only.warnings())


def test_without_margins_the_slope_decides_and_says_so() -> None:
    study = _study([(0.99, 0.30, None, 0.05), (0.985, 0.10, None, None), (0.98, 0.20, None, 0.00)])
    recommendation = recommend(study, 0.02)
    assert recommendation.rule == "slope" and recommendation.trial.number == 1
    assert any("1 of 3 candidates have no predicted backdoor accuracy (trial 1" in w
               for w in recommendation.warnings())
    assert "the lowest slope" in recommendation.rule_sentence()


def test_no_feasible_trial_means_no_recommendation() -> None:
    study = _study([(0.9, 0.1, 0.2, 0.1), (0.8, 0.05, 0.3, 0.1)])
    assert pareto_trials(study) == []
    assert recommend(study, 0.1) is None


@pytest.mark.parametrize("tolerance", [-0.1, 1.5, True, "0.1"])
def test_recommend_rejects_bad_tolerance(tolerance: object) -> None:
    with pytest.raises(ValueError, match=r"tolerance must be a number in \[0, 1\]"):
        recommend([], tolerance)  # type: ignore[arg-type]


def test_format_front_and_summary() -> None:
    study = _study()
    table = format_front(pareto_trials(study), study.metric_names, recommended=1)
    lines = table.splitlines()
    assert lines[0].split() == ["trial", "params", "clean", "acc.", "slope", "backdoor", "β=1", "(pred.)", "backdoor",
                                "β=0", "feasible", "note"]
    assert lines[2].split() == ["0", "learner=logistic,", "C=0.1", "0.9900", "0.3000", "0.600", "0.300", "yes"]
    assert lines[3].split()[-1] == "recommended"
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
    assert rows[2]["predicted_backdoor_accuracy"] == "0.4" and rows[2]["baseline_backdoor_accuracy"] == "0.2"
    assert rows[2]["slope"] == "0.05" and rows[2]["exact"] == "True" and rows[2]["local_only"] == "False"
    assert json.loads(rows[0]["attack"]) == {"trigger": "badnets"}
    assert rows[5]["state"] == "FAIL" and rows[5]["fail_reason"] == "ValueError: boom"
    assert rows[5]["values_clean_accuracy"] == "" and rows[5]["feasible"] == "" and rows[5]["slope"] == ""


def test_report_study_writes_files_and_summary(tmp_path: Path) -> None:
    study = _study()
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING))
    report = report_study(study, tmp_path / "out", tolerance=0.02)
    assert report.html.is_file() and report.csv.is_file()
    assert report.recommendation is not None and report.recommendation.trial.number == 1
    text = report.render()
    assert "Pareto front (3 trials" in text
    # the comparison in two lines, then the rule in one short sentence
    assert ("\nRecommended: trial 1 (logistic C=0.2): clean accuracy 0.980, estimated backdoor accuracy after "
            "poisoning 0.20 (clean model 0.10)\nMost accurate: trial 0 (logistic C=0.1): clean accuracy 0.990, "
            "estimated backdoor accuracy after poisoning 0.60 (clean model 0.30)\nRule: the lowest estimated backdoor "
            "accuracy among the 3 feasible trials within 0.02 of the best clean accuracy 0.990.\n") in text
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["trials"] == {"COMPLETE": 5, "FAIL": 1, "RUNNING": 1, "WAITING": 0, "PRUNED": 0,
                                 "FEASIBLE": 4, "TOTAL": 7}
    rec = summary["recommended"]
    assert (rec["number"], rec["clean_accuracy"], rec["slope"]) == (1, 0.98, 0.1)
    assert (rec["predicted_backdoor_accuracy"], rec["baseline_backdoor_accuracy"]) == (0.2, 0.1)
    assert rec["params"] == {"learner": "logistic", "logistic.C": 0.2} and rec["candidates"] == [0, 1, 2]
    assert rec["rule"] == "predicted_backdoor_accuracy" and rec["rule_sentence"].startswith("Rule: among the 3")
    assert rec["vulnerable"] is False and rec["vulnerability_warning"] is None and "Warning:" not in text
    assert [t["number"] for t in summary["pareto_front"]] == [0, 1, 2]
    assert summary["pareto_front"][2]["predicted_backdoor_accuracy"] == 0.4
    assert summary["most_accurate"]["number"] == 0 and summary["most_accurate"]["clean_accuracy"] == 0.99


@pytest.mark.parametrize("predicted, vulnerable", [(0.49, False), (0.5, True), (0.91, True), (None, False)])
def test_a_vulnerable_recommendation_is_flagged_everywhere(tmp_path: Path, predicted, vulnerable) -> None:
    """Estimate ≥ 0.5: ``vulnerable``, a ``Warning:`` line with the number and what to try in the printed
    report, ``summary.json`` ``recommended.vulnerable`` (always a bool) and the dashboard note."""
    from robust_hpo.dashboard._feasible import recommendation_note

    study = _study([(0.99, 0.3, None, predicted), (0.985, 0.2, None, None if predicted is None else 0.95)])
    report = report_study(study, tmp_path, tolerance=0.02)
    rec = report.recommendation
    assert rec is not None and rec.vulnerable is vulnerable
    warning = [line for line in report.render().splitlines() if line.startswith("Warning:")]
    summary = json.loads((tmp_path / "summary.json").read_text())["recommended"]
    assert summary["vulnerable"] is vulnerable
    note = recommendation_note(study, pareto_trials(study), rec)
    if vulnerable:
        (line,) = warning
        assert f"{predicted:.3f}" in line and "regularisation" in line and "fewer epochs" in line
        assert "tolerance" in line and line == summary["vulnerability_warning"]
        assert line in note
    else:
        assert warning == [] and summary["vulnerability_warning"] is None and "Warning:" not in note


def test_checked_candidates_rank_by_their_measurement() -> None:
    """The shortlist check's measured backdoor accuracy replaces a candidate's estimate in the ranking;
    the vulnerability follows the measurement."""
    points = [(0.99, 0.3, None, 0.1), (0.985, 0.2, None, 0.3), (0.98, 0.1, None, 0.6)]
    study = _study(points)
    assert recommend(study, 0.02).trial.number == 0
    rec = recommend(study, 0.02, checked={0: 0.7})
    assert rec.trial.number == 1 and rec.checked == {0: 0.7} and rec.checked_backdoor_accuracy is None
    rec = recommend(study, 0.02, checked={0: 0.7, 1: 0.65})
    assert rec.trial.number == 2 and rec.vulnerable  # its estimate 0.6 is the lowest left
    rec = recommend(study, 0.02, checked={0: 0.7, 1: 0.4})
    assert rec.trial.number == 1 and rec.checked_backdoor_accuracy == 0.4 and not rec.vulnerable
    assert "after one training on the poisoned set 0.400" in rec.describe()
    assert "trials 0, 1 were trained once on the poisoned set" in rec.rule_sentence()
    study.set_user_attr("robust_hpo:shortlist", {"format": 1, "trials": {"0": 0.7, "1": 0.4}})
    assert recommend(study, 0.02).trial.number == 1  # read from the study
