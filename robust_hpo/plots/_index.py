"""``index.html``: the study's answer first, then every figure, table and summary in an output folder.

The page opens with the answer when the folder holds a ``summary.json`` (written by ``run`` and
``report``): the recommended trial, its learner and parameters, clean accuracy and estimated backdoor
accuracy after poisoning (with the clean model's), against the most accurate trial's; the rule in one
short sentence; and a warning line when the recommendation is still vulnerable
(:func:`robust_hpo.plots._answer.is_vulnerable`). Then the figures in reading order (Pareto front,
verification, heatmaps, curves, deviation, explanations), then tables and summaries.

Rewritten (atomically) by every command that writes into the folder, from what the folder holds,
so it never lists a file that is gone. Plain HTML, no script: it opens anywhere.
"""

from __future__ import annotations

import datetime
import fnmatch
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from robust_hpo._files import atomic_write_text
from robust_hpo.plots._answer import VULNERABLE_AT, configuration, is_vulnerable, short_rule
from robust_hpo.plots._style import learner_color

__all__ = ["INDEX_HTML", "READING_ORDER", "answer_html", "describe_output", "write_index"]

INDEX_HTML = "index.html"

_DESCRIPTIONS: tuple[tuple[str, str], ...] = (
    ("pareto.html", "start here: the Pareto front (clean accuracy against the backdoor learning slope) and, "
                    "beside it, the recommendation on the front of clean accuracy against the estimated backdoor "
                    "accuracy"),
    ("trials.csv", "every trial: state, objectives, feasibility, parameters and recorded attributes"),
    ("summary.json", "the study's summary and recommendation, machine-readable"),
    ("curves*.html", "backdoor learning curves: loss and accuracy along the poison weight β, with the slope's "
                     "tangent"),
    ("deviation*.html", "parameter deviation: weight norm and angle to the clean weights along β"),
    ("explain_maps*.html", "explanation maps: ∂f/∂x of the clean and the poisoned model"),
    ("explain_influence*.html", "the most influential training points of one test point, poison marked"),
    ("verification*.html", "verification by retraining: backdoor and clean accuracy against the slope"),
    ("verification*.csv", "verification by retraining, one row per trial"),
    ("heatmap*.html", "accuracy after poisoning, backdoor accuracy and slope per learner: heatmaps over (C, γ), "
                      "lines against C for learners with C only"),
    ("*.html", "figure"),
    ("*.csv", "table"),
    ("*.json", "summary"),
)

_KINDS = (("Figures, in reading order", (".html",)), ("Tables and summaries", (".csv", ".json")))

READING_ORDER = ("pareto.html", "verification*.html", "heatmap*.html", "curves*.html", "deviation*.html",
                 "explain_maps*.html", "explain_influence*.html", "trials.csv", "summary.json", "verification*.csv")
"""Files are listed in this order (by the first pattern they match; then by name)."""

SUMMARY_JSON = "summary.json"


def _reading_key(name: str, first: str | None = None) -> tuple[int, bool, str]:
    """Sort key: the :data:`READING_ORDER` pattern's rank, then ``first`` (e.g. the recommended learner's
    heatmap) before the others of the same rank, then the name."""
    rank = next((i for i, pattern in enumerate(READING_ORDER) if fnmatch.fnmatch(name, pattern)), len(READING_ORDER))
    return rank, not (first is not None and name.startswith(first)), name


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
            f"<td class=nw>{when}</td><td class=nw>{_size(stat.st_size)}</td></tr>")


