"""Plotly figures of the analysis toolkit: learning curves, parameter deviation, explanations, verification.

Every figure has axis titles with units, a legend and a subtitle saying what a line or colour means,
so it reads without the code. Save with :func:`robust_hpo.plots.write_html` (plotly.js embedded,
opens offline in a browser).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from robust_hpo.analysis import CurveResult, DeviationResult, ExplanationMaps, GridResult, InfluenceResult, VerificationReport
from robust_hpo.errors import ValidationError
from robust_hpo.plots._style import LEARNER_COLORS, learner_color, log_axis
from robust_hpo.plots._text import wrap

__all__ = [
    "curves_figure",
    "deviation_figure",
    "explanation_figure",
    "grid_figure",
    "influence_figure",
    "verification_figure",
]

BETA_TITLE = "poison weight β"
BETA_NOTE = ("β = sample weight of every poison point (0: clean model, 1: trained on the in-place poisoned "
             "training set)")
LOSS_UNITS = {"log-loss": "mean log-loss, nats", "squared": "mean squared error, ±1 targets",
              "hinge": "mean hinge loss"}
_PALETTE = qualitative.Plotly


RECOMMENDED_MARK = "(recommended)"
"""A configuration whose label contains this is drawn in the recommendation's gold, thicker, in the
curves and deviation figures (the CLI labels the study's recommended trial so)."""
RECOMMENDED_COLOR = "#e6a700"


_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "cross", "triangle-down", "star", "pentagon")
"""Configurations of one learner share its colour and are told apart by their markers."""


def _learner_of(label: str) -> str | None:
    """The learner family a configuration's label names (``"trial 3: rbf_svm C=1, gamma=0.1"``)."""
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", label))
    return next((name for name in sorted(LEARNER_COLORS, key=len, reverse=True) if name in words), None)


def _line(i: int, label: str) -> dict[str, Any]:
    """Line style of configuration ``i``: its learner's colour (one colour per learner in every
    figure; a label naming no built-in learner gets a palette colour), gold and thicker for the
    recommended one."""
    if RECOMMENDED_MARK in label:
        return {"color": RECOMMENDED_COLOR, "width": 4}
    learner = _learner_of(label)
    return {"color": learner_color(learner) if learner else _PALETTE[i % len(_PALETTE)], "width": 2}


def _marker(i: int, line: dict[str, Any]) -> dict[str, Any]:
    """Marker of configuration ``i``: a symbol of its own, in its line's colour."""
    return {"symbol": _SYMBOLS[i % len(_SYMBOLS)], "color": line["color"], "size": 7}


def _loss_title(losses: Sequence[str], where: str) -> str:
    units = sorted({LOSS_UNITS.get(name, name) for name in losses})
    return f"{where} ({' / '.join(units)})"


def _tangent_end(L0: float, d: float, lo: float, hi: float, b_max: float) -> float:
    """Largest β ≤ b_max where the tangent L0 + d·β stays within [lo, hi]."""
    if d < 0:
        return float(min(b_max, (L0 - lo) / -d))
    if d > 0:
        return float(min(b_max, (hi - L0) / d))
    return b_max


