"""The dashboard study home's first card: the recommendation, the feasible front and the Pareto figure.

optuna-dashboard 0.21 has no plugin slot on a study's home page (its own Pareto plot and history come
first; the note is on a page of its own), so :class:`~robust_hpo.dashboard._feasible.FeasibleFront`
serves three read-only routes under :data:`PREFIX` and adds one ``<script src>`` (same origin, as
optuna-dashboard's Content-Security-Policy allows) to the dashboard's HTML:

* ``GET /robust-hpo/home.js``: on a study's home (``/dashboard/studies/<id>``) it inserts the card
  at the top of the page, above optuna-dashboard's own plots, and removes it on every other page;
* ``GET /robust-hpo/studies/<id>/card``: the card (an HTML fragment): the answer (recommended against
  most accurate, the rule, a warning when still vulnerable, as ``index.html`` shows it), the feasible
  Pareto front as a table (the Best Trials, learner colours of the figures) and the figure below;
* ``GET /robust-hpo/studies/<id>/pareto``: ``pareto.html``'s figure for the study (both panels), as a
  page loading plotly.js from ``GET /robust-hpo/plotly.min.js``.

Everything is computed from the storage on each request; nothing is written.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial

from robust_hpo.objective import Recommendation, trial_records
from robust_hpo.plots import answer_html, configuration, learner_color, pareto_figure, short_rule
from robust_hpo.study import most_accurate

__all__ = ["HOME_JS", "PREFIX", "card_html", "home_script_tag", "pareto_page"]

PREFIX = "/robust-hpo/"
HOME_JS = PREFIX + "home.js"
PLOTLY_JS = PREFIX + "plotly.min.js"
CARD = re.compile(r"^/robust-hpo/studies/(\d+)/card/?$")
PARETO = re.compile(r"^/robust-hpo/studies/(\d+)/pareto/?$")


def home_script_tag() -> bytes:
    """What the dashboard's HTML gains before ``</body>``."""
    return f'<script defer src="{HOME_JS}"></script>'.encode()


_SCRIPT = """\
// robust_hpo: the recommendation and the feasible front first on a study's home page.
(function () {
  var HOME = /^\\/dashboard\\/studies\\/(\\d+)\\/?$/;
  var loading = null;
  function sync() {
    var match = HOME.exec(window.location.pathname);
    var card = document.getElementById("robust-hpo-card");
    if (card && (!match || card.dataset.study !== match[1])) { card.remove(); card = null; }
    var main = document.querySelector("#dashboard main");
    if (!match || card || !main || main.children.length < 2 || loading === match[1]) { return; }
    loading = match[1];
    fetch("/robust-hpo/studies/" + match[1] + "/card").then(function (response) {
      return response.ok ? response.text() : "";
    }).then(function (text) {
      loading = null;
      if (!text || document.getElementById("robust-hpo-card") || !HOME.test(window.location.pathname)) { return; }
      var node = document.createElement("section");
      node.id = "robust-hpo-card";
      node.dataset.study = match[1];
      node.innerHTML = text;
      var target = document.querySelector("#dashboard main");
      if (target && target.children.length >= 2) { target.insertBefore(node, target.children[1]); }
    }).catch(function () { loading = null; });
  }
  window.addEventListener("popstate", sync);
  setInterval(sync, 500);
  sync();
})();
"""


def home_script() -> bytes:
    """``home.js`` (see the module docstring)."""
    return _SCRIPT.encode()


_STYLE = """<style>
#robust-hpo-card{margin:16px;padding:8px 20px 16px;background:#fff;border-radius:4px;color:#222;
font-family:Roboto,Helvetica,Arial,sans-serif;box-shadow:0 2px 1px -1px rgba(0,0,0,.2),0 1px 1px 0 rgba(0,0,0,.14),
0 1px 3px 0 rgba(0,0,0,.12);border-top:4px solid #e6a700}
#robust-hpo-card table{border-collapse:collapse;margin:.4em 0 1em}
#robust-hpo-card td,#robust-hpo-card th{border-bottom:1px solid #ddd;padding:.3em .7em;text-align:left;vertical-align:top}
#robust-hpo-card .lead{font-size:120%}#robust-hpo-card .note{color:#666;font-size:90%}
#robust-hpo-card tr.recommended{background:#fff1c2}#robust-hpo-card .warning{color:#a00000;font-weight:bold}
#robust-hpo-card .dot{display:inline-block;width:.75em;height:.75em;border-radius:50%;margin-right:.4em}
#robust-hpo-card .nw{white-space:nowrap}#robust-hpo-card h2{margin:.5em 0 .2em}
#robust-hpo-card .answer{border:0;padding:0;background:none;margin:0}
#robust-hpo-card iframe{width:100%;height:860px;border:0}
</style>"""


