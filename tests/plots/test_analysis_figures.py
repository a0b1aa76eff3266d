"""Heatmaps and the verification figure: values in cells, empty cells visibly empty, colour scales that fit
the data, the robust region and the recommendation marked, log axes where values span decades."""

from __future__ import annotations

import numpy as np
import pytest

from robust_hpo.analysis import VerificationReport, VerifiedTrial, bin_trials, robust_region, slope_backdoor_spearman
from robust_hpo.plots import grid_figure, verification_figure


def _trial(number: int, C: float, gamma: float | None, slope: float, clean: float, backdoor: float,
           learner: str = "rbf_svm") -> VerifiedTrial:
    params = {"C": C} if gamma is None else {"C": C, "gamma": gamma}
    return VerifiedTrial(number=number, learner=learner, params=params, slope=slope, clean_accuracy=clean,
                         poisoned_clean_accuracy=clean, backdoor_accuracy=backdoor,
                         candidate=clean >= 0.95)  # the recommendation's candidates: within 0.02 of the best


TRIALS = [
    _trial(0, 0.1, 1e-3, 0.0005, 0.70, 0.10),
    _trial(1, 0.1, 1e-3, 0.0007, 0.74, 0.14),
    _trial(2, 100.0, 1e-3, 0.02, 0.95, 0.30),
    _trial(3, 100.0, 1.0, 0.6, 0.97, 0.95),
    _trial(4, 30.0, 1.0, 0.004, 0.95, 0.12),
]


def _heatmaps(figure):
    return [t for t in figure.data if t.type == "heatmap" and t.showscale is not False]


def test_heatmap_cells_show_values_and_empty_cells_say_so() -> None:
    grid = bin_trials(TRIALS, learner="rbf_svm", n_bins=2)
    figure = grid_figure(grid)
    clean, backdoor, slope = _heatmaps(figure)
    assert clean.texttemplate == "%{text}"
    # bins: (γ low, C low) holds trials 0 and 1 -> mean 0.72; (γ low, C high) trial 2; (γ high, C high) 3 and 4;
    # (γ high, C low) none
    assert clean.text[0][0] == "0.72" and clean.text[0][1] == "0.95" and clean.text[1][1] == "0.96"
    assert np.isnan(clean.z[1][0]) and clean.text[1][0] == ""
    empty = [t for t in figure.data if t.type == "heatmap" and t.showscale is False]
    assert len(empty) == 3 and all(t.text[1][0] == "no trial" and t.text[0][0] == "" for t in empty)
    assert empty[0].colorscale[0][1] != clean.colorscale[0][1]  # grey, not a value's colour
    # each scale spans its own data, not a fixed 0..1 (or -1..1)
    assert (clean.zmin, clean.zmax) == pytest.approx((0.72, 0.96))
    assert (backdoor.zmin, backdoor.zmax) == pytest.approx((0.12, 0.535))


def test_slope_colours_are_logarithmic_when_slopes_span_decades() -> None:
    grid = bin_trials(TRIALS, learner="rbf_svm", n_bins=2)
    slope = _heatmaps(grid_figure(grid))[2]
    np.testing.assert_allclose(slope.z[0][0], np.log10(0.0006))
    assert slope.text[0][0] == "0.0006"  # the value itself in the cell
    assert "0.001" in list(slope.colorbar.ticktext) and "0.1" in list(slope.colorbar.ticktext)


def test_robust_region_and_recommendation_are_marked() -> None:
    grid = bin_trials(TRIALS, learner="rbf_svm", n_bins=2)
    robust = robust_region(TRIALS, max_backdoor=0.2)
    assert [t.number for t in robust] == [4]
    cells = grid.cells_of([t.number for t in robust])
    assert cells == {(1, 1)}
    figure = grid_figure(grid, robust_cells=cells, recommended_cell=(0, 1), robust_rule="rule X")
    frames = [s for s in figure.layout.shapes if s.line.color == "#00a000"]
    assert len(frames) == 3 and {(s.x0, s.y0) for s in frames} == {(0.5, 0.5)}  # one per panel, cell (1, 1)
    assert all(h.text[0][1].startswith("★ ") for h in _heatmaps(figure))
    assert "green frame: robust region (rule X)" in figure.layout.title.text


