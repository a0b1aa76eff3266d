"""What every figure shares: one colour per learner, and log axes whose labels cannot be misread.

* :func:`learner_color`: a fixed colour per learner family name (the same in ``pareto.html``,
  ``verification.html``, the heatmaps and the dashboard), never red (the Pareto front's) nor gold
  (the recommendation's); an unknown family gets a stable colour from its name.
* :func:`log_axis`: plotly axis settings for a log scale whose labels are full numbers (``0.01``,
  ``0.1``, ``1``; between decades ``0.02``, ``0.05`` only when the range spans less than a decade),
  with small unlabelled ticks at 2…9 × each decade. Plotly's own labels ("2", "5" between decades)
  read as 2 and 5, not 0.002 or 0.05.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

__all__ = ["LEARNER_COLORS", "learner_color", "log_axis", "number_label"]

LEARNER_COLORS: dict[str, str] = {
    "logistic": "#2ca02c",    # green
    "ridge": "#ff7f0e",       # orange
    "linear_svm": "#1f77b4",  # blue
    "rbf_svm": "#9467bd",     # purple
    "mlp": "#17becf",         # teal
    "cnn": "#8c564b",         # brown
}
"""The colour of each built-in learner family, in every figure and the dashboard."""

_SPARE = ("#e377c2", "#7f7f7f", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")


def learner_color(learner: str) -> str:
    """The colour of learner family ``learner`` (stable across figures, runs and processes)."""
    if learner in LEARNER_COLORS:
        return LEARNER_COLORS[learner]
    return _SPARE[zlib.crc32(learner.encode("utf-8")) % len(_SPARE)]


def number_label(value: float) -> str:
    """A tick label that is the whole number: ``0.002``, ``0.05``, ``1``, ``20``; ``1e-5`` below 0.0001."""
    if value == 0:
        return "0"
    if 1e-4 <= abs(value) < 1e5:
        return f"{value:.6g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def log_axis(low: float, high: float) -> dict[str, Any]:
    """Axis settings (``type="log"``, tick values and full-number labels, minor ticks) for data
    between ``low`` and ``high`` (both > 0; the axis range itself is the caller's)."""
    if not (low > 0 and high > 0 and math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"log_axis needs positive finite bounds, got {low!r}, {high!r}")
    low, high = min(low, high), max(low, high)
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    decades = [10.0 ** k for k in range(first, last + 1)]
    span = math.log10(high) - math.log10(low)
    for steps in ((1,) if span >= 1.0 else (), (1, 2, 5), tuple(range(1, 10))):
        major = [m * d for d in decades for m in steps]  # plotly draws those inside the axis range
        if sum(low / 1.5 <= v <= high * 1.5 for v in major) >= 2:
            break
    minor = [m * d for d in decades for m in range(2, 10) if m * d not in major]
    return {"type": "log", "tickmode": "array", "tickvals": major, "ticktext": [number_label(v) for v in major],
            "minor": {"tickmode": "array", "tickvals": minor, "ticks": "outside", "ticklen": 3,
                      "showgrid": False}}
