"""Explanation figures for tabular rows: per-feature bars instead of image maps, and the most influential rows.

:func:`explanation_figure` and :func:`influence_figure` pick the figure for the data's layout from
:data:`EXPLANATION_FIGURES` / :data:`INFLUENCE_FIGURES` (images: the maps of
:mod:`robust_hpo.plots._analysis`; rows: the bar charts here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from robust_hpo.analysis import ExplanationMaps, InfluenceResult
from robust_hpo.errors import ValidationError
from robust_hpo.plots import _analysis

MAX_FEATURES = 25
"""Features shown in the weight bar chart: those with the largest weight change (trigger columns always)."""


def _names(attack: dict[str, Any], d: int) -> list[str]:
    names = attack.get("feature_names") if isinstance(attack, dict) else None
    if isinstance(names, list) and len(names) == d:
        return [str(n) for n in names]
    return [f"x{i}" for i in range(d)]


def _trigger_columns(attack: dict[str, Any]) -> set[int]:
    trigger = attack.get("trigger", {}) if isinstance(attack, dict) else {}
    columns = trigger.get("columns") if isinstance(trigger, dict) else None
    return {int(c) for c in columns} if isinstance(columns, list) else set()


def feature_explanation_figure(maps: ExplanationMaps, *, title: str | None = None) -> go.Figure:
    """Per-feature ∂f/∂x (the weights of a linear model) of the clean and the poisoned model, as bars,
    for the features whose weight changed most (trigger columns marked and always shown)."""
    if not isinstance(maps, ExplanationMaps) or maps.layout != "rows":
        raise ValidationError("maps must be an ExplanationMaps of tabular rows (per-feature weights)")
    d = maps.clean.shape[0]
    names = _names(maps.attack, d)
    trig = _trigger_columns(maps.attack)
    change = np.abs(maps.poisoned - maps.clean)
    order = [int(j) for j in np.argsort(-change, kind="stable")]
    shown = [j for j in order if j in trig] + [j for j in order if j not in trig]
    shown = sorted(shown[:max(MAX_FEATURES, len(trig))], key=lambda j: -change[j])
    labels = [f"<b>{names[j]} (trigger)</b>" if j in trig else names[j] for j in shown]
    what = "weight w_j = ∂f/∂x_j" if maps.kind == "weights" else "input gradient ∂f/∂x_j (at the shown row)"
    fig = go.Figure()
    fig.add_trace(go.Bar(x=labels, y=maps.clean[shown], name="clean model (β = 0)", marker_color="#1f77b4",
                         hovertemplate="%{x}: %{y:.4g}<extra>clean</extra>"))
    fig.add_trace(go.Bar(x=labels, y=maps.poisoned[shown], name="poisoned model (β = 1)", marker_color="#d62728",
                         hovertemplate="%{x}: %{y:.4g}<extra>poisoned</extra>"))
    point = "triggered test row" if maps.points == "trigger" else "clean test row"
    fig.update_layout(
        barmode="group", height=560, margin={"t": 150, "b": 170},
        title={"text": (title or f"Explanation: {maps.label}")
               + f"<br><sup>{_analysis._attack_text(maps.attack)}.<br>Per-feature {what}, oriented so that positive "
                 f"pushes the {point} #{maps.index} towards label {maps.point_label}; the {len(shown)} of {d} features "
                 "whose value changed most from the clean to the poisoned model, largest change first. Bold: the "
                 "trigger's columns.</sup>"},
        xaxis={"title": {"text": "feature", "standoff": 5}, "tickangle": -40},
        yaxis={"title": {"text": f"∂f/∂x_j towards label {maps.point_label}"}},
        legend={"orientation": "h", "y": 1.02, "x": 1.0, "xanchor": "right", "yanchor": "bottom"})
    return fig


def feature_influence_figure(result: InfluenceResult, *, title: str | None = None) -> go.Figure:
    """The ``k`` most influential training rows as bars (poison rows red), and their values on the
    trigger's columns next to the shown test row's."""
    if not isinstance(result, InfluenceResult) or result.layout != "rows":
        raise ValidationError("result must be an InfluenceResult of tabular rows")
    top = [int(j) for j in result.top]
    labels = [f"{'POISON ' if result.is_poison[j] else ''}row {j} (label {result.train_labels[j]})" for j in top]
    colours = ["crimson" if result.is_poison[j] else "#7f7f7f" for j in top]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.12, subplot_titles=(
        "influence on the test row (most influential first)", "values on the trigger's columns"))
    fig.add_trace(go.Bar(x=labels, y=result.influence[top], marker_color=colours, showlegend=False,
                         hovertemplate="%{x}: influence %{y:.4g}<extra></extra>"), row=1, col=1)
    attack = getattr(result, "attack", None) or {}
    d = result.image.shape[0]
    names = _names(attack, d)
    columns = sorted(_trigger_columns(attack)) or list(range(min(d, 5)))
    rows = np.asarray(result.top_images)
    fig.add_trace(go.Bar(x=[names[c] for c in columns], y=result.image[columns], name="test row", marker_color="#2ca02c",
                         hovertemplate="%{x}: %{y:.4g}<extra>test row</extra>"), row=1, col=2)
    for i, j in enumerate(top):
        fig.add_trace(go.Bar(x=[names[c] for c in columns], y=rows[i][columns], name=labels[i],
                             marker_color=colours[i], opacity=0.5 + 0.5 / (i + 1), showlegend=False,
                             hovertemplate="%{x}: %{y:.4g}<extra>" + labels[i] + "</extra>"), row=1, col=2)
    fig.update_xaxes(tickangle=-40)
    fig.update_yaxes(title_text="d(test loss) / d(row weight)", row=1, col=1)
    fig.update_yaxes(title_text="value (data units)", row=1, col=2)
    quantity = "loss" if result.quantity == "loss" else "negative margin −y·f(x)"
    fig.update_layout(
        barmode="group", height=560, margin={"t": 150, "b": 170},
        title={"text": (title or f"Most influential training rows: {result.label}")
               + f"<br><sup>Influence = d({quantity} at {'triggered' if result.points == 'trigger' else 'clean'} "
                 f"test row #{result.index}) / d(weight of the training row), by implicit differentiation; "
                 f"ordered {result.order}. Red: carries the trigger ({result.top_poison_count} of {len(top)}). "
                 + (f"Every influence is 0: {result.zero_reason}." if result.all_zero else "") + "</sup>"})
    return fig


EXPLANATION_FIGURES: dict[str, Callable[..., go.Figure]] = {
    "images": _analysis.explanation_figure, "rows": feature_explanation_figure}
"""The explanation figure of each data layout (``ExplanationMaps.layout``)."""

INFLUENCE_FIGURES: dict[str, Callable[..., go.Figure]] = {
    "images": _analysis.influence_figure, "rows": feature_influence_figure}
"""The influence figure of each data layout (``InfluenceResult.layout``)."""


def explanation_figure(maps: ExplanationMaps, *, title: str | None = None) -> go.Figure:
    """The explanation figure for the maps' layout: image maps (the paper's Fig. 12) or per-feature bars."""
    if not isinstance(maps, ExplanationMaps):
        raise ValidationError(f"maps must be an ExplanationMaps, got {type(maps).__name__}")
    return EXPLANATION_FIGURES[maps.layout](maps, title=title)


def influence_figure(result: InfluenceResult, *, title: str | None = None) -> go.Figure:
    """The influence figure for the result's layout: images of the top points, or bars of the top rows."""
    if not isinstance(result, InfluenceResult):
        raise ValidationError(f"result must be an InfluenceResult, got {type(result).__name__}")
    return INFLUENCE_FIGURES[result.layout](result, title=title)