def curves_figure(curves: Sequence[CurveResult], *, title: str | None = None, zoom: float = 0.05) -> go.Figure:
    """Backdoor learning curves of several configurations on one figure (the paper's Fig. 2 and 4).

    Top: the triggered-test loss over the whole β range and zoomed on [0, ``zoom``], each with the
    exact slope's tangent at β = 0 (dashed). Bottom: the clean-test loss; clean accuracy (solid) and
    backdoor accuracy (dotted: triggered test points classified as the attacker's target).
    """
    if not curves or not all(isinstance(c, CurveResult) for c in curves):
        raise ValidationError("curves must be a non-empty sequence of CurveResult")
    if not 0 < zoom <= 1:
        raise ValidationError(f"zoom must be in (0, 1], got {zoom!r}")
    losses = [c.loss for c in curves]
    fig = make_subplots(rows=2, cols=2, horizontal_spacing=0.1, vertical_spacing=0.16, subplot_titles=(
        "loss on triggered test points (falls as the backdoor is learned)",
        f"same, zoomed on β ≤ {zoom:g}: the tangent at β = 0 is the slope",
        "loss on clean test points", "accuracy: clean test (solid), backdoor (dotted)"))
    all_loss = np.concatenate([c.trigger_loss for c in curves])
    pad = 0.05 * max(float(np.ptp(all_loss)), 1e-9)
    lo, hi = float(all_loss.min()) - pad, float(all_loss.max()) + pad
    near = np.concatenate([c.trigger_loss[c.betas <= zoom] for c in curves])
    zpad = 0.05 * max(float(np.ptp(near)), 1e-9)
    zlo, zhi = float(near.min()) - zpad, float(near.max()) + zpad
    for i, c in enumerate(curves):
        line, group = _line(i, c.label), f"curve{i}"
        color = line["color"]
        name = f"{c.label} (slope {c.slope.slope:.3f})"
        kw = {"legendgroup": group, "line": line, "marker": _marker(i, line)}
        hover = "β=%{x:.4g}<br>%{y:.4g}<extra>" + c.label + "</extra>"
        fig.add_trace(go.Scatter(x=c.betas, y=c.trigger_loss, mode="lines+markers", name=name,
                                 hovertemplate=hover, **kw), row=1, col=1)
        b_end = _tangent_end(c.trigger_loss[0], c.derivative, lo, hi, float(c.betas[-1]))
        fig.add_trace(go.Scatter(x=[0.0, b_end], y=c.tangent([0.0, b_end]), mode="lines", showlegend=False,
                                 legendgroup=group, line={"color": color, "dash": "dash"},
                                 hovertemplate=f"tangent, dL/dβ = {c.derivative:.4g}<extra>{c.label}</extra>"),
                      row=1, col=1)
        sel = c.betas <= zoom
        fig.add_trace(go.Scatter(x=c.betas[sel], y=c.trigger_loss[sel], mode="lines+markers", showlegend=False,
                                 hovertemplate=hover, **kw), row=1, col=2)
        z_end = _tangent_end(c.trigger_loss[0], c.derivative, zlo, zhi, zoom)
        fig.add_trace(go.Scatter(x=[0.0, z_end], y=c.tangent([0.0, z_end]), mode="lines", showlegend=False,
                                 legendgroup=group, line={"color": color, "dash": "dash"},
                                 hovertemplate=f"tangent, dL/dβ = {c.derivative:.4g}<extra>{c.label}</extra>"),
                      row=1, col=2)
        fig.add_trace(go.Scatter(x=c.betas, y=c.clean_loss, mode="lines+markers", showlegend=False,
                                 hovertemplate=hover, **kw), row=2, col=1)
        fig.add_trace(go.Scatter(x=c.betas, y=c.clean_accuracy, mode="lines+markers", showlegend=False,
                                 hovertemplate="β=%{x:.4g}<br>clean accuracy %{y:.3f}<extra>" + c.label + "</extra>",
                                 **kw), row=2, col=2)
        fig.add_trace(go.Scatter(x=c.betas, y=c.trigger_accuracy, mode="lines+markers", showlegend=False,
                                 legendgroup=group, line={"color": color, "dash": "dot"},
                                 hovertemplate="β=%{x:.4g}<br>backdoor accuracy %{y:.3f}<extra>" + c.label
                                               + "</extra>"), row=2, col=2)
    # Legend entries for the line styles.
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="dashed: tangent L(0) + (dL/dβ)·β",
                             line={"color": "gray", "dash": "dash"}), row=1, col=1)
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="dotted: backdoor accuracy",
                             line={"color": "gray", "dash": "dot"}), row=2, col=2)
    fig.update_yaxes(title_text=_loss_title(losses, "triggered test loss"), range=[lo, hi], row=1, col=1)
    fig.update_yaxes(title_text=_loss_title(losses, "triggered test loss"), range=[zlo, zhi], row=1, col=2)
    fig.update_yaxes(title_text=_loss_title(losses, "clean test loss"), row=2, col=1)
    fig.update_yaxes(title_text="accuracy (fraction)", range=[-0.02, 1.02], row=2, col=2)
    for row, col in ((1, 1), (2, 1), (2, 2)):
        fig.update_xaxes(title_text=BETA_TITLE, row=row, col=col)
    fig.update_xaxes(title_text=f"{BETA_TITLE} (zoom near 0)", range=[0, zoom], row=1, col=2)
    attack = _attacks_text([c.attack for c in curves])
    fig.update_layout(
        title={"text": (title or "Backdoor learning curves")
               + f"<br><sup>{attack}. {BETA_NOTE}.<br>Triggered test points are labelled with the attacker's "
                 "target. Dashed: tangent L(0) + (dL/dβ)·β with dL/dβ from the exact slope of the same mean loss; "
                 "slope = −(2/π)·arctan(dL/dβ / m).</sup>"},
        height=900, margin={"t": 150}, legend={"title": {"text": "configuration (normalised slope)"}})
    return fig


def _attack_text(attack: dict) -> str:
    if not attack:
        return "attack not described"
    trig = attack.get("trigger", {})
    kind = trig.get("kind", "?") if isinstance(trig, dict) else str(trig)
    detail = ""
    if kind == "badnets":
        detail = f" {trig.get('size')}×{trig.get('size')} patch, {trig.get('position')}"
    elif kind == "invisible-grid":
        detail = f" ε={trig.get('epsilon'):.3g}"
    return (f"{attack.get('dataset', '?')} classes {attack.get('classes', '?')}, {kind}{detail}, "
            f"{100 * float(attack.get('fraction', float('nan'))):g}% poisoned "
            f"(m = {attack.get('n_poison', '?')} of {attack.get('n_train', '?')} training points)")


