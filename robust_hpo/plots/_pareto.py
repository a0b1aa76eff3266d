"""The Pareto figure: clean accuracy (↑, x) against the backdoor learning slope (↓, y), and beside it
clean accuracy against the estimated backdoor accuracy after poisoning, where the recommendation is chosen.

The second objective is the study's (its second metric name: the slope by default, or the predicted
backdoor accuracy or normalised margin); "slope" below stands for it. What a reader sees:

* the axes span the **feasible** trials (clean-accuracy constraint met), so the front is not squeezed
  into a corner by a few useless configurations; infeasible trials are drawn compactly as small grey
  ◄ markers pinned to the left edge (hover shows their true accuracy), and the constraint threshold
  is a dotted line when it falls inside the axes;
* the slope axis is logarithmic when the feasible slopes span more than a decade, labelled with whole
  numbers (:func:`robust_hpo.plots._style.log_axis`; non-positive slopes are pinned to the floor as ▼);
* dominated feasible trials are small, pale and coloured by learner family (the same colour in every
  figure: :func:`robust_hpo.plots._style.learner_color`);
* the **Pareto front** is one colour (crimson), larger, labelled with trial numbers and joined by its
  staircase (the lowest slope reachable at each accuracy);
* the **recommended** trial is ringed in gold (the point stays visible) and named with its numbers;
* the second panel (when the trials have an estimate and the objective is not already it) draws the
  same feasible trials against the estimated backdoor accuracy (``predicted_backdoor_accuracy`` of the
  trial's record): the candidates' band (clean accuracy ≥ best − tolerance) shaded, the front on
  these two axes joined in black, the slope front's trials as crimson diamonds, the recommendation
  ringed on that front, and the deciding numbers written beside the recommended and the most
  accurate trial (not only in the hover);
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
from plotly.subplots import make_subplots

from robust_hpo.errors import ValidationError
from robust_hpo.objective import is_feasible, trial_record
from robust_hpo.plots._answer import VULNERABLE_AT
from robust_hpo.plots._style import learner_color, log_axis
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
ESTIMATE_FRONT_COLOR = "#222222"
ESTIMATE_TITLE = "estimated backdoor accuracy after poisoning (lower = more robust)"

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


_POSITIONS = {  # textposition -> the label box's (x0, x1, y0, y1) around its point, in axis fractions
    "middle right": (0.01, 0.07, -0.02, 0.02), "middle left": (-0.07, -0.01, -0.02, 0.02),
    "top center": (-0.03, 0.03, 0.015, 0.055), "bottom center": (-0.03, 0.03, -0.055, -0.015)}


def _text_positions(points: Sequence[tuple[float, float]], x_range: Sequence[float], y_range: Sequence[float],
                    log_y: bool) -> list[str]:
    """A label position per point (right of it unless that box would overlap an earlier label or another
    point, then left, above, below): no two trial labels on top of each other."""
    def frac(x: float, y: float) -> tuple[float, float]:
        y = math.log10(y) if log_y and y > 0 else y
        return ((x - x_range[0]) / max(x_range[1] - x_range[0], 1e-12),
                (y - y_range[0]) / max(y_range[1] - y_range[0], 1e-12))

    where = [frac(x, y) for x, y in points]
    boxes: list[tuple[float, float, float, float]] = []
    out = []
    for i, (px, py) in enumerate(where):
        others = [q for j, q in enumerate(where) if j != i]
        for name, (x0, x1, y0, y1) in _POSITIONS.items():
            box = (px + x0, px + x1, py + y0, py + y1)
            free = all(box[1] < b[0] or b[1] < box[0] or box[3] < b[2] or b[3] < box[2] for b in boxes)
            clear = not any(box[0] <= qx <= box[1] and box[2] <= qy <= box[3] for qx, qy in others)
            if free and clear:
                break
        else:
            name, box = "middle right", (px + 0.01, px + 0.07, py - 0.02, py + 0.02)
        boxes.append(box)
        out.append(name)
    return out


_PX_PER_UNIT = 360.0
"""About how many pixels one unit of estimated backdoor accuracy takes in the right panel."""


def _label_offsets(points: Sequence[tuple[float, float]], x_range: Sequence[float]) -> list[tuple[float, float]]:
    """Arrow offsets ``(ax, ay)`` in pixels for the right panel's number boxes at ``points`` (x = accuracy,
    y = estimate, 0..1): each box beside its point, on the side with room, nudged towards the panel's
    middle, two boxes at least a box height apart, all inside the panel."""
    gap, low, high = 0.25, 0.12, 0.88
    centres = [min(max(y + (0.15 if y < 0.5 else -0.15), low), high) for _, y in points]
    if len(centres) == 2 and abs(centres[0] - centres[1]) < gap:
        order = sorted(range(2), key=lambda i: (points[i][1], i))
        middle = min(max(sum(centres) / 2, low + gap / 2), high - gap / 2)
        centres[order[0]], centres[order[1]] = middle - gap / 2, middle + gap / 2
    width = max(float(x_range[1] - x_range[0]), 1e-9)
    return [(150.0 if (x - x_range[0]) / width < 0.45 else -150.0, -(centre - y) * _PX_PER_UNIT)
            for (x, y), centre in zip(points, centres, strict=True)]


def _estimate_front(trials: Sequence[FrozenTrial], estimates: dict[int, float]) -> list[FrozenTrial]:
    """The trials not dominated in (clean accuracy ↑, estimated backdoor accuracy ↓), by accuracy."""
    points = [(t, float(t.values[0]), estimates[t.number]) for t in trials if t.number in estimates]
    front = [t for t, a, e in points
             if not any(a2 >= a and e2 <= e and (a2 > a or e2 < e) for _, a2, e2 in points)]
    return sorted(front, key=lambda t: (t.values[0], estimates[t.number], t.number))


def pareto_figure(study: optuna.Study, *, recommended: FrozenTrial | None = None, title: str | None = None,
                  recommendation_note: str | None = None, tolerance: float | None = None) -> go.Figure:
    """The study's trials, front and recommendation (see the module docstring for what is drawn).

    ``recommendation_note`` is one line under the title saying why the recommended trial was chosen;
    ``tolerance`` (the recommendation's) shades the candidates' band in the second panel.
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
    records = {t.number: trial_record(t, study.metric_names) for t in complete}
    estimates = {n: float(r.predicted_backdoor_accuracy) for n, r in records.items()
                 if r.predicted_backdoor_accuracy is not None}
    second = objective != "predicted_backdoor_accuracy" and any(t.number in estimates for t in shown)
    most_accurate = max(front, key=lambda t: (t.values[0], -t.values[1], -t.number)) if front else None

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

    left_title = ("clean accuracy vs the slope: the Pareto front" if objective == "slope"
                  else f"clean accuracy vs {what}: the Pareto front")
    fig = make_subplots(rows=1, cols=2 if second else 1, horizontal_spacing=0.09,
                        subplot_titles=(left_title, "clean accuracy vs estimated backdoor accuracy: the recommendation")
                        if second else None)
    if threshold is not None and x_range[0] < threshold < x_range[1]:
        for col in (1, 2) if second else (1,):
            fig.add_vrect(x0=x_range[0], x1=threshold, fillcolor="#eeeeee", opacity=0.6, line_width=0, layer="below",
                          row=1, col=col, exclude_empty_subplots=False)
            fig.add_vline(x=threshold, line={"color": INFEASIBLE_COLOR, "dash": "dot", "width": 1.5}, row=1, col=col,
                          exclude_empty_subplots=False)
        fig.add_annotation(x=threshold, xanchor="right", y=1.0, yref="y domain", yanchor="top", showarrow=False,
                           text=f"constraint:<br>accuracy ≥ {threshold:g}", align="right",
                           font={"color": "#666", "size": 10}, row=1, col=1)

    learners = sorted({t.params.get("learner", "?") for t in feasible})
    for learner in learners:
        mine = [t for t in dominated if t.params.get("learner", "?") == learner]
        if not mine:
            continue
        ys = [y_of(t.values[1]) for t in mine]
        fig.add_trace(go.Scatter(
            x=[t.values[0] for t in mine], y=[y for y, _ in ys], mode="markers",
            name=f"{learner} (dominated)", legendgroup="dominated",
            legendgrouptitle={"text": "feasible, dominated" if constrained else "dominated"},
            marker={"color": learner_color(learner), "size": 8, "opacity": 0.6,
                    "symbol": ["triangle-down" if pinned else "circle" for _, pinned in ys],
                    "line": {"width": 0.5, "color": "white"}},
            customdata=[_hover_row(t, "dominated", objective) for t in mine], hovertemplate=_HOVER), row=1, col=1)

    if front:
        ys = [y_of(t.values[1]) for t in front]
        fig.add_trace(go.Scatter(
            x=[t.values[0] for t in front], y=[y for y, _ in ys], mode="markers+text+lines",
            name=f"Pareto front ({len(front)} trial{'s' if len(front) != 1 else ''})", legendgroup="front",
            legendgrouptitle={"text": "best trade-offs"},
            text=["" if recommended is not None and t.number == recommended.number else f"#{t.number}"
                  for t in front], cliponaxis=False,
            textposition=_text_positions([(t.values[0], y) for t, (y, _) in zip(front, ys, strict=True)],
                                         x_range, y_range, log_y),
            textfont={"color": FRONT_COLOR, "size": 11},
            line={"color": FRONT_COLOR, "width": 2, "shape": "vh"},  # the staircase: lowest slope per accuracy
            marker={"color": FRONT_COLOR, "size": 12, "line": {"width": 1.5, "color": "white"},
                    "symbol": ["triangle-down" if pinned else "diamond" for _, pinned in ys]},
            customdata=[_hover_row(t, "Pareto front", objective) for t in front], hovertemplate=_HOVER), row=1, col=1)

    if infeasible:
        ys = [y_of(t.values[1])[0] for t in infeasible]
        rule = f"accuracy < {threshold:g}" if threshold is not None else "constraint violated"
        fig.add_trace(go.Scatter(
            x=[x_pin] * len(infeasible), y=ys, mode="markers",
            name=f"infeasible ({rule}): {len(infeasible)}, pinned left", legendgroup="infeasible",
            legendgrouptitle={"text": "not admissible"},
            marker={"color": INFEASIBLE_COLOR, "size": 7, "symbol": "triangle-left", "opacity": 0.8},
            customdata=[_hover_row(t, f"infeasible ({rule})", objective) for t in infeasible], hovertemplate=_HOVER),
            row=1, col=1)

    if recommended is not None and recommended.values:
        y, _ = y_of(recommended.values[1])
        fig.add_trace(go.Scatter(
            x=[recommended.values[0]], y=[y], mode="markers", name=f"recommended: trial {recommended.number}",
            legendgroup="recommended", legendgrouptitle={"text": "choice"},
            marker={"symbol": "circle-open", "size": 26, "color": RECOMMENDED_COLOR, "line": {"width": 3.5}},
            customdata=[_hover_row(recommended, "recommended", objective)], hovertemplate=_HOVER), row=1, col=1)
        learner = recommended.params.get("learner", "")
        fig.add_annotation(x=recommended.values[0], y=math.log10(y) if log_y else y,
                           text=f"<b>recommended: trial {recommended.number}</b> ({learner})<br>"
                                f"accuracy {recommended.values[0]:.3f}, {what} {recommended.values[1]:.3g}",
                           showarrow=True, arrowhead=2, arrowcolor=RECOMMENDED_COLOR, ax=-80, ay=-55, align="left",
                           font={"color": "#7a5a00", "size": 11}, bgcolor="rgba(255,255,255,0.85)", row=1, col=1)

    if second:
        _estimate_panel(fig, feasible, estimates, front_numbers, recommended, most_accurate, records, objective,
                        x_range=x_range, tolerance=tolerance)

    counts = (f"{len(complete)} completed trials: {len(feasible)} feasible, {len(infeasible)} infeasible"
              if constrained else f"{len(complete)} completed trials")
    lines = [counts + (" (◄ at the left edge of the left panel; hover for their accuracy)" if infeasible else "")
             + f". Pareto front: {len(front)} trials, joined by its staircase.",
             (("Slope: how fast training on poisoned points teaches the backdoor (0 = not at all)"
               if objective == "slope" else f"{what.capitalize()}: lower = more robust")
              + ("; log scale" if log_y else "") + f". ▼ = {what} ≤ 0 or below the axis.")]
    if second:
        lines.append("Right: the same feasible trials against the estimated backdoor accuracy after poisoning; "
                     "black staircase: the front on these axes; the recommendation is its lowest point in the "
                     "shaded band of candidates.")
    if recommendation_note:
        lines += wrap(recommendation_note, 170).split("<br>")
    fig.update_xaxes(title={"text": ACCURACY_TITLE}, range=x_range, zeroline=False)
    y_axis = log_axis(float(positive.min()), float(positive.max())) if log_y else {"type": "linear"}
    fig.update_yaxes(title={"text": OBJECTIVE_TITLES.get(objective, what)}, range=y_range, zeroline=False,
                     row=1, col=1, **y_axis)
    fig.update_layout(
        title={"text": (title or f"{study.study_name}: clean accuracy vs "
                                 + ("backdoor learning slope" if objective == "slope" else what)
                        + (" and estimated backdoor accuracy" if second else ""))
               + "<br><sup>" + "<br>".join(lines) + "</sup>", "y": 1.0, "yanchor": "top", "pad": {"t": 16}},
        template="plotly_white", height=640 + 20 * len(lines), margin={"t": 90 + 20 * len(lines), "r": 30, "b": 150},
        legend={"groupclick": "toggleitem", "orientation": "h", "yanchor": "top", "y": -0.13, "xanchor": "left",
                "x": 0.0},
        hoverlabel={"align": "left"})
    return fig


def _estimate_panel(fig: go.Figure, feasible: Sequence[FrozenTrial], estimates: dict[int, float],
                    front_numbers: set[int], recommended: FrozenTrial | None, most_accurate: FrozenTrial | None,
                    records: dict, objective: str, *, x_range: list[float], tolerance: float | None) -> None:
    """The right panel: clean accuracy against the estimated backdoor accuracy (see the module docstring)."""
    mine = [t for t in feasible if t.number in estimates]
    if recommended is not None and tolerance is not None and mine:
        band = max(t.values[0] for t in feasible) - tolerance
        fig.add_vrect(x0=max(band, x_range[0]), x1=x_range[1], fillcolor="#fff1c2", opacity=0.55, line_width=0,
                      layer="below", row=1, col=2, exclude_empty_subplots=False)
        fig.add_annotation(x=max(band, x_range[0]), xanchor="left", y=0.0, yref="y2 domain", yanchor="bottom",
                           showarrow=False, text=f"candidates:<br>accuracy ≥ {band:.3g}", align="left",
                           font={"color": "#7a5a00", "size": 10}, row=1, col=2)
    fig.add_hline(y=VULNERABLE_AT, line={"color": "#b22222", "dash": "dot", "width": 1}, row=1, col=2,
                  exclude_empty_subplots=False)
    fig.add_annotation(x=0.0, xref="x2 domain", xanchor="left", y=VULNERABLE_AT, yanchor="top", showarrow=False,
                       text=f"above: still vulnerable (≥ {VULNERABLE_AT:g})", font={"color": "#b22222", "size": 10},
                       row=1, col=2)
    for learner in sorted({t.params.get("learner", "?") for t in mine}):
        group = [t for t in mine if t.params.get("learner", "?") == learner and t.number not in front_numbers]
        if group:
            fig.add_trace(go.Scatter(
                x=[t.values[0] for t in group], y=[estimates[t.number] for t in group], mode="markers", name=learner,
                legendgroup="dominated", showlegend=False,
                marker={"color": learner_color(learner), "size": 8, "opacity": 0.6, "line": {"width": 0.5,
                                                                                            "color": "white"}},
                customdata=[_hover_row(t, "dominated (slope front)", objective) for t in group],
                hovertemplate=_HOVER), row=1, col=2)
    on_front = [t for t in mine if t.number in front_numbers]
    if on_front:
        fig.add_trace(go.Scatter(
            x=[t.values[0] for t in on_front], y=[estimates[t.number] for t in on_front], mode="markers",
            name="Pareto front (slope)", legendgroup="front", showlegend=False,
            marker={"color": FRONT_COLOR, "size": 11, "symbol": "diamond", "line": {"width": 1.5, "color": "white"}},
            customdata=[_hover_row(t, "Pareto front", objective) for t in on_front], hovertemplate=_HOVER),
            row=1, col=2)
    labelled = {(t.values[0], estimates.get(t.number)) for t in (recommended, most_accurate) if t is not None}
    est_front = _estimate_front(mine, estimates)
    if est_front:
        fig.add_trace(go.Scatter(
            x=[t.values[0] for t in est_front], y=[estimates[t.number] for t in est_front], mode="lines+markers+text",
            name=f"front on estimated backdoor accuracy ({len(est_front)} trials)", legendgroup="estimate front",
            legendgrouptitle={"text": "right panel"},
            line={"color": ESTIMATE_FRONT_COLOR, "width": 1.5, "shape": "vh"},
            marker={"symbol": "diamond-open", "size": 13, "color": ESTIMATE_FRONT_COLOR, "line": {"width": 1.5}},
            text=["" if (t.values[0], estimates[t.number]) in labelled else f"#{t.number}" for t in est_front],
            textposition="middle right",
            textfont={"color": ESTIMATE_FRONT_COLOR, "size": 10}, cliponaxis=False,
            customdata=[_hover_row(t, "front on estimated backdoor accuracy", objective) for t in est_front],
            hovertemplate=_HOVER), row=1, col=2)

    def numbers(trial: FrozenTrial) -> str:
        record = records[trial.number]
        base = record.baseline_backdoor_accuracy
        return (f"clean accuracy {trial.values[0]:.3f}<br>est. backdoor accuracy <b>{estimates[trial.number]:.2f}</b>"
                + ("" if base is None else f"<br>(clean model {base:.2f})"))

    labels = []  # (trial, text, colours)
    if recommended is not None and recommended.number in estimates:
        fig.add_trace(go.Scatter(
            x=[recommended.values[0]], y=[estimates[recommended.number]], mode="markers",
            name=f"recommended: trial {recommended.number}", legendgroup="recommended", showlegend=False,
            marker={"symbol": "circle-open", "size": 26, "color": RECOMMENDED_COLOR, "line": {"width": 3.5}},
            customdata=[_hover_row(recommended, "recommended", objective)], hovertemplate=_HOVER), row=1, col=2)
        same = most_accurate is not None and most_accurate.number == recommended.number
        labels.append((recommended, f"<b>recommended: trial {recommended.number}</b>"
                       + (" (also the most accurate)" if same else "") + "<br>" + numbers(recommended),
                       (RECOMMENDED_COLOR, "#7a5a00", RECOMMENDED_COLOR)))
    if most_accurate is not None and most_accurate.number in estimates and (
            recommended is None or most_accurate.number != recommended.number):
        labels.append((most_accurate, f"<b>most accurate: trial {most_accurate.number}</b><br>" + numbers(most_accurate),
                       ("#555", "#333", "#999")))
    offsets = _label_offsets([(t.values[0], estimates[t.number]) for t, _, _ in labels], x_range)
    for (trial, text, (arrow, font, border)), (ax, ay) in zip(labels, offsets, strict=True):
        fig.add_annotation(x=trial.values[0], y=estimates[trial.number], text=text, showarrow=True, arrowhead=2,
                           arrowcolor=arrow, ax=ax, ay=ay, align="left", font={"color": font, "size": 11},
                           bgcolor="rgba(255,255,255,0.9)", bordercolor=border, borderwidth=1, row=1, col=2)
    fig.update_yaxes(title={"text": ESTIMATE_TITLE}, range=[-0.04, 1.04], tickvals=[0, 0.25, 0.5, 0.75, 1],
                     zeroline=False, row=1, col=2)
