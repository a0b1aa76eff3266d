"""The Pareto figure: clean accuracy (↑) against the backdoor learning slope (↓).

Built on ``optuna.visualization.plot_pareto_front``, which reads Optuna's recorded constraints, so
infeasible trials (clean-accuracy constraint violated) are drawn apart; this module adds a legend, plain
axis titles and the recommended trial.
"""

from __future__ import annotations

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial

from robust_hpo.errors import ValidationError
from robust_hpo.search_space import format_params

ACCURACY_TITLE = "clean test accuracy (higher is better)"
SLOPE_TITLE = "backdoor learning slope, normalised (lower = more robust)"
OBJECTIVE_TITLES = {
    "slope": SLOPE_TITLE,
    "predicted_backdoor_accuracy": "predicted backdoor accuracy at β = 1 (lower = more robust)",
    "normalised_margin": "normalised target margin at β = 1 (lower = more robust)",
}
"""The second axis's title for each objective a study may minimise (its second metric name)."""

_LEGEND = {
    "Best Trial": "Pareto front",
    "Feasible Trial": "feasible, dominated",
    "Trial": "dominated",
    "Infeasible Trial": "infeasible (clean-accuracy constraint)",
}


def pareto_figure(study: optuna.Study, *, recommended: FrozenTrial | None = None,
                  title: str | None = None) -> go.Figure:
    """Every completed trial, Pareto front highlighted, infeasible trials greyed, recommendation starred."""
    if len(study.directions) != 2:
        raise ValidationError(f"study must have two objectives (clean accuracy, slope), got {len(study.directions)}")
    objective = list(study.metric_names or ["clean_accuracy", "slope"])[-1]
    axis = OBJECTIVE_TITLES.get(objective, objective)
    figure = optuna.visualization.plot_pareto_front(study, target_names=[ACCURACY_TITLE, axis])
    for trace in figure.data:
        template = str(trace.hovertemplate or "")
        for optuna_name, name in _LEGEND.items():
            if template.endswith(f"<extra>{optuna_name}</extra>"):
                trace.update(name=name, showlegend=True)
                break
    if recommended is not None:
        figure.add_trace(go.Scatter(
            x=[recommended.values[0]], y=[recommended.values[1]], mode="markers", name="recommended",
            marker={"symbol": "star", "size": 18, "color": "gold", "line": {"color": "black", "width": 1}},
            text=[f"trial {recommended.number}: {format_params(recommended.params)}"],
            hovertemplate=f"%{{text}}<br>accuracy %{{x:.4f}}, {objective.replace('_', ' ')} %{{y:.4f}}"
                          "<extra>recommended</extra>",
        ))
    figure.update_layout(
        title=title or f"{study.study_name}: clean accuracy vs {objective.replace('_', ' ')}",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0.0},
    )
    return figure