def _attacks_text(attacks: Sequence[dict]) -> str:
    """The distinct attacks of several results, each described (named when there are several)."""
    distinct: list[dict] = []
    for attack in attacks:
        if attack not in distinct:
            distinct.append(attack)
    if len(distinct) <= 1:
        return _attack_text(distinct[0] if distinct else {})
    return "attacks: " + "; ".join(f"{a.get('name', '?')!r}: {_attack_text(a)}" for a in distinct)


def deviation_figure(results: Sequence[DeviationResult], *, title: str | None = None) -> go.Figure:
    """Weight norm and angle to the clean weights along β (the paper's Fig. 9-11)."""
    if not results or not all(isinstance(r, DeviationResult) for r in results):
        raise ValidationError("results must be a non-empty sequence of DeviationResult")
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=(
        "weight norm ‖w_β‖₂ (the regulariser's measure of complexity)",
        "angle between w_0 and w_β, rescaled: arccos(cos∠)/π"))
    for i, r in enumerate(results):
        line = _line(i, r.label)
        kw = {"legendgroup": f"dev{i}", "line": line, "marker": _marker(i, line), "mode": "lines+markers"}
        space = "RKHS" if r.space == "rkhs" else "Euclidean"
        fig.add_trace(go.Scatter(x=r.betas, y=r.norm, name=f"{r.label} ({space})",
                                 hovertemplate="β=%{x:.4g}<br>‖w‖=%{y:.4g}<extra>" + r.label + "</extra>", **kw),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=r.betas, y=r.angle, showlegend=False,
                                 hovertemplate="β=%{x:.4g}<br>angle/π=%{y:.4f}<extra>" + r.label + "</extra>", **kw),
                      row=1, col=2)
    fig.update_xaxes(title_text=BETA_TITLE)
    fig.update_yaxes(title_text="‖w_β‖₂ (no unit)", row=1, col=1)
    fig.update_yaxes(title_text="angle / π (0 = as clean, 1 = opposite)", rangemode="tozero", row=1, col=2)
    fig.update_layout(title={"text": (title or "Parameter deviation along β")
                             + f"<br><sup>{_attacks_text([r.attack for r in results])}. {BETA_NOTE}.<br>Weights w exclude "
                               "the intercept; for the RBF SVM, w lives in the kernel's feature space: "
                               "‖w‖² = aᵀKa and ⟨w₀, w_β⟩ = a₀ᵀK a_β with a = dual coefficients."
                               "</sup>"},
                      height=560, margin={"t": 130}, legend={"title": {"text": "configuration (inner product)"}})
    return fig


def _show_map(image_map: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W): the channel value of largest magnitude (signed), as the paper's colour masks."""
    idx = np.abs(image_map).argmax(axis=0)
    return np.take_along_axis(image_map, idx[None], axis=0)[0]


def _image_trace(image: np.ndarray, *, showscale: bool = False) -> go.BaseTraceType:
    if image.shape[0] == 3:
        return go.Image(z=np.clip(np.moveaxis(image, 0, -1) * 255.0, 0, 255).astype(np.uint8))
    return go.Heatmap(z=image.mean(axis=0), colorscale="gray", zmin=0, zmax=1, showscale=showscale,
                      hovertemplate="row %{y}, col %{x}: %{z:.3f}<extra>pixel</extra>")


def _window_shape(fig: go.Figure, window: tuple[int, int, int, int] | None, row: int, col: int) -> None:
    if window is None:
        return
    r0, r1, c0, c1 = window
    fig.add_shape(type="rect", x0=c0 - 0.5, x1=c1 - 0.5, y0=r0 - 0.5, y1=r1 - 0.5,
                  line={"color": "limegreen", "width": 2}, row=row, col=col)


