"""``index.html``: one page linking every figure, table and summary in an output folder.

Rewritten (atomically) by every command that writes into the folder, from what the folder holds,
so it never lists a file that is gone. Plain HTML, no script: it opens anywhere.
"""

from __future__ import annotations

import datetime
import fnmatch
import html
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from robust_hpo._files import atomic_write_text

__all__ = ["INDEX_HTML", "describe_output", "write_index"]

INDEX_HTML = "index.html"

_DESCRIPTIONS: tuple[tuple[str, str], ...] = (
    ("pareto.html", "Pareto front: clean accuracy against the backdoor learning slope, the recommended trial "
                    "ringed"),
    ("trials.csv", "every trial: state, objectives, feasibility, parameters and recorded attributes"),
    ("summary.json", "the study's summary and recommendation, machine-readable"),
    ("curves*.html", "backdoor learning curves: loss and accuracy along the poison weight β, with the slope's "
                     "tangent"),
    ("deviation*.html", "parameter deviation: weight norm and angle to the clean weights along β"),
    ("explain_maps*.html", "explanation maps: ∂f/∂x of the clean and the poisoned model"),
    ("explain_influence*.html", "the most influential training points of one test point, poison marked"),
    ("verification*.html", "verification by retraining: backdoor and clean accuracy against the slope"),
    ("verification*.csv", "verification by retraining, one row per trial"),
    ("heatmap*.html", "heatmaps over (C, γ): accuracy after poisoning, backdoor accuracy and slope"),
    ("*.html", "figure"),
    ("*.csv", "table"),
    ("*.json", "summary"),
)

_KINDS = (("Figures", (".html",)), ("Tables and summaries", (".csv", ".json")))


def describe_output(name: str) -> str:
    """What an output file of this name shows (by the commands' naming conventions)."""
    for pattern, text in _DESCRIPTIONS:
        if fnmatch.fnmatch(name, pattern):
            return text
    return "file"


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _row(path: Path, label: str, description: str) -> str:
    stat = path.stat()
    when = datetime.datetime.fromtimestamp(stat.st_mtime).strftime("%Y-%m-%d %H:%M")
    return (f'<tr><td><a href="{quote(label)}">{html.escape(label)}</a></td><td>{html.escape(description)}</td>'
            f"<td>{when}</td><td>{_size(stat.st_size)}</td></tr>")


def write_index(folder: str | Path, *, title: str, details: Sequence[str] = ()) -> Path:
    """(Re)write ``folder/index.html`` listing the folder's figures, tables, summaries and sub-folders
    that have an index of their own; ``details`` are lines shown under the title. Returns its path."""
    folder = Path(folder).expanduser().absolute()
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    parts = [f"<h1>{html.escape(title)}</h1>"]
    parts += [f"<p>{html.escape(line)}</p>" for line in details]
    for heading, suffixes in _KINDS:
        rows = [_row(p, p.name, describe_output(p.name)) for p in files
                if p.suffix in suffixes and p.name != INDEX_HTML]
        if rows:
            parts.append(f"<h2>{heading}</h2><table><tr><th>file</th><th>what it shows</th><th>written</th>"
                         f"<th>size</th></tr>{''.join(rows)}</table>")
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and (p / INDEX_HTML).is_file())
    if subs:
        rows = [_row(p / INDEX_HTML, f"{p.name}/{INDEX_HTML}", "outputs of the same study name in another storage, "
                                                                 "or of another analysis") for p in subs]
        parts.append("<h2>Other output folders</h2><table><tr><th>index</th><th>what</th><th>written</th>"
                     f"<th>size</th></tr>{''.join(rows)}</table>")
    scripts = [p.name for p in files if p.suffix == ".js"]
    if scripts:
        parts.append(f"<p class=note>The figures load plotly.js from {html.escape(', '.join(scripts))} in this "
                     "folder: copy it along when moving a figure.</p>")
    page = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>" + html.escape(title) + "</title><style>"
            "body{font-family:sans-serif;margin:2em;max-width:70em;color:#222}"
            "table{border-collapse:collapse;margin-bottom:1.5em}"
            "td,th{border-bottom:1px solid #ddd;padding:.35em .8em;text-align:left;vertical-align:top}"
            "th{background:#f4f4f4}.note{color:#666;font-size:90%}</style></head><body>"
            + "".join(parts) + "</body></html>\n")
    return atomic_write_text(folder / INDEX_HTML, page)
