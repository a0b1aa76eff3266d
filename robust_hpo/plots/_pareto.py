"""The Pareto figure: clean accuracy (↑, x) against the backdoor learning slope (↓, y).

The second objective is the study's (its second metric name: the slope by default, or the predicted
backdoor accuracy or normalised margin); "slope" below stands for it. What a reader sees:

* the axes span the **feasible** trials (clean-accuracy constraint met), so the front is not squeezed
  into a corner by a few useless configurations; infeasible trials are drawn compactly as small grey
  ◄ markers pinned to the left edge (hover shows their true accuracy), and the constraint threshold
  is a dotted line when it falls inside the axes;
* the slope axis is logarithmic when the feasible slopes span more than a decade (non-positive slopes
  are pinned to the floor as ▼);
* dominated feasible trials are small, pale and coloured by learner family;
* the **Pareto front** is one colour (crimson), larger, labelled with trial numbers and joined by its
  staircase (the lowest slope reachable at each accuracy);
* the **recommended** trial is ringed in gold (the point stays visible) and named in an annotation;
* hovering any point shows a short table: trial, learner, hyperparameters, clean accuracy, the objective,
  and from the trial's record (:func:`robust_hpo.objective.trial_record`) the slope and the predicted
  backdoor accuracy when it has them.

Feasibility and the front follow Optuna's rules (``study.best_trials`` with constraints).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState

from robust_hpo.errors import ValidationError
from robust_hpo.objective import is_feasible, trial_record
from robust_hpo.plots._text import wrap
from robust_hpo.search_space import format_values, learner_config

__all__ = ["ACCURACY_TITLE", "OBJECTIVE_TITLES", "SLOPE_TITLE", "pareto_figure"]

ACCURACY_TITLE = "clean test accuracy (higher is better)"
SLOPE_TITLE = "backdoor learning slope, normalised (lower = more robust)"
OBJECTIVE_TITLES = {
    "slope": SLOPE_TITLE,
    "predicted_backdoor_accuracy": "predicted backdoor accuracy at β = 1 (lower = more robust)",
    "normalised_margin": "normalised target margin at β = 1 (lower = more robust)",
}
"""The second axis's title for each objective a study may minimise (its second metric name)."""

FRONT_COLOR = "crimson"
RECOMMENDED_COLOR = "#e6a700"
INFEASIBLE_COLOR = "#9a9a9a"
LEARNER_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f")
"""Learner colours of dominated trials (no red: red is the front's)."""

def _hover_row(trial: FrozenTrial, role: str, objective: str) -> list[str]:
    try:
        learner, params = learner_config(trial.params)
        config = format_values(params) or "(no hyperparameters)"
    except ValidationError:
        learner, config = "?", ", ".join(f"{k}={v}" for k, v in trial.params.items())
    record = trial_record(trial)
    extra = ""
    if objective != "slope" and record.slope is not None:
        extra += f"<br>slope {record.slope:.4g}"
    if objective != "predicted_backdoor_accuracy" and record.predicted_backdoor_accuracy is not None:
        extra += f"<br>predicted backdoor accuracy {record.predicted_backdoor_accuracy:.3f}"
    return [f"trial {trial.number}", learner, config, role + extra, f"{trial.values[0]:.4f}",
            f"{objective.replace('_', ' ')} {trial.values[1]:.4g}"]


_HOVER = ("<b>%{customdata[0]}</b> · %{customdata[1]}<br>%{customdata[2]}<br>"
          "clean accuracy %{customdata[4]}<br>%{customdata[5]}<br>%{customdata[3]}<extra></extra>")


def _threshold(trials: Sequence[FrozenTrial]) -> float | None:
    """The constraint's accuracy threshold when it is the same for every constrained trial
    (``min_accuracy``): constraint value = threshold − accuracy."""
    values = {round(float(t.values[0]) + float(t.constraints["clean_accuracy"]), 9)
              for t in trials if "clean_accuracy" in t.constraints}
    return values.pop() if len(values) == 1 else None