def explanation_figure(maps: ExplanationMaps, *, title: str | None = None) -> go.Figure:
    """The shown point, and ∂f/∂x of the clean and the poisoned model (the paper's Fig. 12)."""
    if not isinstance(maps, ExplanationMaps):
        raise ValidationError(f"maps must be an ExplanationMaps, got {type(maps).__name__}")
    what = "weights w = ∂f/∂x" if maps.kind == "weights" else "input gradient ∂f/∂x"
    point = "triggered test point" if maps.points == "trigger" else "clean test point"
    target = " (target)" if maps.points == "trigger" else ""
    shares = ""
    if maps.window is not None:
        c, p = maps.window_shares()
        shares = f" Share of |map| inside the patch: clean {c:.1%}, poisoned {p:.1%}."
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.06, subplot_titles=(
        f"{point} #{maps.index}, label {maps.point_label}{target}", f"clean model: {what}",
        f"poisoned model (β = 1): {what}"))
    fig.add_trace(_image_trace(maps.image), row=1, col=1)
    clean, poisoned = _show_map(maps.clean), _show_map(maps.poisoned)
    zmax = float(max(np.abs(clean).max(), np.abs(poisoned).max(), 1e-12))
    for col, m, show in ((2, clean, False), (3, poisoned, True)):
        fig.add_trace(go.Heatmap(z=m, colorscale="RdBu_r", zmid=0, zmin=-zmax, zmax=zmax, showscale=show,
                                 colorbar={"title": {"text": f"∂f/∂x towards label {maps.point_label}<br>"
                                                             "(red: pushes towards it)"}},
                                 hovertemplate="row %{y}, col %{x}: %{z:.4g}<extra></extra>"), row=1, col=col)
    for col in (1, 2, 3):
        _window_shape(fig, maps.window, 1, col)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{'' if col == 1 else col}", showticklabels=False,
                         row=1, col=col)
        fig.update_xaxes(showticklabels=False, row=1, col=col)
    constant = " (linear model: the same map at every input)" if maps.kind == "weights" else \
        " (at the shown point)"
    fig.update_layout(title={"text": (title or f"Explanation: {maps.label}")
                             + f"<br><sup>{_attack_text(maps.attack)}."
                               f"<br>∂f/∂x of the decision function{constant}, "
                               f"oriented so that red pushes towards label {maps.point_label}; both maps share one "
                               f"colour scale.<br>Green box: the trigger patch.{shares}</sup>"},
                      height=560, margin={"t": 180})
    return fig


def influence_figure(result: InfluenceResult, *, title: str | None = None) -> go.Figure:
    """The chosen test point and its ``k`` most influential training points, poison ones marked."""
    if not isinstance(result, InfluenceResult):
        raise ValidationError(f"result must be an InfluenceResult, got {type(result).__name__}")
    k = result.top.size
    names = [f"{'triggered' if result.points == 'trigger' else 'clean'} test #{result.index}<br>"
             f"label {result.point_label}{' (target)' if result.points == 'trigger' else ''}"]
    for j in result.top:
        kind = "<b>POISON (trigger)</b>" if result.is_poison[j] else "clean"
        names.append(f"{kind}, label {result.train_labels[j]}<br>influence {result.influence[j]:.3g}")
    fig = make_subplots(rows=1, cols=k + 1, horizontal_spacing=0.015, subplot_titles=names)
    fig.add_trace(_image_trace(result.image), row=1, col=1)
    for i, j in enumerate(result.top):
        fig.add_trace(_image_trace(result.top_images[i]), row=1, col=i + 2)
        if result.is_poison[j]:
            h, w = result.top_images[i].shape[1:]
            fig.add_shape(type="rect", x0=-0.5, x1=w - 0.5, y0=-0.5, y1=h - 0.5,
                          line={"color": "crimson", "width": 4}, row=1, col=i + 2)
    for col in range(1, k + 2):
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{'' if col == 1 else col}", showticklabels=False,
                         row=1, col=col)
        fig.update_xaxes(showticklabels=False, row=1, col=col)
    fig.update_annotations(font_size=10)
    quantity = "loss" if result.quantity == "loss" else "negative margin −y·f(x)"
    order = {"helpful": f"most negative influence first (up-weighting them most lowers the test point's {quantity}, "
                        "i.e. they support its label)",
             "harmful": f"most positive influence first (up-weighting them most raises the test point's {quantity})",
             "absolute": "largest |influence| first"}[result.order]
    model = "trained on the poisoned training set (β = 1)" if result.model == "poisoned" else \
        "trained on the clean set (poison points enter with weight 0)"
    fig.update_layout(
        title={"text": (title or f"Most influential training points: {result.label}")
               + f"<br><sup>Model {model}. Influence = d({quantity} at the test point) / d(weight of the training "
                 f"point), by implicit differentiation.<br>Shown: {order}. Red frame: carries the trigger "
                 f"({result.top_poison_count} of {k}).</sup>"},
        height=420, margin={"t": 155}, showlegend=False)
    if result.all_zero or result.notes:
        lines = ([f"Every influence is 0: {result.zero_reason}."] if result.all_zero else
                 ["Defaults adjusted to show non-zero influences:"]) + list(result.notes)
        text = "<br>".join(wrap(line, 140) for line in lines)
        color, fill = ("firebrick", "rgba(255,240,240,0.95)") if result.all_zero else ("#1f4e8c", "rgba(235,242,252,0.95)")
        fig.add_annotation(text=text, xref="paper", yref="paper", x=0.0, xanchor="left", y=-0.06, yanchor="top",
                           showarrow=False, align="left", font={"color": color, "size": 12}, bordercolor=color,
                           borderwidth=1, borderpad=6, bgcolor=fill)
        n_lines = text.count("<br>") + 1
        fig.update_layout(height=420 + 20 * n_lines + 30, margin={"b": 20 * n_lines + 50})
    return fig


