"""`robust-hpo dashboard` through its HTTP API on the quickstart study: Best Trials = the feasible Pareto
front `report` prints, feasibility rows, the recommendation note; no storage writes; busy port."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import optuna_dashboard
import pytest

from robust_hpo.cli import main
from robust_hpo.dashboard import FEASIBLE_ROW, FRONT_ROW, dashboard_app
from robust_hpo.study import StorageSpec

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "studies" / "quickstart.toml"
MIN_ACCURACY = 0.9  # studies/quickstart.toml [constraint]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The quickstart study as the README runs it, and what `report` prints about it."""
    out = tmp_path_factory.mktemp("quickstart")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    where = ["--storage", str(out / "study.log"), "--output", str(out)]
    subprocess.run([sys.executable, "-m", "robust_hpo.cli", "run", str(QUICKSTART), *where,
                    "--no-progress"], check=True, capture_output=True, text=True, env=env, cwd=out)
    report = subprocess.run([sys.executable, "-m", "robust_hpo.cli", "report", str(QUICKSTART), *where],
                            check=True, capture_output=True, text=True, env=env, cwd=out).stdout
    table = report.split("Pareto front", 1)[1].split("Candidates (", 1)[0].split("Recommended:", 1)[0]
    front = [int(m.group(1)) for m in re.finditer(r"^\s*(\d+)\s+learner=", table, re.MULTILINE)]
    recommended = int(re.search(r"^Recommended: trial (\d+)", report, re.MULTILINE).group(1))
    return {"out": out, "journal": out / "study.log", "front": front, "recommended": recommended, "env": env}


def _wsgi(app: Any, path: str, *, method: str = "GET", query: str = "", body: bytes = b"") -> tuple[str, Any]:
    captured: dict[str, Any] = {}
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": "test",
               "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
               "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json"}
    chunks = app(environ, lambda status, headers, exc_info=None: captured.update(status=status))
    raw = b"".join(chunks)
    return captured["status"], json.loads(raw) if raw else None


def _study_id(app: Any) -> int:
    _, listing = _wsgi(app, "/api/studies")
    (summary,) = listing["study_summaries"]
    return summary["study_id"]


def _rows(trial: dict[str, Any]) -> dict[str, str]:
    return {row["key"]: row["value"] for row in trial["user_attrs"]}


