"""Writing figures: standalone HTML files that embed plotly.js and open offline."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go


def write_html(figure: go.Figure, path: str | Path) -> Path:
    """Standalone HTML with plotly.js embedded (opens without a network)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.write_html(str(path), include_plotlyjs=True, full_html=True)
    return path