def verification_figure(report: VerificationReport, *, title: str | None = None,
                        recommended: int | None = None) -> go.Figure:
    """Backdoor accuracy and clean accuracy after poisoned retraining against the slope (no retraining).

    The slope axis is logarithmic when the slopes span decades (slopes ≤ 0 are then pinned to its left
    edge as ◄); ★ marks the robust region, a gold ring the ``recommended`` trial number.
    """
    if not isinstance(report, VerificationReport):
        raise ValidationError(f"report must be a VerificationReport, got {type(report).__name__}")
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=(
        "backdoor accuracy after poisoned retraining", "clean accuracy after poisoned retraining"))
    slopes = np.array([t.slope for t in report.trials], dtype=float)
    positive = slopes[slopes > 0]
    log_x = positive.size >= 2 and float(positive.max() / positive.min()) > 10.0
    floor = float(positive.min()) / 2.0 if log_x else None

    def x_of(slope: float) -> float:
        return floor if floor is not None and slope <= 0 else slope

    robust = {t.number for t in report.robust}
    learners = sorted({t.learner for t in report.trials})
    for learner in learners:
        mine = [t for t in report.trials if t.learner == learner]
        text = [f"trial {t.number}: " + ", ".join(f"{k}={v:.3g}" for k, v in t.params.items())
                + (f"<br>attack {t.attack}" if t.attack else "") + f"<br>slope {t.slope:.4g}" for t in mine]
        symbols = ["star" if t.number in robust else ("triangle-left" if x_of(t.slope) != t.slope else "circle")
                   for t in mine]
        rho, _, _ = report.per_learner.get(learner, (None, None, ""))
        name = f"{learner} (Spearman {'undefined' if rho is None else f'{rho:.2f}'})"
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, legendgroup=learner,
                                 marker={"color": learner_color(learner), "symbol": "circle", "size": 11}),
                      row=1, col=1)
        for col, attr in ((1, "backdoor_accuracy"), (2, "poisoned_clean_accuracy")):
            fig.add_trace(go.Scatter(
                x=[x_of(t.slope) for t in mine], y=[getattr(t, attr) for t in mine], mode="markers", name=learner,
                legendgroup=learner, showlegend=False, text=text,
                marker={"color": learner_color(learner), "symbol": symbols, "size": 11, "opacity": 0.85,
                        "line": {"width": 1, "color": "black"}},
                hovertemplate="%{text}<br>%{y:.4f}<extra>" + learner + "</extra>"),
                row=1, col=col)
    chosen = [t for t in report.trials if t.number == recommended]
    for col, attr in ((1, "backdoor_accuracy"), (2, "poisoned_clean_accuracy")):
        if chosen:
            t = chosen[0]
            fig.add_trace(go.Scatter(x=[x_of(t.slope)], y=[getattr(t, attr)], mode="markers",
                                     name=f"recommended: trial {t.number}", showlegend=col == 1,
                                     legendgroup="recommended", hoverinfo="skip",
                                     marker={"symbol": "circle-open", "size": 24, "color": "#e6a700",
                                             "line": {"width": 3}}), row=1, col=col)
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="★ robust region",
                             marker={"symbol": "star", "color": "gray", "size": 11}), row=1, col=1)
    if floor is not None and np.any(slopes <= 0):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="◄ slope ≤ 0 (at the left edge)",
                                 marker={"symbol": "triangle-left", "color": "gray", "size": 11}), row=1, col=1)
    x_axis = log_axis(float(positive.min()), float(positive.max())) if log_x else {"type": "linear"}
    fig.update_xaxes(title_text="slope of the clean model (normalised" + (", log scale)" if log_x else ")"), **x_axis)
    fig.update_yaxes(title_text="triggered test points classified as the target (fraction)", range=[-0.03, 1.03],
                     row=1, col=1)
    fig.update_yaxes(title_text="clean test accuracy of the poisoned model (fraction)", row=1, col=2)
    rho = "undefined" if report.spearman is None else f"{report.spearman:.3f}"
    fig.update_layout(title={"text": (title or "Verification by retraining on the poisoned training set")
                             + f"<br><sup>Spearman(slope, backdoor accuracy) over all learners = {rho} "
                               f"({report.spearman_note}); per learner in the legend (each learner's slope uses "
                               f"its own loss).<br>★ robust region: the recommendation's candidates (clean accuracy "
                               f"within {report.tolerance:g} of the best feasible) with backdoor accuracy ≤ "
                               f"{report.max_backdoor:g}."
                               "</sup>"},
                      height=580, margin={"t": 140}, legend={"title": {"text": "learner"}}, template="plotly_white")
    return fig


