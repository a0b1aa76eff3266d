"""A WSGI middleware around optuna-dashboard whose "Best Trials" are the *feasible* Pareto front.

optuna-dashboard 0.21 computes the Pareto front of ``GET /api/studies/<id>`` without constraints, so
trials below the accuracy constraint appear among its best trials. :class:`FeasibleFront` rewrites
that one JSON response, reading the study through Optuna (nothing is written to the storage):

* ``best_trials``: Optuna's ``study.best_trials`` (feasible trials only when the study has constraints),
  the front ``robust-hpo report`` prints;
* every trial gains two user-attribute rows, listed first: ``feasible`` (``yes``, or ``no`` and why: its clean
  accuracy against the required one) and ``pareto_front`` (``recommended``, ``yes`` or ``no``), both
  sortable columns of the trials table;
* the study note starts with the recommendation ``report`` prints (robust_hpo studies only), followed
  by the user's own note. That generated block is never saved: a note saved from the dashboard's
  editor (``PUT /api/studies/<id>/note``) has it stripped before optuna-dashboard stores it;
* a study's home page opens with a card of the recommendation, the feasible front and the Pareto
  figure (:mod:`robust_hpo.dashboard._home`: read-only routes under ``/robust-hpo/`` and one script
  tag added to the dashboard's HTML pages).

Every other request (and any response that is not a 200 JSON study detail or HTML page) passes through
unchanged.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from robust_hpo.objective import (
    CONSTRAINT_NAME,
    DEFAULT_TOLERANCE,
    AccuracyConstraint,
    Recommendation,
    is_feasible,
    trial_records,
)
from robust_hpo.dashboard import _home
from robust_hpo.plots import answer_lines, is_vulnerable, short_rule
from robust_hpo.study import PROBLEM_ATTR, most_accurate, pareto_trials, recommend

FEASIBLE_ROW = "feasible"
"""User-attribute row added to each trial: ``yes`` / ``no: <why>`` / ``not evaluated (<state>)``."""

FRONT_ROW = "pareto_front"
"""User-attribute row added to each trial: ``recommended`` / ``yes`` / ``no`` (the feasible front)."""

NOTE_START = "[//]: # (robust-hpo: generated, not stored)"
NOTE_END = "[//]: # (robust-hpo: end of the generated part)"
"""Markers around the generated part of the study note: Markdown link reference definitions, which
render as nothing (HTML comments would show as text in optuna-dashboard)."""

_DETAIL = re.compile(r"^/api/studies/(\d+)/?$")
_NOTE = re.compile(r"^/api/studies/(\d+)/note/?$")
_GENERATED = re.compile(re.escape(NOTE_START) + r".*?" + re.escape(NOTE_END) + r"\n*", re.DOTALL)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def strip_generated(body: str) -> str:
    """``body`` without the generated recommendation block(s)."""
    return _GENERATED.sub("", body)


def feasibility(trial: FrozenTrial) -> str:
    """``yes``, or ``no: clean accuracy A < R required`` (R = A + the constraint value, Optuna's
    convention: feasible when every constraint value is ≤ 0), or ``not evaluated (<state>)``."""
    if trial.state != TrialState.COMPLETE or not trial.values:
        return f"not evaluated ({trial.state.name.lower()})"
    constraints = trial.constraints
    if not constraints:
        return "yes (the study has no constraint)"
    if is_feasible(trial):
        return "yes"
    accuracy = float(trial.values[0])
    violated = {k: v for k, v in constraints.items() if v > 0}
    if CONSTRAINT_NAME in violated or "0" in violated:
        value = violated.get(CONSTRAINT_NAME, violated.get("0"))
        return f"no: clean accuracy {accuracy:.4f} < {accuracy + value:.4f} required"
    return "no: " + ", ".join(f"constraint {k} = {v:.4g} > 0" for k, v in violated.items())


def _tolerance(study: optuna.Study, overrides: Mapping[str, float]) -> float:
    if study.study_name in overrides:
        return float(overrides[study.study_name])
    problem = study.user_attrs.get(PROBLEM_ATTR)
    report = problem.get("report") if isinstance(problem, dict) else None
    tolerance = report.get("tolerance") if isinstance(report, dict) else None
    return float(tolerance) if isinstance(tolerance, (int, float)) else DEFAULT_TOLERANCE


def _constraint_text(study: optuna.Study) -> str | None:
    problem = study.user_attrs.get(PROBLEM_ATTR)
    stored = problem.get("constraint") if isinstance(problem, dict) else None
    if not isinstance(stored, dict):
        return None
    try:
        return AccuracyConstraint(**stored).describe()
    except (TypeError, ValueError):
        return None


def _is_robust_hpo(study: optuna.Study) -> bool:
    """A study whose values are (clean accuracy ↑, slope ↓): the recommendation applies to it."""
    if PROBLEM_ATTR in study.user_attrs:
        return True
    return list(study.metric_names or []) == ["clean_accuracy", "slope"]


def recommendation_note(study: optuna.Study, front: list[FrozenTrial], chosen: Recommendation | None) -> str:
    """The generated Markdown block: the recommendation and what "Best Trials" means here."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    infeasible = [t for t in complete if not is_feasible(t)]
    lines = [NOTE_START, "", "### robust_hpo recommendation", ""]
    if chosen is None:
        lines.append("**None**: no completed feasible trial with an exact slope yet.")
    else:
        records = trial_records(front, study.metric_names)
        best = most_accurate(records) if records else None
        first, second = answer_lines(chosen.to_dict(), best.to_dict() if best is not None else None)
        lines += [f"**{first}** (as `robust-hpo report` prints it)", "", second, "",
                  short_rule(chosen.to_dict())]
        if chosen.vulnerable:
            lines += ["", f"**{chosen.vulnerability_warning()}**"]
        lines += ["", *[f"* warning: {w}" for w in chosen.warnings()]]
    constraint = _constraint_text(study)
    numbers = ", ".join(str(t.number) for t in front) or "none"
    lines += ["", f"**Best Trials** are the feasible Pareto front ({len(front)} trials: {numbers}), the one "
                  "`robust-hpo report` prints."]
    if chosen is not None and all(t.number != chosen.trial.number for t in front):
        lines.append(f"The recommended trial {chosen.trial.number} is not among them: the front trades clean "
                     "accuracy against the slope, the rule above ranks the candidates by the estimated backdoor "
                     "accuracy — on the front of clean accuracy against that estimate it is the lowest point "
                     "within the tolerance (the home page's figure, right panel).")
    if constraint is not None or infeasible:
        lines.append(f"Constraint: {constraint or 'set by the objective'}; {len(infeasible)} of {len(complete)} "
                     "completed trials violate it (grey in the Pareto-front plot; each trial's `feasible` "
                     "attribute says why).")
    lines += ["", "*Computed by `robust-hpo dashboard` on every load and not stored; your own note follows.*",
              "", NOTE_END, ""]
    return "\n".join(lines)