def _read_summary(folder: Path) -> dict[str, Any] | None:
    try:
        summary = json.loads((folder / SUMMARY_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def _most_accurate(summary: Mapping[str, Any]) -> Mapping[str, Any] | None:
    if isinstance(summary.get("most_accurate"), dict):
        return summary["most_accurate"]
    front = [r for r in summary.get("pareto_front") or [] if isinstance(r, dict) and r.get("clean_accuracy") is not None]
    return max(front, key=lambda r: float(r["clean_accuracy"])) if front else None


def _num(value: Any, digits: int) -> str:
    return "–" if value is None else f"{float(value):.{digits}f}"


def _answer_row(role: str, record: Mapping[str, Any], css: str) -> str:
    learner, params = configuration(record)
    dot = f'<span class=dot style="background:{learner_color(learner)}"></span>'
    return (f"<tr class={css}><th>{html.escape(role)}</th><td class=nw>trial {html.escape(str(record.get('number')))}"
            f"</td><td class=nw>{dot}{html.escape(learner)}</td><td>{html.escape(params)}</td>"
            f"<td>{_num(record.get('clean_accuracy'), 3)}</td>"
            f"<td><b>{_num(record.get('predicted_backdoor_accuracy'), 2)}</b></td>"
            f"<td>{_num(record.get('baseline_backdoor_accuracy'), 2)}</td></tr>")


def answer_html(summary: Mapping[str, Any]) -> str:
    """The answer block of ``index.html`` from a ``summary.json`` dict (empty without a summary)."""
    recommended = summary.get("recommended")
    if not isinstance(recommended, dict):
        return ("<section class=answer><h2>Answer</h2><p><b>No recommendation</b>: no completed feasible trial "
                "with an exact slope yet (see the Pareto figure and <code>trials.csv</code>).</p></section>")
    learner, params = configuration(recommended)
    best = _most_accurate(summary)
    rows = [_answer_row("recommended", recommended, "recommended")]
    if best is not None and best.get("number") != recommended.get("number"):
        rows.append(_answer_row("most accurate", best, "best"))
    parts = ["<section class=answer><h2>Answer</h2>",
             f"<p class=lead>Deploy <b>trial {html.escape(str(recommended.get('number')))}</b>: "
             f"{html.escape(learner)} with {html.escape(params)}.</p>",
             "<table class=compare><tr><th></th><th>trial</th><th>learner</th><th>parameters</th>"
             "<th>clean accuracy</th><th>estimated backdoor accuracy after poisoning</th>"
             "<th>backdoor accuracy of the clean model</th></tr>" + "".join(rows) + "</table>"]
    if best is not None and best.get("number") == recommended.get("number"):
        parts.append("<p>It is also the most accurate trial: no accuracy is given up for robustness.</p>")
    parts.append(f"<p class=rule>{html.escape(short_rule(recommended))}</p>")
    if is_vulnerable(recommended):
        estimate = recommended.get("predicted_backdoor_accuracy")
        parts.append(f"<p class=warning>Warning: the recommended configuration is still vulnerable: its estimated "
                     f"backdoor accuracy after poisoning is {_num(estimate, 2)} (≥ {VULNERABLE_AT:g}). Try stronger "
                     "regularisation (a smaller C, fewer epochs) or a lower accuracy tolerance, and check it with "
                     "<code>robust-hpo verify</code>.</p>")
    parts.append("<p class=note>The estimate is the study's: for convex learners one refit on the poisoned "
                 "training set (their retrained value), for networks a short poisoned fine-tune of the clean "
                 "network; the slope and the Pareto front need no poisoned training. <code>robust-hpo verify</code> "
                 "measures it by retraining on the poisoned training set from scratch.</p>"
                 "</section>")
    return "".join(parts)


def write_index(folder: str | Path, *, title: str, details: Sequence[str] = ()) -> Path:
    """(Re)write ``folder/index.html``: the answer (from ``summary.json``, when the folder has one), then
    the folder's figures in reading order, tables, summaries and sub-folders that have an index of
    their own; ``details`` are lines shown under the title. Returns its path."""
    folder = Path(folder).expanduser().absolute()
    summary = _read_summary(folder)
    recommended = summary.get("recommended") if summary is not None else None
    first = f"heatmap_{recommended.get('learner')}" if isinstance(recommended, dict) else None
    files = sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: _reading_key(p.name, first))
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if summary is not None:
        parts.append(answer_html(summary))
    parts += [f"<p class=note>{html.escape(line)}</p>" for line in details]
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
            "th{background:#f4f4f4}.note{color:#666;font-size:90%}"
            ".answer{border:2px solid #e6a700;border-radius:6px;padding:.2em 1.2em .6em;margin-bottom:1.5em;"
            "background:#fffaf0}.answer h2{margin:.4em 0}.lead{font-size:120%}"
            ".compare th{background:none}.compare tr.recommended{background:#fff1c2}"
            ".dot{display:inline-block;width:.75em;height:.75em;border-radius:50%;margin-right:.4em}"
            ".warning{color:#a00000;font-weight:bold}.nw{white-space:nowrap}</style></head><body>"
            + "".join(parts) + "</body></html>\n")
    return atomic_write_text(folder / INDEX_HTML, page)