def pareto_figure(study: optuna.Study, *, recommended: FrozenTrial | None = None, title: str | None = None,
                  recommendation_note: str | None = None) -> go.Figure:
    """The study's trials, front and recommendation (see the module docstring for what is drawn).

    ``recommendation_note`` is one line under the title saying why the recommended trial was chosen.
    """
    if len(study.directions) != 2:
        raise ValidationError(f"study must have two objectives (clean accuracy, slope), got {len(study.directions)}")
    objective = list(study.metric_names or ["clean_accuracy", "slope"])[-1]
    what = objective.replace("_", " ")
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    front = sorted(study.best_trials, key=lambda t: t.values[0])
    front_numbers = {t.number for t in front}
    feasible = [t for t in complete if is_feasible(t)]
    infeasible = [t for t in complete if not is_feasible(t)]
    dominated = [t for t in feasible if t.number not in front_numbers]
    constrained = any(t.constraints for t in complete)
    threshold = _threshold(complete)
    shown = feasible or complete

    # x: the feasible trials (and the threshold when it is near them), a little padded.
    acc = np.array([t.values[0] for t in shown], dtype=float) if shown else np.array([0.0, 1.0])
    lo, hi = float(acc.min()), float(acc.max())
    if threshold is not None and infeasible and threshold >= lo - 0.5 * max(hi - lo, 0.02):
        lo = min(lo, threshold)
    pad = max(0.04 * (hi - lo), 0.004)
    x_range = [lo - 2.5 * pad, hi + pad]
    x_pin = lo - 1.5 * pad  # where infeasible trials are drawn

    # y: log when the feasible slopes span more than a decade.
    slopes = np.array([t.values[1] for t in shown], dtype=float) if shown else np.array([0.0, 1.0])
    positive = slopes[slopes > 0]
    log_y = positive.size >= 2 and float(positive.max() / positive.min()) > 10.0
    if log_y:
        y_lo, y_hi = math.log10(positive.min()), math.log10(positive.max())
        y_pad = 0.06 * max(y_hi - y_lo, 0.5)
        y_floor = 10 ** (y_lo - 0.6 * y_pad)
        y_range: list[float] = [y_lo - y_pad, y_hi + y_pad]
    else:
        s_lo, s_hi = float(slopes.min()), float(slopes.max())
        y_pad = 0.06 * max(s_hi - s_lo, 1e-3)
        y_floor = s_lo - 0.6 * y_pad
        y_range = [s_lo - y_pad, s_hi + y_pad]

    def y_of(value: float) -> tuple[float, bool]:
        """(y to draw, pinned to the floor?)"""
        low = 10 ** y_range[0] if log_y else y_range[0]
        if (log_y and value <= 0) or value < low:
            return y_floor, True
        return value, False

    fig = go.Figure()
    if threshold is not None and x_range[0] < threshold < x_range[1]:
        fig.add_vrect(x0=x_range[0], x1=threshold, fillcolor="#eeeeee", opacity=0.6, line_width=0, layer="below")
        fig.add_vline(x=threshold, line={"color": INFEASIBLE_COLOR, "dash": "dot", "width": 1.5},
                      annotation_text=f"constraint: accuracy ≥ {threshold:g}", annotation_position="top left",
                      annotation_font={"color": "#666", "size": 11})

    learners = sorted({t.params.get("learner", "?") for t in dominated})
    for i, learner in enumerate(learners):
        mine = [t for t in dominated if t.params.get("learner", "?") == learner]
        ys = [y_of(t.values[1]) for t in mine]
        fig.add_trace(go.Scatter(
            x=[t.values[0] for t in mine], y=[y for y, _ in ys], mode="markers",
            name=f"{learner} (dominated)", legendgroup="dominated",
            legendgrouptitle={"text": "feasible, dominated" if constrained else "dominated"},
            marker={"color": LEARNER_COLORS[i % len(LEARNER_COLORS)], "size": 8, "opacity": 0.55,
                    "symbol": ["triangle-down" if pinned else "circle" for _, pinned in ys],
                    "line": {"width": 0.5, "color": "white"}},
            customdata=[_hover_row(t, "dominated", objective) for t in mine], hovertemplate=_HOVER))

    if front:
        ys = [y_of(t.values[1]) for t in front]
        fig.add_trace(go.Scatter(
            x=[t.values[0] for t in front], y=[y for y, _ in ys], mode="markers+text+lines",
            name=f"Pareto front ({len(front)} trial{'s' if len(front) != 1 else ''})", legendgroup="front",
            legendgrouptitle={"text": "best trade-offs"},
            text=["" if recommended is not None and t.number == recommended.number else f"#{t.number}"
                  for t in front], textposition="middle right",
            textfont={"color": FRONT_COLOR, "size": 11},
            line={"color": FRONT_COLOR, "width": 2, "shape": "vh"},  # the staircase: lowest slope per accuracy
            marker={"color": FRONT_COLOR, "size": 12, "line": {"width": 1.5, "color": "white"},
                    "symbol": ["triangle-down" if pinned else "diamond" for _, pinned in ys]},
            customdata=[_hover_row(t, "Pareto front", objective) for t in front], hovertemplate=_HOVER))

    if infeasible:
        ys = [y_of(t.values[1])[0] for t in infeasible]
        rule = f"accuracy < {threshold:g}" if threshold is not None else "constraint violated"
        fig.add_trace(go.Scatter(
            x=[x_pin] * len(infeasible), y=ys, mode="markers",
            name=f"infeasible ({rule}): {len(infeasible)}, pinned left", legendgroup="infeasible",
            legendgrouptitle={"text": "not admissible"},
            marker={"color": INFEASIBLE_COLOR, "size": 7, "symbol": "triangle-left", "opacity": 0.8},
            customdata=[_hover_row(t, f"infeasible ({rule})", objective) for t in infeasible], hovertemplate=_HOVER))

    if recommended is not None and recommended.values:
        y, _ = y_of(recommended.values[1])
        fig.add_trace(go.Scatter(
            x=[recommended.values[0]], y=[y], mode="markers", name=f"recommended: trial {recommended.number}",
            legendgroup="recommended", legendgrouptitle={"text": "choice"},
            marker={"symbol": "circle-open", "size": 26, "color": RECOMMENDED_COLOR, "line": {"width": 3.5}},
            customdata=[_hover_row(recommended, "recommended", objective)], hovertemplate=_HOVER))
        learner = recommended.params.get("learner", "")
        fig.add_annotation(x=recommended.values[0], y=math.log10(y) if log_y else y,
                           text=f"recommended: trial {recommended.number} ({learner})", showarrow=True,
                           arrowhead=2, arrowcolor=RECOMMENDED_COLOR, ax=-70, ay=-45,
                           font={"color": "#7a5a00", "size": 12}, bgcolor="rgba(255,255,255,0.85)")

    counts = (f"{len(complete)} completed trials: {len(feasible)} feasible, {len(infeasible)} infeasible"
              if constrained else f"{len(complete)} completed trials")
    lines = [counts + (" (◄ at the left edge; hover for their accuracy)" if infeasible else "")
             + f". Front: {len(front)} trials, joined by its staircase.",
             (("Slope: how fast training on poisoned points teaches the backdoor (0 = not at all)"
               if objective == "slope" else f"{what.capitalize()}: lower = more robust")
              + ("; log scale" if log_y else "") + f". ▼ = {what} ≤ 0 or below the axis.")]
    if recommendation_note:
        lines += wrap(recommendation_note, 160).split("<br>")
    fig.update_layout(
        title={"text": (title or f"{study.study_name}: clean accuracy vs "
                                 + ("backdoor learning slope" if objective == "slope" else what))
               + "<br><sup>" + "<br>".join(lines) + "</sup>", "y": 1.0, "yanchor": "top", "pad": {"t": 16}},
        xaxis={"title": {"text": ACCURACY_TITLE}, "range": x_range, "zeroline": False},
        yaxis={"title": {"text": OBJECTIVE_TITLES.get(objective, what)}, "type": "log" if log_y else "linear", "range": y_range,
               "zeroline": False},
        template="plotly_white", height=620 + 22 * len(lines), margin={"t": 75 + 22 * len(lines), "r": 30},
        legend={"groupclick": "toggleitem", "yanchor": "top", "y": 1.0, "xanchor": "left", "x": 1.02},
        hoverlabel={"align": "left"})
    return fig