_GRID_PANELS = (
    # attribute, panel title, colour scale (green = good), unit
    ("poisoned_clean_accuracy", "clean accuracy after poisoning", "RdYlGn", "fraction"),
    ("backdoor_accuracy", "backdoor accuracy after poisoning", "RdYlGn_r", "fraction"),
    ("slope", "backdoor learning slope (clean model)", "RdYlGn_r", "normalised"),
)
EMPTY_COLOR = "#ececec"
BELOW_COLOR = "#d4d4d4"
"""Cells (or C bands) whose clean model is below the accuracy constraint."""


def _labels(values: np.ndarray, binned: bool) -> list[str]:
    return [("≈" if binned else "") + f"{v:.3g}" for v in values]


def _spans_decades(values: np.ndarray) -> bool:
    """All finite values positive and spanning more than a decade (a log scale shows them better)."""
    finite = values[np.isfinite(values)]
    return finite.size >= 2 and bool(np.all(finite > 0)) and float(finite.max() / finite.min()) > 10.0


def _cell_text(values: np.ndarray, digits: str) -> np.ndarray:
    return np.vectorize(lambda v: "" if not np.isfinite(v) else format(v, digits), otypes=[object])(values)


def _colour_range(values: np.ndarray, unit: str) -> tuple[float, float]:
    """The data's own range (accuracies kept inside [0, 1]); a flat map gets a small window around it."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (0.0, 1.0)
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05, hi + 0.05
    if unit == "fraction":
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return lo, hi


def _grid_notes(grid: GridResult, robust_cells: set[tuple[int, int]], recommended_cell: tuple[int, int] | None,
                robust_rule: str | None, min_accuracy: float | None = None) -> str:
    rho, _, note = grid.spearman()
    rho_text = "undefined" if rho is None else f"{rho:.3f}"
    lines_chart = grid.gamma is None
    if grid.binned:
        source = ("binned study trials: each " + ("point" if lines_chart else "cell") + " is the mean of the verified "
                  "trials in a log-spaced bin of C" + ("" if lines_chart else " and γ")
                  + (" (a gap in a line: no trial in that bin)" if lines_chart else " (grey, 'no trial': none)"))
        trial = ""
        if grid.trial_spearman is not None:
            t_rho, _, t_note = grid.trial_spearman
            trial = f"; over the trials themselves {'undefined' if t_rho is None else f'{t_rho:.3f}'} ({t_note})"
        spearman = f"Spearman(slope, backdoor accuracy) over bins = {rho_text} ({note}){trial}."
    else:
        source = ("grid evaluated directly: one clean fit and one poisoned retraining per "
                  + ("value of C" if lines_chart else "cell"))
        spearman = f"Spearman(slope, backdoor accuracy) = {rho_text} ({note})."
    lines = [f"{grid.learner}; {source}.", spearman]
    marks = []
    if robust_rule is not None:
        mark = "green band" if lines_chart else "green frame"
        marks.append(f"{mark}: robust region ({robust_rule})" + ("" if robust_cells else " — empty"))
    if recommended_cell is not None:
        marks.append("★: the bin of the study's recommended trial" + ("" if lines_chart else " (gold dotted frame)"))
    if min_accuracy is not None:
        marks.append(f"grey {'band' if lines_chart else 'cells in the backdoor and slope panels'}: the clean model's "
                     f"accuracy is below the constraint {min_accuracy:g} (not admissible"
                     + (", left out of the colour scales)" if not lines_chart else ")"))
    if marks:
        lines.append("; ".join(marks) + ".")
    if lines_chart:
        lines.append("Above: clean accuracy after poisoning (higher is better) and backdoor accuracy after poisoning "
                     "(lower is better); below: the slope of the clean model (lower is better).")
    else:
        lines.append("Colours: green = good (high clean accuracy, low backdoor accuracy, low slope); each panel's "
                     "scale spans its own values.")
    return "<br>".join(wrap(line, 170) for line in lines)


def _below_constraint(grid: GridResult, min_accuracy: float | None) -> np.ndarray:
    """Cells whose clean model's accuracy is below ``min_accuracy`` (none when it is None)."""
    if min_accuracy is None:
        return np.zeros(grid.counts.shape, dtype=bool)
    accuracy = np.asarray(grid.clean_accuracy, dtype=float)
    return np.isfinite(accuracy) & (accuracy < float(min_accuracy) - 1e-12)


