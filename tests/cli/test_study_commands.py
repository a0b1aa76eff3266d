"""`robust-hpo` end to end on a small budget: run, resume, report, dashboard API, failures, errors, help."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from optuna.trial import TrialState

from robust_hpo.dashboard import dashboard_server
from robust_hpo.cli import main
from robust_hpo.study import StorageSpec
from robust_hpo.objective import RECORD_ATTR, trial_record
from robust_hpo.testing import serving, tiny_study_toml

REPO = Path(__file__).resolve().parents[2]

SMALL = tiny_study_toml('cli', n_trials=6, extra="[constraint]\nmin_accuracy = 0.8")


def _write(tmp_path: Path, text: str = SMALL, name: str = "small.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _load(journal: Path, name: str = "cli") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=StorageSpec(journal=journal).open())


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_run_writes_study_html_csv_then_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study_file, out = _write(tmp_path), tmp_path / "out"
    assert main(["run", str(study_file), "--storage", str(out / "study.log"), "--output", str(out), "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "ran 6 trials" in stdout and "Pareto front" in stdout and "Recommended: trial" in stdout
    assert (out / "pareto.html").is_file()
    study = _load(out / "study.log")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["clean_accuracy", "slope"]
    first = study.trials[0]
    assert first.state == TrialState.COMPLETE
    record = trial_record(first)
    assert set(first.user_attrs) == {RECORD_ATTR} and not record.legacy
    assert record.derivative is not None and record.fit_seconds >= 0 and record.slope_seconds > 0
    assert record.attack["trigger"] == {"kind": "badnets", "size": 2, "position": "bottom-right", "seed": 0}
    assert record.attack["fraction"] == 0.1
    assert record.n_poison == 6  # 10 % of 60
    assert set(first.constraints) == {"0", "clean_accuracy"}
    assert len(_csv_rows(out / "trials.csv")) == 6

    assert main(["run", str(study_file), "--storage", str(out / "study.log"), "--output", str(out), "--n-trials", "3", "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "ran 3 trials" in stdout and "(resumed: 6 trials before)" in stdout
    study = _load(out / "study.log")
    assert len(study.trials) == 9
    assert len(_csv_rows(out / "trials.csv")) == 9
    firsts = [t.params for t in study.trials[:3]]
    assert study.trials[6].params not in firsts  # the resumed sampler does not replay the first suggestions


def test_report_and_pareto_alias(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study_file, out = _write(tmp_path), tmp_path / "out"
    assert main(["run", str(study_file), "--storage", str(out / "study.log"), "--output", str(out), "--no-progress", "--n-trials", "3"]) == 0
    capsys.readouterr()
    assert main(["report", str(study_file), "--storage", str(out / "study.log"), "--output", str(out)]) == 0
    by_file = capsys.readouterr().out
    assert "study 'cli': 3 trials" in by_file and "Recommended:" in by_file
    other = tmp_path / "report"
    assert main(["pareto", "--storage", str(out / "study.log"), "--output", str(other), "--tolerance", "0.5"]) == 0
    assert "within 0.5 of the best clean accuracy" in capsys.readouterr().out  # --tolerance reaches the rule
    assert (other / "pareto.html").is_file() and len(_csv_rows(other / "trials.csv")) == 3


def test_sqlite_storage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study_file = _write(tmp_path)
    for _ in range(2):
        assert main(["run", str(study_file), "--storage", url, "--output", str(tmp_path / "o"), "--n-trials", "2",
                     "--no-progress"]) == 0
    assert len(optuna.load_study(study_name="cli", storage=url).trials) == 4
    assert "storage: sqlite:///" in capsys.readouterr().out


@pytest.fixture
def served_study(tmp_path: Path) -> Iterator[str]:
    """A small study run through the CLI, served by optuna-dashboard on 127.0.0.1 (free port)."""
    out = tmp_path / "out"
    assert main(["run", str(_write(tmp_path)), "--storage", str(out / "study.log"), "--output", str(out), "--n-trials", "3", "--no-progress"]) == 0
    with serving(dashboard_server(StorageSpec(journal=out / "study.log").open(), port=0)) as url:
        yield url


def test_study_is_readable_through_optuna_dashboards_api(served_study: str) -> None:
    with urllib.request.urlopen(f"{served_study}/api/studies", timeout=60) as response:
        summaries = json.load(response)["study_summaries"]
    assert [(s["study_name"], s["directions"]) for s in summaries] == [("cli", ["maximize", "minimize"])]
    with urllib.request.urlopen(f"{served_study}/api/studies/{summaries[0]['study_id']}", timeout=60) as response:
        detail = json.load(response)
    assert detail["objective_names"] == ["clean_accuracy", "slope"]
    assert len(detail["trials"]) == 3
    for trial in detail["trials"]:
        assert len(trial["constraints"]) == 1  # the list form optuna-dashboard 0.21 reads
        assert (trial["constraints"][0] <= 0) == (trial["values"][0] >= 0.8)
        assert RECORD_ATTR in {attr["key"] for attr in trial["user_attrs"]}


FLAKY = SMALL.replace('learners = ["logistic", "ridge"]', 'learners = ["flaky"]').replace(
    'seed = 0\n\n[data]', 'seed = 0\nsampler = "random"\n\n[data]', 1)


def test_failed_fit_is_recorded_and_the_study_continues(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["run", str(_write(tmp_path, FLAKY)), "--storage", str(out / "study.log"), "--output", str(out), "--n-trials", "8", "--no-progress"]) == 0
    stderr = capsys.readouterr().err
    study = _load(out / "study.log")
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(study.trials) == 8 and failed and complete
    for trial in failed:
        assert trial.params["flaky.C"] > 1.0
        reason = trial_record(trial).fail_reason
        assert reason.startswith("ValueError: C=") and reason.endswith("is too large for flaky")
        assert f"trial {trial.number} failed: ValueError: C=" in stderr
    assert all(t.params["flaky.C"] <= 1.0 for t in complete)
    rows = _csv_rows(out / "trials.csv")
    assert sorted(r["state"] for r in rows) == sorted(t.state.name for t in study.trials)


@pytest.mark.parametrize(("text", "message"), [
    (SMALL.replace('name = "cli"', 'name = "cli"\ncolour = "red"'), "unknown key 'study.colour'"),
    (SMALL + '\n[search.logistic]\nC = { low = 10.0, high = 1.0 }\n',
     r"search.logistic.C: low \(10.0\) must be < high"),
    (SMALL.replace("n_train = 60", "n_train = 100000"), r"\[data\] n_train"),
])
def test_bad_study_file_exits_2_with_one_line_and_creates_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str) -> None:
    study_file, out = _write(tmp_path, text), tmp_path / "out"
    assert main(["run", str(study_file), "--output", str(out), "--no-progress"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1
    assert stderr.startswith(f"robust-hpo: error: {study_file}: ")
    assert re.search(message, stderr)
    assert not out.exists()


def test_missing_file_and_missing_storage_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert capsys.readouterr().err == f"robust-hpo: error: study file not found: {tmp_path / 'nope.toml'}\n"
    study_file = _write(tmp_path)
    assert main(["report", str(study_file), "--output", str(tmp_path / "none")]) == 2
    assert "no study storage at" in capsys.readouterr().err
    assert main(["dashboard", str(study_file), "--output", str(tmp_path / "none")]) == 2
    assert "no study storage at" in capsys.readouterr().err
    assert main(["report"]) == 2
    assert capsys.readouterr().err == "robust-hpo: error: give a study file (STUDY.toml) or --storage\n"


def test_report_names_existing_studies(tmp_path: Path, output_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = output_root / "cli"  # the default study folder
    assert main(["run", str(_write(tmp_path)), "--n-trials", "1", "--no-progress"]) == 0
    assert main(["report", "--storage", str(out / "study.log"), "--study-name", "other"]) == 2
    assert "no study named 'other' in journal file" in capsys.readouterr().err


def test_resuming_with_a_different_problem_is_refused(tmp_path: Path, output_root: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = output_root / "cli"
    assert main(["run", str(_write(tmp_path)), "--n-trials", "1", "--no-progress"]) == 0
    changed = _write(tmp_path, SMALL.replace("n_train = 60", "n_train = 70"), "changed.toml")
    # --output only moves the command's files: the study is still found, and refused
    assert main(["run", str(changed), "--output", str(tmp_path / "elsewhere"), "--n-trials", "1",
                 "--no-progress"]) == 2
    assert "was created for a different problem ([data] differ)" in capsys.readouterr().err
    assert len(_load(out / "study.log").trials) == 1


@pytest.mark.parametrize("command", [[], ["run"], ["report"], ["pareto"], ["dashboard"]])
def test_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: robust-hpo" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "x.toml", "--n-trials", "0"], "--n-trials: expected a positive integer"),
    (["run", "x.toml", "--timeout", "-3"], "--timeout: expected a positive number"),
    (["report", "--tolerance", "2"], r"--tolerance: expected a number in \[0, 1\]"),
    (["frobnicate"], "invalid choice"),
])
def test_argument_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_two_processes_add_trials_to_one_journal(tmp_path: Path, output_root: Path) -> None:
    """Distributed use on the default journal file: two concurrent `robust-hpo run` processes."""
    study_file, out = _write(tmp_path), output_root / "cli"
    command = [sys.executable, "-m", "robust_hpo.cli", "run", str(study_file), "--n-trials", "4", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    workers = [subprocess.Popen([*command, "--seed", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env, cwd=tmp_path) for seed in (1, 2)]
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=300)
        assert worker.returncode == 0, stderr
        assert "ran 4 trials" in stdout
    study = _load(out / "study.log")
    assert len(study.trials) == 8
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_run_with_the_predicted_backdoor_accuracy_as_objective(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["run", str(_write(tmp_path)), "--storage", str(out / "study.log"), "--output", str(out), "--no-progress",
                 "--set", "study.objective=predicted_backdoor_accuracy"]) == 0
    stdout = capsys.readouterr().out
    assert "clean accuracy ↑, predicted backdoor accuracy ↓" in stdout
    study = _load(out / "study.log")
    assert study.metric_names == ["clean_accuracy", "predicted_backdoor_accuracy"]
    for trial in study.trials:
        record = trial_record(trial, study.metric_names)
        assert trial.values[1] == record.predicted_backdoor_accuracy == record.objective_value
        assert record.slope is not None and record.slope != trial.values[1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["objective"] == "predicted_backdoor_accuracy"
    # resuming under another objective is refused: it is part of the problem
    assert main(["run", str(_write(tmp_path)), "--storage", str(out / "study.log"), "--no-progress", "--n-trials", "1"]) == 2
    assert "[study] objective" in capsys.readouterr().err