def test_spearman_over_bins_says_bins_and_also_gives_the_trials() -> None:
    grid = bin_trials(TRIALS, learner="rbf_svm", n_bins=2)
    rho, _, note = grid.spearman()
    assert note == "over 3 bins (cell means)"
    t_rho, _, t_note = slope_backdoor_spearman([t.slope for t in TRIALS], [t.backdoor_accuracy for t in TRIALS],
                                               unit="trials")
    assert grid.trial_spearman == (t_rho, pytest.approx(grid.trial_spearman[1]), "over 5 trials")
    title = grid_figure(grid).layout.title.text
    assert f"over bins = {rho:.3f} (over 3 bins (cell means)); over the trials themselves {t_rho:.3f}" in title


def test_c_only_learners_get_accuracy_and_log_slope_panels() -> None:
    trials = [_trial(i, C, None, s, 0.9, b, learner="logistic")
              for i, (C, s, b) in enumerate([(0.001, 0.0002, 0.3), (0.01, 0.003, 0.4), (10.0, 0.5, 0.9)])]
    grid = bin_trials(trials, learner="logistic", n_bins=4)
    figure = grid_figure(grid, robust_cells={(0, 0)})
    assert figure.layout.yaxis2.type == "log"
    lines = [t for t in figure.data if t.mode and "lines" in t.mode]
    assert len(lines) == 3 and all(t.connectgaps is False for t in lines)
    empty = int(np.flatnonzero(grid.counts[0] == 0)[0])  # bin 3 of 4: a gap in every line, no mark at 0
    assert all(np.isnan(t.y[empty]) for t in lines)
    assert not any(0.0 in [v for v in t.y if v is not None and np.isfinite(v)] for t in figure.data if t.y is not None)
    assert all(t.text is None for t in figure.data)  # no value labels to clip or overlap: hover and the ★ entry
    assert len(figure.layout.shapes) == 2  # the robust bin shaded in both panels
    assert "gap in a line: no trial" in figure.layout.title.text and "Colours: green" not in figure.layout.title.text
    ticks = list(figure.layout.xaxis2.ticktext)  # whole numbers at each decade, never a bare "2" or "5"
    assert len(ticks) >= 2 and set(ticks) <= {"0.001", "0.01", "0.1", "1", "10"}
    assert [float(t) for t in ticks] == list(figure.layout.xaxis2.tickvals)


def test_c_only_bins_below_the_constraint_are_greyed_out() -> None:
    trials = [_trial(i, C, None, s, a, b, learner="logistic")
              for i, (C, s, a, b) in enumerate([(0.001, 0.0002, 0.5, 0.5), (0.1, 0.003, 0.97, 0.1),
                                                (10.0, 0.5, 0.98, 0.9)])]
    grid = bin_trials(trials, learner="logistic", n_bins=3)
    figure = grid_figure(grid, min_accuracy=0.9)
    grey = [s for s in figure.layout.shapes if s.fillcolor == "#d4d4d4"]
    assert len(grey) == 2 and all(s.x0 < grid.C[0] < s.x1 < grid.C[1] for s in grey)  # C = 0.001 bin, both panels
    assert "grey band: the clean model's accuracy is below the constraint 0.9" in figure.layout.title.text


def test_heatmap_cells_below_the_constraint_are_grey_in_the_backdoor_and_slope_panels() -> None:
    grid = bin_trials(TRIALS, learner="rbf_svm", n_bins=2)  # bin (γ low, C low): trials 0, 1 at accuracy 0.72
    figure = grid_figure(grid, min_accuracy=0.9)
    clean, backdoor, slope = _heatmaps(figure)
    assert np.isfinite(clean.z[0][0])  # the accuracy panel still shows why
    assert np.isnan(backdoor.z[0][0]) and np.isnan(slope.z[0][0])  # left out of the colour scales ...
    assert backdoor.zmin == pytest.approx(0.30)  # ... which span the admissible cells only (0.30 .. 0.535)
    grey = [t for t in figure.data if t.type == "heatmap" and t.showscale is False and "not admissible" in
            (t.hovertemplate or "")]
    assert len(grey) == 2 and all(t.text[0][0].endswith("acc. 0.72") and t.text[0][1] == "" for t in grey)
    assert "grey cells in the backdoor and slope panels" in figure.layout.title.text
    assert not [t for t in grid_figure(grid).data if "not admissible" in (t.hovertemplate or "")]