def grid_figure(grid: GridResult, *, title: str | None = None, robust_cells: set[tuple[int, int]] | None = None,
                recommended_cell: tuple[int, int] | None = None, robust_rule: str | None = None,
                min_accuracy: float | None = None) -> go.Figure:
    """Heatmaps over (C, γ) of clean accuracy, backdoor accuracy and slope (the paper's Fig. 8).

    Every cell shows its value; empty cells are grey and say so; each panel's colour scale spans its
    own data (the slope's is logarithmic when its values span decades). ``robust_cells`` (framed in
    green, described by ``robust_rule``) and ``recommended_cell`` (★) are ``(row, column)`` cells.
    Cells whose clean model is below ``min_accuracy`` (the study's constraint) are greyed out in the
    backdoor and slope panels and left out of their colour scales: a low slope or backdoor accuracy
    there belongs to a useless (near-constant) model.
    For learners with C only, the metrics are drawn as lines against C (accuracies above, slope below).
    """
    if not isinstance(grid, GridResult):
        raise ValidationError(f"grid must be a GridResult, got {type(grid).__name__}")
    robust_cells = set(robust_cells or ())
    below = _below_constraint(grid, min_accuracy)
    sub = _grid_notes(grid, robust_cells, recommended_cell, robust_rule, min_accuracy if below.any() else None)
    if grid.gamma is None:
        return _grid_lines(grid, title=title, sub=sub, robust_cells=robust_cells, recommended_cell=recommended_cell,
                           below=below[0])
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.1, subplot_titles=[p[1] for p in _GRID_PANELS])
    x, y = _labels(grid.C, grid.binned), _labels(grid.gamma, grid.binned)
    rows, cols = grid.counts.shape
    hover_text = np.empty(grid.counts.shape, dtype=object)
    for r in range(rows):
        for c in range(cols):
            key = f"C={grid.C[c]:.4g}, gamma={grid.gamma[r]:.4g}"
            hover_text[r, c] = grid.errors.get(key, f"{grid.counts[r, c]} trial(s)" if grid.binned else "")
    empty = np.where(grid.counts == 0, 0.0, np.nan)
    for col, (attr, name, scale, unit) in enumerate(_GRID_PANELS, start=1):
        values = np.array(getattr(grid, attr), dtype=float)
        masked = below if attr != "poisoned_clean_accuracy" else np.zeros_like(below)
        digits = ".2g" if attr == "slope" else ".2f"
        if masked.any():
            accuracy = _cell_text(np.asarray(grid.clean_accuracy, dtype=float), ".2f")
            marked = np.char.add(np.char.add(_cell_text(values, digits).astype(str), "<br>acc. "), accuracy.astype(str))
            fig.add_trace(go.Heatmap(
                z=np.where(masked, 0.0, np.nan), x=x, y=y, colorscale=[[0, BELOW_COLOR], [1, BELOW_COLOR]],
                showscale=False, text=np.where(masked, marked, ""), texttemplate="%{text}",
                textfont={"color": "#8a8a8a", "size": 10}, customdata=accuracy,
                hovertemplate="C %{x}, γ %{y}<br>" + name + " %{text}<br>not admissible: clean accuracy "
                              "%{customdata} < " + f"{min_accuracy:g}<extra></extra>"), row=1, col=col)
            values = np.where(masked, np.nan, values)
        log = attr == "slope" and _spans_decades(values)
        width = (1 - 2 * 0.1) / 3  # each panel's share of the width (horizontal_spacing 0.1)
        bar_x = (col - 1) * (width + 0.1) + width + 0.008
        if empty.size and np.isfinite(empty).any():
            fig.add_trace(go.Heatmap(z=empty, x=x, y=y, colorscale=[[0, EMPTY_COLOR], [1, EMPTY_COLOR]], showscale=False,
                                     text=np.where(grid.counts == 0, "no trial", ""), texttemplate="%{text}",
                                     textfont={"color": "#888", "size": 10}, hoverinfo="skip"), row=1, col=col)
        z = np.log10(values) if log else values
        lo, hi = _colour_range(z, "log" if log else unit)
        colorbar: dict[str, Any] = {"x": bar_x, "len": 0.75, "thickness": 10}
        if log:
            axis = log_axis(10 ** lo, 10 ** hi)
            colorbar.update(tickvals=[float(np.log10(v)) for v in axis["tickvals"]], ticktext=axis["ticktext"],
                            title={"text": "log scale"})
        text = _cell_text(values, digits)
        if recommended_cell is not None:
            text[recommended_cell] = "★ " + text[recommended_cell]
        fig.add_trace(go.Heatmap(
            z=z, x=x, y=y, colorscale=scale, zmin=lo, zmax=hi, colorbar=colorbar,
            text=text, texttemplate="%{text}",
            textfont={"size": 10}, customdata=hover_text,
            hovertemplate="C %{x}, γ %{y}<br>" + name + " %{text}<br>%{customdata}<extra></extra>"), row=1, col=col)
        for r, c in sorted(robust_cells):
            fig.add_shape(type="rect", x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5,
                          line={"color": "#00a000", "width": 3}, row=1, col=col)
        if recommended_cell is not None:
            r, c = recommended_cell
            fig.add_shape(type="rect", x0=c - 0.42, x1=c + 0.42, y0=r - 0.42, y1=r + 0.42,
                          line={"color": "#e6a700", "width": 3, "dash": "dot"}, row=1, col=col)
        fig.update_xaxes(title_text="C (log grid)", type="category", row=1, col=col)
        fig.update_yaxes(title_text="γ of the RBF kernel (log grid)" if col == 1 else None, type="category",
                         row=1, col=col)
    fig.update_layout(title={"text": (title or "Clean accuracy, backdoor accuracy and slope over (C, γ)")
                             + f"<br><sup>{sub}</sup>", "y": 1.0, "yanchor": "top", "pad": {"t": 16}},
                      height=640, margin={"t": 80 + 22 * (sub.count("<br>") + 1)},
                      template="plotly_white")
    return fig