def _front_table(study: optuna.Study, front: list[FrozenTrial], recommended: int | None) -> str:
    rows = []
    for r in trial_records(front, study.metric_names):
        learner, params = configuration({"params": r.params, "learner": r.learner})
        role = "recommended" if r.number == recommended else ""
        estimate = "–" if r.predicted_backdoor_accuracy is None else f"{r.predicted_backdoor_accuracy:.2f}"
        slope = "–" if r.slope is None else f"{r.slope:.4g}"
        rows.append(f"<tr class='{role}'><td class=nw>trial {r.number}</td><td class=nw><span class=dot "
                    f"style='background:{learner_color(learner)}'></span>{html.escape(learner)}</td>"
                    f"<td>{html.escape(params)}</td><td>{_num(r.clean_accuracy, 3)}</td><td>{slope}</td>"
                    f"<td>{estimate}</td><td>{role}</td></tr>")
    return ("<table><tr><th>trial</th><th>learner</th><th>parameters</th><th>clean accuracy</th><th>slope</th>"
            "<th>estimated backdoor accuracy after poisoning</th><th></th></tr>" + "".join(rows) + "</table>")


def _num(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def card_html(study: optuna.Study, study_id: int, front: list[FrozenTrial], chosen: Recommendation | None) -> str:
    """The card's HTML fragment (see the module docstring)."""
    records = trial_records(front, study.metric_names)
    best = most_accurate(records) if records else None
    summary = {"recommended": chosen.to_dict() if chosen is not None else None,
               "most_accurate": best.to_dict() if best is not None else None}
    recommended = chosen.trial.number if chosen is not None else None
    parts = [_STYLE, answer_html(summary).replace("<h2>Answer</h2>", "<h2>robust_hpo: the answer</h2>", 1)]
    parts.append(f"<h2>Best Trials: the feasible Pareto front ({len(front)} trials)</h2>"
                 "<p class=note>Clean accuracy ↑ against the backdoor learning slope ↓, among the trials that meet "
                 "the accuracy constraint; the Best Trials card below lists the same trials. "
                 + (html.escape(short_rule(chosen.to_dict())) + " " if chosen is not None else "")
                 + "</p>" + _front_table(study, front, recommended))
    parts.append(f"<iframe title='Pareto figure' src='{PREFIX}studies/{study_id}/pareto' loading='lazy'></iframe>")
    return "".join(parts)


def pareto_page(study: optuna.Study, chosen: Recommendation | None) -> str:
    """The study's Pareto figure (as ``pareto.html``) loading plotly.js from :data:`PLOTLY_JS`."""
    figure = pareto_figure(study, recommended=chosen.trial if chosen is not None else None,
                           recommendation_note=short_rule(chosen.to_dict()) if chosen is not None else None,
                           tolerance=chosen.tolerance if chosen is not None else None)
    figure.update_layout(height=780)
    return figure.to_html(include_plotlyjs=PLOTLY_JS, full_html=True, config={"displaylogo": False})


def route(path: str, load: Callable[[int], tuple[optuna.Study, list[FrozenTrial], Recommendation | None] | None]
          ) -> tuple[str, str, bytes] | None:
    """``(status, content type, body)`` for a :data:`PREFIX` path, or None when it is not one of ours.
    ``load(study_id)`` returns the study, its feasible front and its recommendation (None: unknown id)."""
    if path == HOME_JS:
        return "200 OK", "text/javascript; charset=utf-8", home_script()
    if path == PLOTLY_JS:
        from plotly.offline import get_plotlyjs

        return "200 OK", "text/javascript; charset=utf-8", get_plotlyjs().encode()
    for pattern, kind in ((CARD, "card"), (PARETO, "pareto")):
        match = pattern.match(path)
        if match is None:
            continue
        loaded = load(int(match.group(1)))
        if loaded is None:
            return "404 Not Found", "text/plain; charset=utf-8", b"no such study"
        study, front, chosen = loaded
        if kind == "card":
            text = card_html(study, int(match.group(1)), front, chosen)
        else:
            text = pareto_page(study, chosen)
        return "200 OK", "text/html; charset=utf-8", text.encode()
    return None
