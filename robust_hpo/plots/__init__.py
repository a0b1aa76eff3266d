"""Plotly figures: the study's Pareto front and the analysis toolkit's figures; standalone HTML files.

Imports plotly; nothing in the numerical packages imports this one.
"""

from __future__ import annotations

from robust_hpo.plots._analysis import (
    curves_figure,
    deviation_figure,
    explanation_figure,
    grid_figure,
    influence_figure,
    verification_figure,
)
from robust_hpo.plots._html import write_html
from robust_hpo.plots._pareto import ACCURACY_TITLE, SLOPE_TITLE, pareto_figure

__all__ = [
    "ACCURACY_TITLE",
    "SLOPE_TITLE",
    "curves_figure",
    "deviation_figure",
    "explanation_figure",
    "grid_figure",
    "influence_figure",
    "pareto_figure",
    "verification_figure",
    "write_html",
]