def _report(slopes: list[float]) -> VerificationReport:
    trials = tuple(_trial(i, 1.0 + i, 0.1, s, 0.95, min(1.0, 0.1 + i / 10)) for i, s in enumerate(slopes))
    rho, p, note = slope_backdoor_spearman([t.slope for t in trials], [t.backdoor_accuracy for t in trials])
    return VerificationReport(trials=trials, spearman=rho, pvalue=p, spearman_note=note, robust=trials[-1:],
                              tolerance=0.01, max_backdoor=0.2, which="all")


def test_verification_slope_axis_is_logarithmic_when_slopes_span_decades() -> None:
    figure = verification_figure(_report([1e-5, 1e-4, 1e-3, 0.01, 0.5]), recommended=2)
    assert figure.layout.xaxis.type == "log" and figure.layout.xaxis2.type == "log"
    ring = next(t for t in figure.data if t.name == "recommended: trial 2")
    assert list(ring.x) == [1e-3] and ring.marker.symbol == "circle-open"
    assert verification_figure(_report([0.2, 0.3, 0.5])).layout.xaxis.type == "linear"
    assert list(figure.layout.xaxis.ticktext) == ["1e-5", "0.0001", "0.001", "0.01", "0.1", "1"]


def test_one_colour_per_learner_in_every_figure() -> None:
    from robust_hpo.plots import learner_color

    trials = (_trial(0, 1.0, 0.1, 0.01, 0.97, 0.2), _trial(1, 1.0, None, 0.02, 0.96, 0.5, learner="logistic"))
    report = VerificationReport(trials=trials, spearman=None, pvalue=None, spearman_note="", robust=(),
                                tolerance=0.02, max_backdoor=0.2, which="all")
    colours = {t.name.split(" ")[0]: t.marker.color for t in verification_figure(report).data if "Spearman" in t.name}
    assert colours["rbf_svm"] == learner_color("rbf_svm") != colours["logistic"] == learner_color("logistic")


def test_verification_pins_non_positive_slopes_on_a_log_axis() -> None:
    figure = verification_figure(_report([0.0, 1e-4, 1e-3, 0.5]))
    points = next(t for t in figure.data if t.x and t.x[0] is not None and len(t.x) == 4)
    assert points.x[0] == pytest.approx(1e-4 / 2) and points.marker.symbol[0] == "triangle-left"
    assert any(t.name == "◄ slope ≤ 0 (at the left edge)" for t in figure.data)


def test_the_recommended_configuration_is_drawn_in_gold() -> None:
    from robust_hpo.analysis import DeviationResult
    from robust_hpo.plots import deviation_figure

    betas = np.array([0.0, 0.5, 1.0])
    results = [DeviationResult(label, betas, np.ones(3), np.zeros(3), "euclidean")
               for label in ("trial 3 (recommended): ridge C=1", "trial 5: ridge C=10")]
    lines = {t.name: t.line for t in deviation_figure(results).data if t.name}
    assert lines["trial 3 (recommended): ridge C=1 (Euclidean)"].color == "#e6a700"
    assert lines["trial 3 (recommended): ridge C=1 (Euclidean)"].width > lines["trial 5: ridge C=10 (Euclidean)"].width


def test_curves_and_deviation_colour_configurations_by_learner() -> None:
    """Configurations of one learner share its colour (told apart by marker symbols), in the deviation
    figure as in the Pareto and verification figures; a label naming no built-in learner still gets a colour."""
    from robust_hpo.analysis import DeviationResult
    from robust_hpo.plots import deviation_figure, learner_color

    betas = np.array([0.0, 0.5, 1.0])
    labels = ("trial 5: rbf_svm C=1, gamma=0.1", "trial 6: rbf_svm C=10, gamma=0.01", "trial 7: logistic C=1",
              "my model")
    results = [DeviationResult(label, betas, np.ones(3), np.zeros(3), "euclidean") for label in labels]
    traces = {t.name.rsplit(" (", 1)[0]: t for t in deviation_figure(results).data if t.name}
    rbf_a, rbf_b, logistic = (traces[label] for label in labels[:3])
    assert rbf_a.line.color == rbf_b.line.color == learner_color("rbf_svm")
    assert rbf_a.marker.symbol != rbf_b.marker.symbol
    assert logistic.line.color == learner_color("logistic")
    assert traces["my model"].line.color not in (None, learner_color("rbf_svm"), learner_color("logistic"))
