"""The Pareto figure: zoomed on the feasible trials, a joined front of its own colour, the recommendation
ringed (not hidden), short hover tables, a log slope axis where slopes span decades; shared plotly.js."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import create_trial

from robust_hpo.objective import RECORD_ATTR
from robust_hpo.plots import ACCURACY_TITLE, SLOPE_TITLE, pareto_figure, plotly_bundle_name, write_html
from robust_hpo.study import recommend
from robust_hpo.testing import synthetic_study as _study

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _traces(figure, panel: str = "x"):
    """The traces of one panel by name (``"x"``: the slope panel, ``"x2"``: the estimate panel)."""
    return {trace.name: trace for trace in figure.data if (trace.xaxis or "x") == panel}


def test_front_is_joined_distinct_and_the_recommendation_ringed() -> None:
    study = _study()
    recommendation = recommend(study, 0.02)
    figure = pareto_figure(study, recommended=recommendation.trial)
    names = _traces(figure)
    assert set(names) == {"Pareto front (3 trials)", "logistic (dominated)",
                          "infeasible (constraint violated): 1, pinned left", "recommended: trial 1"}
    front = names["Pareto front (3 trials)"]
    assert list(front.x) == [0.97, 0.98, 0.99]  # by accuracy, joined as a staircase
    assert "lines" in front.mode and front.line.shape == "vh"
    dominated = names["logistic (dominated)"]
    assert front.marker.color == front.line.color != dominated.marker.color  # its own colour in legend and plot
    ring = names["recommended: trial 1"]
    assert list(ring.x) == [0.98] and list(ring.y) == [0.10]
    assert ring.marker.symbol == "circle-open"  # the point stays visible inside the ring
    assert any("recommended: trial 1" in (a.text or "") for a in figure.layout.annotations)
    assert figure.layout.xaxis.title.text == ACCURACY_TITLE
    assert figure.layout.yaxis.title.text == SLOPE_TITLE


def test_axes_zoom_on_the_feasible_trials_and_infeasible_ones_are_pinned() -> None:
    study = _study()
    figure = pareto_figure(study)
    lo, hi = figure.layout.xaxis.range
    assert 0.90 < lo < 0.95 and hi > 0.99  # the infeasible trial (accuracy 0.90) does not stretch the axis
    infeasible = next(t for t in figure.data if t.name.startswith("infeasible"))
    assert lo < infeasible.x[0] < 0.95  # drawn at the left edge
    assert infeasible.customdata[0][4] == "0.9000"  # its true accuracy in the hover table


def test_axis_and_hover_follow_the_studys_objective() -> None:
    study = _study()
    study.set_metric_names(["clean_accuracy", "predicted_backdoor_accuracy"])
    figure = pareto_figure(study)
    assert figure.layout.yaxis.title.text == "predicted backdoor accuracy at β = 1 (lower = more robust)"
    row = next(t for t in figure.data if t.name.startswith("Pareto front")).customdata[0]
    assert row[5].startswith("predicted backdoor accuracy ") and "slope " in row[3]


def test_hover_is_a_short_table_with_the_predicted_backdoor_accuracy() -> None:
    study = _study()
    study.add_trial(create_trial(
        values=[0.985, 0.2], params={"learner": "rbf_svm", "rbf_svm.C": 2.0, "rbf_svm.gamma": 0.01},
        distributions={"learner": CategoricalDistribution(["logistic", "rbf_svm"]),
                       "rbf_svm.C": FloatDistribution(1e-3, 1e3, log=True),
                       "rbf_svm.gamma": FloatDistribution(1e-4, 10.0, log=True)},
        user_attrs={RECORD_ATTR: {"format": 1, "slope": 0.2, "predicted_backdoor_accuracy": 0.4375}},
        system_attrs={"constraints:clean_accuracy": -0.01, "constraints": [-0.01]}))
    figure = pareto_figure(study)
    rows = [row for t in figure.data if t.customdata is not None for row in t.customdata]
    row = next(r for r in rows if r[0] == f"trial {study.trials[-1].number}")
    assert row[1] == "rbf_svm" and row[2] == "C=2, gamma=0.01" and row[4] == "0.9850" and row[5] == "slope 0.2"
    assert "predicted backdoor accuracy 0.438" in row[3]
    for t in figure.data:
        if t.customdata is not None:
            assert "clean accuracy" in t.hovertemplate
            assert all(r[5].startswith("slope ") for r in t.customdata)
            assert all("{" not in cell for r in t.customdata for cell in r)  # no JSON dump


@pytest.mark.parametrize(("slopes", "log"), [((0.5, 0.2, 0.001), True), ((0.5, 0.3, 0.2), False)])
def test_slope_axis_is_logarithmic_when_slopes_span_decades(slopes, log) -> None:
    study = _study([(0.99, slopes[0], None), (0.98, slopes[1], None), (0.97, slopes[2], None)])
    figure = pareto_figure(study)
    assert (figure.layout.yaxis.type == "log") is log


def test_unconstrained_figure_has_no_infeasible_trace() -> None:
    study = _study([(0.9, 0.1, None), (0.8, 0.05, None), (0.7, 0.2, None)])
    names = set(_traces(pareto_figure(study)))
    assert names == {"Pareto front (2 trials)", "logistic (dominated)"}


def test_the_recommendation_sits_on_the_front_of_the_estimate_panel_with_its_numbers() -> None:
    """Right panel: accuracy against the estimated backdoor accuracy; the front on those axes holds the
    recommendation (chosen by that estimate), which the slope front need not; the deciding numbers of the
    recommended and the most accurate trial are written in the figure."""
    study = _study()
    recommendation = recommend(study, 0.02)
    figure = pareto_figure(study, recommended=recommendation.trial, tolerance=0.02)
    right = _traces(figure, "x2")
    front = right["front on estimated backdoor accuracy (3 trials)"]
    assert list(zip(front.x, front.y, strict=True)) == [(0.95, 0.05), (0.98, 0.20), (0.99, 0.60)]  # 2 is dominated
    ring = right["recommended: trial 1"]
    assert (ring.x[0], ring.y[0]) in set(zip(front.x, front.y, strict=True))
    assert figure.layout.xaxis2.title.text == ACCURACY_TITLE and "estimated backdoor accuracy" in \
        figure.layout.yaxis2.title.text
    texts = [a.text or "" for a in figure.layout.annotations]
    rec = next(t for t in texts if t.startswith("<b>recommended: trial 1</b><br>"))
    assert "clean accuracy 0.980" in rec and "est. backdoor accuracy <b>0.20</b>" in rec and "clean model 0.10" in rec
    best = next(t for t in texts if t.startswith("<b>most accurate: trial 0</b>"))
    assert "clean accuracy 0.990" in best and "<b>0.60</b>" in best
    band = [s for s in figure.layout.shapes if s.fillcolor == "#fff1c2"]  # the candidates: accuracy ≥ 0.99 − 0.02
    assert len(band) == 1 and band[0].x0 == pytest.approx(0.97) and band[0].xref == "x2"
    assert any(s.y0 == s.y1 == 0.5 and s.yref == "y2" for s in figure.layout.shapes)  # the "vulnerable" line


def test_the_estimate_panel_is_left_out_without_estimates_or_when_it_is_the_objective() -> None:
    without = _study([(0.99, 0.3, None), (0.98, 0.1, None)])
    assert not _traces(pareto_figure(without), "x2")
    study = _study()
    study.set_metric_names(["clean_accuracy", "predicted_backdoor_accuracy"])
    assert not _traces(pareto_figure(study), "x2")


def test_log_slope_axis_labels_are_whole_numbers() -> None:
    study = _study([(0.99, 0.5, None, 0.2), (0.98, 0.02, None, 0.1), (0.97, 0.001, None, 0.3)])
    axis = pareto_figure(study).layout.yaxis
    assert axis.type == "log" and list(axis.ticktext) == ["0.001", "0.01", "0.1", "1"]
    assert list(axis.tickvals) == [0.001, 0.01, 0.1, 1.0] and 0.002 in axis.minor.tickvals  # unlabelled minor ticks


def test_pareto_figure_needs_two_objectives() -> None:
    study = optuna.create_study()
    with pytest.raises(ValueError, match="study must have two objectives"):
        pareto_figure(study)


def test_figures_in_one_folder_share_one_plotly_js(tmp_path: Path) -> None:
    figure = pareto_figure(_study())
    first = write_html(figure, tmp_path / "a.html")
    second = write_html(figure, tmp_path / "b.html")
    scripts = list(tmp_path.glob("*.js"))
    assert [p.name for p in scripts] == [plotly_bundle_name()] and scripts[0].stat().st_size > 1_000_000
    for page in (first, second):
        text = page.read_text()
        assert page.is_absolute() and f'<script charset="utf-8" src="{plotly_bundle_name()}">' in text
        assert "cdn.plot.ly" not in text and len(text) < 200_000  # opens offline, without its own copy
    standalone = write_html(figure, tmp_path / "alone" / "c.html", standalone=True)
    assert standalone.stat().st_size > 1_000_000 and not list(standalone.parent.glob("*.js"))


def test_the_number_boxes_of_the_estimate_panel_never_overlap() -> None:
    """Two boxes beside points of close estimates (0.61 and 0.88, the case that overlapped) are pushed a
    box height apart; a point near the left edge gets its box on the right."""
    from robust_hpo.plots._pareto import _PX_PER_UNIT, _label_offsets

    (ax1, ay1), (ax2, ay2) = _label_offsets([(0.99, 0.61), (1.0, 0.88)], [0.96, 1.004])
    box_centres = [0.61 - ay1 / _PX_PER_UNIT, 0.88 - ay2 / _PX_PER_UNIT]
    assert box_centres[1] - box_centres[0] >= 0.25 - 1e-9 and all(0.1 <= c <= 0.9 for c in box_centres)
    assert ax1 < 0 and ax2 < 0  # room on the left of both
    ((ax, _),) = _label_offsets([(0.961, 0.1)], [0.96, 1.004])
    assert ax > 0


def test_front_labels_do_not_sit_on_each_other() -> None:
    from robust_hpo.plots._pareto import _text_positions

    # three front points a hair apart: the second and third labels move off the first
    positions = _text_positions([(0.970, 0.010), (0.971, 0.0101), (0.972, 0.0102)], [0.96, 1.0], [-3.0, 0.0], True)
    assert len(set(positions)) == 3  # three different sides, none over another label or point
    # far apart: all to the right of their point
    assert set(_text_positions([(0.97, 0.001), (0.99, 0.1)], [0.96, 1.0], [-3.0, 0.0], True)) == {"middle right"}
