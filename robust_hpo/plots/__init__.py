"""Plotly figures: the study's Pareto front and the analysis toolkit's figures, written as HTML pages.

Figures load one shared plotly.js per folder (:func:`write_html`); :func:`write_index` writes the
folder's ``index.html``. Imports plotly; nothing in the numerical packages imports this one.
"""

from __future__ import annotations

from robust_hpo.plots._analysis import curves_figure, deviation_figure, grid_figure, verification_figure
from robust_hpo.plots._features import (
    explanation_figure,
    feature_explanation_figure,
    feature_influence_figure,
    influence_figure,
)
from robust_hpo.plots._answer import (
    VULNERABLE_AT,
    answer_lines,
    configuration,
    is_vulnerable,
    short_rule,
    trial_summary,
)
from robust_hpo.plots._html import PLOTLY_CONFIG, plotly_bundle_name, write_html
from robust_hpo.plots._index import INDEX_HTML, answer_html, describe_output, write_index
from robust_hpo.plots._pareto import ACCURACY_TITLE, OBJECTIVE_TITLES, SLOPE_TITLE, pareto_figure
from robust_hpo.plots._style import LEARNER_COLORS, learner_color, log_axis

__all__ = [
    "ACCURACY_TITLE",
    "INDEX_HTML",
    "LEARNER_COLORS",
    "OBJECTIVE_TITLES",
    "PLOTLY_CONFIG",
    "SLOPE_TITLE",
    "VULNERABLE_AT",
    "answer_html",
    "answer_lines",
    "configuration",
    "curves_figure",
    "describe_output",
    "deviation_figure",
    "explanation_figure",
    "feature_explanation_figure",
    "feature_influence_figure",
    "grid_figure",
    "influence_figure",
    "is_vulnerable",
    "learner_color",
    "log_axis",
    "pareto_figure",
    "plotly_bundle_name",
    "short_rule",
    "trial_summary",
    "verification_figure",
    "write_html",
    "write_index",
]
