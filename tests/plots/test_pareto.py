"""The Pareto figure: legend, axes, recommendation, infeasible trials, standalone HTML."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from robust_hpo.plots import ACCURACY_TITLE, SLOPE_TITLE, pareto_figure, write_html
from robust_hpo.study import recommend
from robust_hpo.testing import synthetic_study as _study

optuna.logging.set_verbosity(optuna.logging.ERROR)


def test_pareto_figure_legend_axes_and_recommendation(tmp_path: Path) -> None:
    study = _study()
    recommendation = recommend(study, 0.02)
    figure = pareto_figure(study, recommended=recommendation.trial)
    names = {trace.name: trace for trace in figure.data}
    assert set(names) == {"Pareto front", "feasible, dominated", "infeasible (clean-accuracy constraint)",
                          "recommended"}
    assert sorted(names["Pareto front"].x) == [0.97, 0.98, 0.99]
    assert list(names["infeasible (clean-accuracy constraint)"].x) == [0.90]
    assert list(names["recommended"].x) == [0.98] and list(names["recommended"].y) == [0.10]
    assert figure.layout.xaxis.title.text == ACCURACY_TITLE
    assert figure.layout.yaxis.title.text == SLOPE_TITLE
    path = write_html(figure, tmp_path / "p.html")
    text = path.read_text()
    assert "Pareto front" in text
    assert "<script src=\"https://cdn.plot.ly" not in text and len(text) > 1_000_000  # embedded: opens offline


def test_unconstrained_figure_has_no_infeasible_trace() -> None:
    study = _study([(0.9, 0.1, None), (0.8, 0.05, None), (0.7, 0.2, None)])
    names = {trace.name for trace in pareto_figure(study).data}
    assert names == {"Pareto front", "dominated"}


def test_pareto_figure_needs_two_objectives() -> None:
    study = optuna.create_study()
    with pytest.raises(ValueError, match="study must have two objectives"):
        pareto_figure(study)