@pytest.fixture(scope="module")
def served(quickstart: dict[str, Any]) -> Iterator[str]:
    """`robust-hpo dashboard studies/quickstart.toml --port 0` as a user starts it; yields its URL."""
    process = subprocess.Popen([sys.executable, "-m", "robust_hpo.cli", "dashboard", str(QUICKSTART), "--storage",
                                str(quickstart["journal"]), "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=quickstart["env"], cwd=quickstart["out"])
    try:
        line = process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        assert match, f"no URL in the dashboard's first line: {line!r}; stderr: {process.stderr.read()}"
        yield match.group(1)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


def test_best_trials_are_the_feasible_front_report_prints(served: str, quickstart: dict[str, Any]) -> None:
    (summary,) = _get(f"{served}/api/studies")["study_summaries"]
    detail = _get(f"{served}/api/studies/{summary['study_id']}")
    best = [t["number"] for t in detail["best_trials"]]
    assert best == quickstart["front"] and best

    # independently: non-dominated among the trials that meet the constraint (clean accuracy ↑, slope ↓)
    complete = [t for t in detail["trials"] if t["state"] == "Complete"]
    feasible = [t for t in complete if t["values"][0] >= MIN_ACCURACY]
    front = {t["number"] for t in feasible
             if not any(o["values"][0] >= t["values"][0] and o["values"][1] <= t["values"][1]
                        and o["values"] != t["values"] for o in feasible)}
    assert set(best) == front
    # optuna-dashboard's own front ignores the constraint: it lists infeasible trials (the bug fixed here)
    plain = optuna_dashboard.wsgi(StorageSpec(journal=quickstart["journal"]).open())
    _, unconstrained = _wsgi(plain, f"/api/studies/{summary['study_id']}")
    assert {t["number"] for t in unconstrained["best_trials"]} - front


def test_every_trial_says_whether_it_is_feasible_and_why_not(served: str, quickstart: dict[str, Any]) -> None:
    (summary,) = _get(f"{served}/api/studies")["study_summaries"]
    detail = _get(f"{served}/api/studies/{summary['study_id']}")
    assert {FEASIBLE_ROW, FRONT_ROW} <= {a["key"] for a in detail["union_user_attrs"]}
    infeasible = 0
    for trial in detail["trials"]:
        rows = _rows(trial)
        accuracy = trial["values"][0]
        if accuracy >= MIN_ACCURACY:
            assert rows[FEASIBLE_ROW] == "yes", trial["number"]
        else:
            infeasible += 1
            assert rows[FEASIBLE_ROW] == f"no: clean accuracy {accuracy:.4f} < {MIN_ACCURACY:.4f} required"
        expected = ("recommended" if trial["number"] == quickstart["recommended"] else
                    "yes" if trial["number"] in quickstart["front"] else "no")
        assert rows[FRONT_ROW] == expected, trial["number"]
    assert infeasible > 0  # the quickstart has infeasible trials, so the rows are exercised both ways


def test_study_note_shows_the_recommendation_of_report(served: str, quickstart: dict[str, Any]) -> None:
    (summary,) = _get(f"{served}/api/studies")["study_summaries"]
    body = _get(f"{served}/api/studies/{summary['study_id']}")["note"]["body"]
    assert f"**Recommended: trial {quickstart['recommended']} (" in body
    assert "feasible Pareto front" in body and "clean accuracy ≥ 0.9" in body


def test_the_feasibility_columns_sort_as_the_docs_say(served: str) -> None:
    (summary,) = _get(f"{served}/api/studies")["study_summaries"]
    attrs = _get(f"{served}/api/studies/{summary['study_id']}")["union_user_attrs"]
    assert attrs[:2] == [{"key": FEASIBLE_ROW, "sortable": True}, {"key": FRONT_ROW, "sortable": True}]
    assert [a["key"] for a in attrs].count(FEASIBLE_ROW) == 1
    assert "as sortable columns of the trials table" in (REPO / "docs" / "plugin.md").read_text()


def _page(app: Any, path: str) -> tuple[str, dict[str, str], str]:
    captured: dict[str, Any] = {}
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "test",
               "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
               "wsgi.input": io.BytesIO(b""), "CONTENT_LENGTH": "0"}
    chunks = app(environ, lambda status, headers, exc_info=None: captured.update(status=status, headers=dict(headers)))
    return captured["status"], captured["headers"], b"".join(chunks).decode("utf-8")


def test_the_study_home_opens_with_the_recommendation_and_the_feasible_front(quickstart: dict[str, Any]) -> None:
    """The dashboard's HTML loads home.js, which puts the card first on a study's home page; the card has
    the answer (recommended vs most accurate), the front `report` prints, in the figures' learner colours."""
    from robust_hpo.plots import learner_color

    journal = quickstart["journal"]
    before = journal.read_bytes()
    app = dashboard_app(StorageSpec(journal=journal).open())
    study_id = _study_id(app)
    status, headers, page = _page(app, f"/dashboard/studies/{study_id}")
    assert status.startswith("200") and page.count('<script defer src="/robust-hpo/home.js"></script>') == 1
    assert int(headers["Content-Length"]) == len(page.encode()) and "Etag" not in headers
    status, headers, script = _page(app, "/robust-hpo/home.js")
    assert status.startswith("200") and headers["Content-Type"].startswith("text/javascript")
    assert "/robust-hpo/studies/" in script and "insertBefore" in script
    status, _, card = _page(app, f"/robust-hpo/studies/{study_id}/card")
    text = " ".join(re.sub(r"<style>.*?</style>|<[^>]+>", " ", card, flags=re.DOTALL).split())
    assert status.startswith("200") and f"Deploy trial {quickstart['recommended']} :" in text
    assert "most accurate trial" in text and "Rule: the lowest estimated backdoor accuracy" in text
    assert text.index("robust_hpo: the answer") < text.index("Best Trials: the feasible Pareto front")
    table = text.split("Best Trials: the feasible Pareto front", 1)[1]
    assert [int(n) for n in re.findall(r"trial (\d+) \w+ \w+=", table)] == quickstart["front"]
    assert f"background:{learner_color('rbf_svm')}" in card
    status, _, figure = _page(app, f"/robust-hpo/studies/{study_id}/pareto")
    assert status.startswith("200") and 'src="/robust-hpo/plotly.min.js"' in figure and "estimated backdoor" in figure
    assert _page(app, "/robust-hpo/plotly.min.js")[0].startswith("200")
    assert _page(app, "/robust-hpo/studies/999/card")[0].startswith("404")
    assert journal.read_bytes() == before  # nothing written


def test_incremental_polling_keeps_the_whole_front(quickstart: dict[str, Any]) -> None:
    app = dashboard_app(StorageSpec(journal=quickstart["journal"]).open())
    study_id = _study_id(app)
    status, detail = _wsgi(app, f"/api/studies/{study_id}", query="after=55")
    assert status.startswith("200")
    assert [t["number"] for t in detail["trials"]] == [55, 56, 57, 58, 59]
    assert [t["number"] for t in detail["best_trials"]] == quickstart["front"]
    assert _wsgi(app, f"/api/studies/{study_id}", query="after=-1")[0].startswith("400")  # as optuna-dashboard
    assert _wsgi(app, "/api/studies/999")[0].startswith("404")


def test_reading_writes_nothing_and_a_saved_note_keeps_only_the_users_text(tmp_path: Path,
                                                                           quickstart: dict[str, Any]) -> None:
    journal = tmp_path / "study.log"
    journal.write_bytes(quickstart["journal"].read_bytes())
    storage = StorageSpec(journal=journal).open()
    app = dashboard_app(storage, allow_writes=True)
    study_id = _study_id(app)
    before = journal.read_bytes()
    _, detail = _wsgi(app, f"/api/studies/{study_id}")
    assert journal.read_bytes() == before  # GET: no storage write

    note = detail["note"]
    edited = note["body"] + "My own remark."
    payload = json.dumps({"version": note["version"] + 1, "body": edited}).encode()
    assert _wsgi(app, f"/api/studies/{study_id}/note", method="PUT", body=payload)[0].startswith("204")
    study = optuna.load_study(study_name="quickstart", storage=StorageSpec(journal=journal).open())
    assert optuna_dashboard.get_note(study) == "My own remark."  # the generated block is not stored
    body = _wsgi(app, f"/api/studies/{study_id}")[1]["note"]["body"]
    assert body.count("### robust_hpo recommendation") == 1 and body.endswith("My own remark.")


def test_plain_optuna_dashboard_still_serves_the_journal(quickstart: dict[str, Any]) -> None:
    plain = optuna_dashboard.wsgi(StorageSpec(journal=quickstart["journal"]).open())
    status, detail = _wsgi(plain, f"/api/studies/{_study_id(plain)}")
    assert status.startswith("200") and len(detail["trials"]) == 60


def test_busy_port_is_a_one_line_error(quickstart: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = main(["dashboard", str(QUICKSTART), "--storage", str(quickstart["journal"]), "--port", str(port)])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""  # no "optuna-dashboard on http://..." before the error
    assert captured.err == (f"robust-hpo: error: port {port} on 127.0.0.1 is already in use (another dashboard?); "
                            "choose another with --port\n")


def test_a_plain_optuna_study_gets_its_front_and_rows_but_no_recommendation() -> None:
    """A two-objective study robust_hpo did not create: Optuna's front, feasibility rows, no generated note."""
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="plain", directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[0.9, 0.2]))
    study.add_trial(optuna.trial.create_trial(values=[0.8, 0.3]))  # dominated
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    app = dashboard_app(storage)
    status, detail = _wsgi(app, f"/api/studies/{_study_id(app)}")
    assert status.startswith("200")
    assert [t["number"] for t in detail["best_trials"]] == [0]
    rows = [_rows(t) for t in detail["trials"]]
    assert [r[FEASIBLE_ROW] for r in rows] == ["yes (the study has no constraint)"] * 2 + ["not evaluated (fail)"]
    assert [r[FRONT_ROW] for r in rows] == ["yes", "no", "no"]
    assert detail["note"]["body"] == ""
