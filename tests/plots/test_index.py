"""``index.html`` opens with the answer read from ``summary.json`` (recommended against most accurate, the
rule, a warning when still vulnerable), then lists the figures in reading order."""

from __future__ import annotations

import json
import re
from pathlib import Path

from robust_hpo.plots import learner_color, write_index
from robust_hpo.plots._index import READING_ORDER


def _record(number: int, accuracy: float, estimate: float | None, baseline: float | None = 0.0,
            learner: str = "rbf_svm") -> dict:
    return {"number": number, "learner": learner, "params": {"learner": learner, f"{learner}.C": 1.5,
                                                             f"{learner}.gamma": 0.02},
            "clean_accuracy": accuracy, "slope": 0.02, "predicted_backdoor_accuracy": estimate,
            "baseline_backdoor_accuracy": baseline}


def _summary(recommended: dict | None, most_accurate: dict | None = None, **extra) -> dict:
    if recommended is not None:
        recommended = {**recommended, "rule": "predicted_backdoor_accuracy", "candidates": [1, 2, 3],
                       "best_accuracy": 1.0, "tolerance": 0.02, **extra}
    return {"format": 1, "study": "s", "recommended": recommended, "most_accurate": most_accurate,
            "pareto_front": [r for r in (most_accurate,) if r is not None]}


def _index(tmp_path: Path, summary: dict | None, files: tuple[str, ...] = ()) -> str:
    for name in files:
        (tmp_path / name).write_text("x")
    if summary is not None:
        (tmp_path / "summary.json").write_text(json.dumps(summary))
    return write_index(tmp_path, title="robust_hpo study 's'").read_text()


def _text(page: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


def test_the_page_opens_with_the_recommendation_against_the_most_accurate_trial(tmp_path: Path) -> None:
    page = _index(tmp_path, _summary(_record(23, 0.98, 0.12), _record(19, 1.0, 0.88, 0.03)), ("pareto.html",))
    text = _text(page)
    assert text.index("Answer") < text.index("Figures")  # the answer comes first
    assert "Deploy trial 23 : rbf_svm with C=1.5, gamma=0.02." in text
    assert "recommended trial 23 rbf_svm C=1.5, gamma=0.02 0.980 0.12 0.00" in text
    assert "most accurate trial 19 rbf_svm C=1.5, gamma=0.02 1.000 0.88 0.03" in text
    assert "Rule: the lowest estimated backdoor accuracy among the 3 feasible trials within 0.02 of the best clean " \
           "accuracy 1.000." in text
    assert "estimated backdoor accuracy after poisoning" in text and "backdoor accuracy of the clean model" in text
    assert f"background:{learner_color('rbf_svm')}" in page  # the learner's colour, as in the figures
    assert "Warning" not in text


def test_a_vulnerable_recommendation_gets_a_warning_line(tmp_path: Path) -> None:
    text = _text(_index(tmp_path, _summary(_record(5, 0.97, 0.62), _record(5, 0.97, 0.62))))
    assert "Warning: the recommended configuration is still vulnerable: its estimated backdoor accuracy after " \
           "poisoning is 0.62 (≥ 0.5)." in text
    assert "It is also the most accurate trial" in text and "most accurate trial" not in text.split("also")[0]


def test_the_summarys_own_vulnerable_flag_decides_when_present(tmp_path: Path) -> None:
    assert "Warning" not in _text(_index(tmp_path, _summary(_record(5, 0.97, 0.62), vulnerable=False)))
    assert "Warning: the recommended" in _text(_index(tmp_path, _summary(_record(5, 0.97, 0.3), vulnerable=True)))
    assert "Warning" not in _text(_index(tmp_path, _summary(_record(5, 0.97, 0.49))))  # 0.49 < 0.5, no flag


def test_without_a_recommendation_or_a_summary(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert "No recommendation" in _text(_index(tmp_path / "a", _summary(None)))
    assert "Answer" not in _text(_index(tmp_path / "b", None, ("pareto.html",)))


def test_figures_are_listed_in_reading_order(tmp_path: Path) -> None:
    names = ("curves.html", "deviation.html", "explain_maps.html", "heatmap_logistic.html", "heatmap_rbf_svm.html",
             "pareto.html", "verification.html", "trials.csv", "verification.csv", "zzz.html")
    page = _index(tmp_path, _summary(_record(23, 0.98, 0.12)), names)
    order = re.findall(r'<a href="([^"]+)"', page)
    assert order == ["pareto.html", "verification.html", "heatmap_rbf_svm.html", "heatmap_logistic.html",
                     "curves.html", "deviation.html", "explain_maps.html", "zzz.html", "trials.csv", "summary.json",
                     "verification.csv"]  # the recommended learner's heatmap first
    assert READING_ORDER[0] == "pareto.html"
