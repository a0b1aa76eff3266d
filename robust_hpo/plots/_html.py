"""Writing figures: HTML files that share one plotly.js per folder and open offline.

Each figure's HTML refers to ``plotly-<version>.min.js`` next to it (written once per folder, ~4.8 MB)
instead of embedding its own copy, so a study folder with ten figures weighs ~5 MB, not ~50 MB.
Copy the ``.js`` file along when moving a figure elsewhere, or use ``standalone=True``. Every file is
written atomically (:mod:`robust_hpo._files`).
"""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs, get_plotlyjs_version

from robust_hpo._files import atomic_write_text

__all__ = ["PLOTLY_CONFIG", "plotly_bundle_name", "write_html"]

PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}
"""plotly's per-figure options: no logo; the camera button saves a 2× PNG."""


def plotly_bundle_name() -> str:
    """File name of the shared plotly.js bundle (versioned, so two plotly versions never mix)."""
    return f"plotly-{get_plotlyjs_version()}.min.js"


def _ensure_bundle(folder: Path) -> Path:
    bundle = folder / plotly_bundle_name()
    if not bundle.is_file() or bundle.stat().st_size == 0:
        atomic_write_text(bundle, get_plotlyjs())
    return bundle


def write_html(figure: go.Figure, path: str | Path, *, standalone: bool = False) -> Path:
    """Write ``figure`` as an HTML page at ``path`` (atomically); returns the absolute path.

    By default the page loads the folder's shared ``plotly-<version>.min.js`` (created if missing);
    ``standalone=True`` embeds plotly.js in the page instead (one self-contained ~4.8 MB file).
    """
    path = Path(path).expanduser().absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    if standalone:
        include: bool | str = True
    else:
        include = _ensure_bundle(path.parent).name
    html = figure.to_html(include_plotlyjs=include, full_html=True, config=PLOTLY_CONFIG)
    return atomic_write_text(path, html)