_LINE_STYLES = {
    # attribute -> (colour, dash, marker)
    "poisoned_clean_accuracy": ("#333333", "solid", "circle"),
    "backdoor_accuracy": ("#c0392b", "dash", "square"),
}


def _grid_lines(grid: GridResult, *, title: str | None, sub: str, robust_cells: set[tuple[int, int]],
                recommended_cell: tuple[int, int] | None, below: np.ndarray) -> go.Figure:
    """C-only learners: accuracies (top) and slope (bottom, log when it spans decades) against C, as lines
    with gaps where a bin has no trial; the slope in the learner's colour."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1, row_heights=[0.55, 0.45],
                        subplot_titles=("accuracy after poisoned retraining", "backdoor learning slope of the clean model"))
    counts = grid.counts[0]
    extra = np.array([f"{n} trial(s) in the bin" if grid.binned else "" for n in counts], dtype=object)
    for attr, name, _, _ in _GRID_PANELS:
        row = 2 if attr == "slope" else 1
        color, dash, symbol = _LINE_STYLES.get(attr, (learner_color(grid.learner), "solid", "diamond"))
        fig.add_trace(go.Scatter(x=grid.C, y=getattr(grid, attr)[0], mode="lines+markers", name=name,
                                 connectgaps=False, line={"color": color, "dash": dash, "width": 2},
                                 marker={"color": color, "symbol": symbol, "size": 8}, customdata=extra,
                                 hovertemplate="C %{x:.3g}<br>%{y:.4g}<br>%{customdata}<extra>" + name + "</extra>"),
                      row=row, col=1)
    log_c = np.log10(grid.C)
    half = 0.5 * float(np.diff(log_c).min()) if grid.C.size > 1 else 0.5
    for c in np.flatnonzero(below):
        fig.add_vrect(x0=10 ** (log_c[c] - half), x1=10 ** (log_c[c] + half), fillcolor=BELOW_COLOR, opacity=0.6,
                      line_width=0, layer="below", row="all", col=1)
    for _, c in sorted(robust_cells):
        fig.add_vrect(x0=10 ** (log_c[c] - half), x1=10 ** (log_c[c] + half), fillcolor="#00a000", opacity=0.12,
                      line_width=0, row="all", col=1)
    if recommended_cell is not None:
        c = recommended_cell[1]
        values = (f"clean {grid.poisoned_clean_accuracy[0, c]:.2f}, backdoor {grid.backdoor_accuracy[0, c]:.2f}, "
                  f"slope {grid.slope[0, c]:.2g}")
        fig.add_trace(go.Scatter(x=[grid.C[c]], y=[grid.poisoned_clean_accuracy[0, c]], mode="markers",
                                 name=f"★ recommended trial's bin ({values})",
                                 marker={"symbol": "star", "size": 16, "color": "gold",
                                         "line": {"color": "black", "width": 1}},
                                 hovertemplate=f"recommended trial's bin<br>{values}<extra></extra>"), row=1, col=1)
    finite_c = grid.C[np.isfinite(grid.C) & (grid.C > 0)]
    c_axis = log_axis(float(finite_c.min()), float(finite_c.max())) if finite_c.size else {"type": "log"}
    fig.update_xaxes(title_text="C (inverse regularisation strength, log scale)", row=2, col=1, **c_axis)
    fig.update_xaxes(row=1, col=1, **c_axis)
    fig.update_yaxes(title_text="accuracy (fraction)", range=[-0.05, 1.05], row=1, col=1)
    slope = grid.slope[0]
    slope_axis = ({"type": "linear"} if not _spans_decades(slope) else
                  log_axis(float(np.nanmin(slope)), float(np.nanmax(slope))))
    fig.update_yaxes(title_text="slope (normalised)", row=2, col=1, **slope_axis)
    fig.update_layout(title={"text": (title or "Accuracy after poisoning and slope against C")
                             + f"<br><sup>{sub}</sup>", "y": 1.0, "yanchor": "top", "pad": {"t": 16}},
                      height=700, margin={"t": 90 + 22 * (sub.count("<br>") + 1), "r": 30},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.12, "x": 0.0},
                      template="plotly_white")
    return fig