def _extra_rows(trial: FrozenTrial, front: set[int], recommended: int | None) -> list[dict[str, str]]:
    on_front = "recommended" if trial.number == recommended else ("yes" if trial.number in front else "no")
    return [{"key": FEASIBLE_ROW, "value": feasibility(trial)}, {"key": FRONT_ROW, "value": on_front}]


class FeasibleFront:
    """WSGI middleware: ``FeasibleFront(optuna_dashboard.wsgi(storage), storage)`` (see the module docstring).

    ``tolerances`` overrides the recommendation's accuracy tolerance per study name (default: the
    study's stored ``[report] tolerance``, else :data:`~robust_hpo.objective.DEFAULT_TOLERANCE`).
    """

    def __init__(self, app: WSGIApp, storage: BaseStorage, *, tolerances: Mapping[str, float] | None = None) -> None:
        self.app = app
        self.storage = storage
        self.tolerances = dict(tolerances or {})

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        detail = _DETAIL.match(path)
        if detail and method == "GET":
            return self._study_detail(int(detail.group(1)), environ, start_response)
        if method == "GET" and path.startswith(_home.PREFIX):
            answer = _home.route(path, self._home_data)
            if answer is not None:
                status, kind, body = answer
                return _respond(start_response, status, [("Content-Type", kind), ("Cache-Control", "no-store")],
                                body)
        if method == "GET" and (path == "/dashboard" or path.startswith("/dashboard/")):
            return self._with_home_script(environ, start_response)
        if _NOTE.match(path) and method == "PUT":
            environ = self._without_generated_note(environ)
        return self.app(environ, start_response)

    # -- GET /api/studies/<id> -------------------------------------------------------------------
    def _study_detail(self, study_id: int, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        after = _after(environ.get("QUERY_STRING", ""))
        if after is None:
            return self.app(environ, start_response)
        query = [p for p in environ.get("QUERY_STRING", "").split("&") if p and not p.startswith("after=")]
        status, headers, body = _call(self.app, {**environ, "QUERY_STRING": "&".join(query)})
        if not status.startswith("200"):
            return _respond(start_response, status, headers, body)
        try:
            detail = json.loads(body)
            study = optuna.load_study(study_name=self.storage.get_study_name_from_id(study_id),
                                      storage=self.storage)
        except (ValueError, KeyError):
            return _respond(start_response, status, headers, body)
        self._rewrite(detail, study)
        detail["trials"] = detail["trials"][after:]
        return _respond(start_response, status, headers, json.dumps(detail).encode("utf-8"))

    def _rewrite(self, detail: dict[str, Any], study: optuna.Study) -> None:
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        serialized = {t["number"]: t for t in detail["trials"]}
        if len(study.directions) > 1:
            front = pareto_trials(study)
            detail["best_trials"] = [serialized[t.number] for t in front if t.number in serialized]
        else:
            front = [by_number[t["number"]] for t in detail["best_trials"] if t["number"] in by_number]
        front_numbers = {t.number for t in front}
        recommended = None
        if _is_robust_hpo(study) and len(study.directions) == 2:
            tolerance = _tolerance(study, self.tolerances)
            chosen = recommend(study, tolerance)
            recommended = chosen.trial.number if chosen is not None else None
            note = detail.get("note") or {"version": 0, "body": ""}
            body = recommendation_note(study, front, chosen) + strip_generated(note.get("body", ""))
            detail["note"] = {**note, "body": body}
        for trial in [*detail["trials"], *detail["best_trials"]]:
            frozen = by_number.get(trial["number"])
            if frozen is None:
                continue
            keys = {row["key"] for row in trial["user_attrs"]}
            extra = [r for r in _extra_rows(frozen, front_numbers, recommended) if r["key"] not in keys]
            trial["user_attrs"] = extra + trial["user_attrs"]  # first: visible above long JSON attributes
        attrs = [a for a in detail.get("union_user_attrs", []) if a.get("key") not in (FEASIBLE_ROW, FRONT_ROW)]
        # sortable: the trials table sorts these text columns (yes/no…, recommended/yes/no) alphabetically
        detail["union_user_attrs"] = [{"key": key, "sortable": True} for key in (FEASIBLE_ROW, FRONT_ROW)] + attrs

    # -- the home page's card ---------------------------------------------------------------------
    def _home_data(self, study_id: int) -> tuple[optuna.Study, list[FrozenTrial], Recommendation | None] | None:
        try:
            study = optuna.load_study(study_name=self.storage.get_study_name_from_id(study_id), storage=self.storage)
        except KeyError:
            return None
        if len(study.directions) != 2:
            return None
        chosen = recommend(study, _tolerance(study, self.tolerances)) if _is_robust_hpo(study) else None
        return study, pareto_trials(study), chosen

    def _with_home_script(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        status, headers, body = _call(self.app, environ)
        html_page = any(k.lower() == "content-type" and v.startswith("text/html") for k, v in headers)
        if not status.startswith("200") or not html_page or b"</body>" not in body:
            return _respond(start_response, status, headers, body)
        body = body.replace(b"</body>", _home.home_script_tag() + b"</body>", 1)
        headers = [(k, v) for k, v in headers if k.lower() not in ("etag", "last-modified")]
        return _respond(start_response, status, headers, body)

    # -- PUT /api/studies/<id>/note --------------------------------------------------------------
    @staticmethod
    def _without_generated_note(environ: dict[str, Any]) -> dict[str, Any]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        try:
            payload = json.loads(raw)
            if isinstance(payload, dict) and isinstance(payload.get("body"), str):
                payload["body"] = strip_generated(payload["body"])
                raw = json.dumps(payload).encode("utf-8")
        except ValueError:
            pass
        return {**environ, "wsgi.input": io.BytesIO(raw), "CONTENT_LENGTH": str(len(raw))}


def _after(query: str) -> int | None:
    """The ``after`` query value (0 when absent); ``None`` when malformed (optuna-dashboard answers 400)."""
    for part in query.split("&"):
        if part.startswith("after="):
            text = part[len("after="):]
            return int(text) if text.isdigit() else None
    return 0


def _call(app: WSGIApp, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        captured["status"], captured["headers"] = status, headers
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return captured["status"], captured["headers"], body


def _respond(start_response: StartResponse, status: str, headers: list[tuple[str, str]],
             body: bytes) -> list[bytes]:
    headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
    start_response(status, [*headers, ("Content-Length", str(len(body)))])
    return [body]
