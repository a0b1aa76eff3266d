"""`robust-hpo repair` keeps every trial it can: a damaged creation line is rebuilt in place (numbering
holds, later records land on the right trial), duplicated or appended lines are found by the reader
and dropped by the repair, backups never overwrite each other, the report says what happened to
each line. Every expectation is checked against the undamaged journal read by plain Optuna."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from robust_hpo.cli import main
from robust_hpo.errors import StorageError
from robust_hpo.study import StorageSpec, repair_journal
from robust_hpo.study import _journal_repair


def _study(path: Path, n: int = 10, *, name: str = "s") -> None:
    """n COMPLETE trials written by plain Optuna."""
    study = optuna.create_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(path))),
                                directions=["maximize", "minimize"])
    for i in range(n):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        trial.suggest_int("k", 1, 9)
        study.tell(trial, [i, -i])


def _trials(path: Path, name: str = "s") -> list[tuple[str, dict, list | None]]:
    study = optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(path))))
    return [(t.state.name, t.params, t.values) for t in study.trials]


def _creation_lines(path: Path) -> list[int]:
    lines = path.read_bytes().splitlines()
    return [i for i, line in enumerate(lines) if json.loads(line)["op_code"] == 4]


def _damage(path: Path, index: int, at: int | None = None) -> None:
    """One byte of line ``index`` (0-based) becomes NUL: the line is no longer JSON."""
    lines = path.read_bytes().splitlines(keepends=True)
    line = bytearray(lines[index])
    line[len(line) // 2 if at is None else at] = 0
    lines[index] = bytes(line)
    path.write_bytes(b"".join(lines))


@pytest.mark.parametrize("where", ["middle", "op_code"])
def test_a_damaged_creation_line_loses_no_completed_trial(tmp_path: Path, where: str) -> None:
    path = tmp_path / "study.log"
    _study(path)
    expected = _trials(path)
    third = _creation_lines(path)[2]
    _damage(path, third, at=None if where == "middle" else 3)  # byte 3 is inside "op_code"
    with pytest.raises(StorageError, match=rf"the journal {path} is damaged: line {third + 1} "):
        StorageSpec(journal=path).open()

    report = repair_journal(path)
    assert report.rebuilt == (third + 1,) and report.dropped == ()
    assert _trials(path) == expected  # all 10 COMPLETE, each with its own parameters and values
    text = report.describe()
    assert f"line {third + 1}: a damaged trial creation" in text and "as trial 2, COMPLETE" in text
    assert "study 's': 10 COMPLETE" in text
    storage = StorageSpec(journal=path).open()  # robust_hpo's reader accepts it
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == 10


def test_a_rebuilt_trial_that_never_finished_is_marked_fail(tmp_path: Path) -> None:
    path = tmp_path / "study.log"
    _study(path, 3)
    study = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))
    study.ask().suggest_float("x", 0, 1)  # trial 3: RUNNING, its worker gone
    study.tell(study.ask(), [0, 0])  # trial 4 COMPLETE after it
    _damage(path, _creation_lines(path)[3])
    report = repair_journal(path)
    states = [state for state, _, _ in _trials(path)]
    assert states == ["COMPLETE"] * 3 + ["FAIL", "COMPLETE"]
    assert "as trial 3, marked FAIL (it was still running" in report.describe()
    failed = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path)))).trials[3]
    assert "RepairedJournal" in str(failed.user_attrs)


def test_a_duplicated_creation_line_is_found_by_the_reader_and_dropped_by_repair(tmp_path: Path,
                                                                               capsys: pytest.CaptureFixture[str]
                                                                               ) -> None:
    path = tmp_path / "study.log"
    _study(path, 4)
    expected = _trials(path)
    lines = path.read_bytes().splitlines(keepends=True)
    first = _creation_lines(path)[1]
    path.write_bytes(b"".join(lines) + lines[first])  # the line copied to the end: a phantom RUNNING trial
    assert [s for s, _, _ in _trials(path)][-1] == "RUNNING"  # what plain Optuna makes of it
    assert main(["report", "--storage", str(path)]) == 2
    assert f"line {len(lines) + 1} cannot belong to it: it repeats line {first + 1}" in capsys.readouterr().err
    report = repair_journal(path)
    assert report.dropped == (len(lines) + 1,)
    assert _trials(path) == expected


def test_two_concatenated_journals_are_refused_and_the_appended_one_dropped(tmp_path: Path) -> None:
    path, other = tmp_path / "study.log", tmp_path / "other.log"
    _study(path, 3)
    _study(other, 2)  # another journal of a study with the same name
    expected = _trials(path)
    n = len(path.read_bytes().splitlines())
    path.write_bytes(path.read_bytes() + other.read_bytes())
    with pytest.raises(StorageError, match=rf"cannot belong to it: its worker writes to trial id 0, which it neither "
                                           rf"created nor took; that worker created the study again at line {n + 1}"):
        StorageSpec(journal=path).open()
    report = repair_journal(path)
    assert report.dropped == tuple(range(n + 1, n + 1 + len(other.read_bytes().splitlines())))
    assert _trials(path) == expected


def test_backups_of_two_repairs_in_the_same_second_never_overwrite_each_other(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "study.log"
    _study(path, 2)

    class Frozen(_journal_repair.datetime):  # type: ignore[misc, valid-type]
        @classmethod
        def now(cls, tz: object = None) -> _journal_repair.datetime:
            return _journal_repair.datetime(2026, 1, 1, tzinfo=_journal_repair.timezone.utc)

    monkeypatch.setattr(_journal_repair, "datetime", Frozen)
    originals = []
    for _ in range(2):
        path.write_bytes(path.read_bytes() + b"garbage\n")
        originals.append(path.read_bytes())
        repair_journal(path)
    backups = sorted(tmp_path.glob("study.log.*.bak"))
    assert len(backups) == 2 and sorted(b.read_bytes() for b in backups) == sorted(originals)


def test_workers_racing_to_create_the_study_are_not_taken_for_another_journal(tmp_path: Path) -> None:
    """Workers started together both write the study's creation; Optuna ignores the second: legitimate."""
    path = tmp_path / "study.log"
    _study(path, 2)
    late = JournalStorage(JournalFileBackend(str(path)))  # a second worker: its creation loses the race
    with pytest.raises(optuna.exceptions.DuplicatedStudyError):
        late.create_new_study([optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE], "s")
    study = optuna.load_study(study_name="s", storage=late)
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    study.tell(trial, [5, -5])
    storage = StorageSpec(journal=path).open()  # robust_hpo's reader accepts it
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == 3
    assert repair_journal(path).backup is None  # intact


def test_a_journal_appended_while_the_first_still_runs_keeps_every_trial(tmp_path: Path) -> None:
    """`cat other.log >> study.log` while study.log's worker still runs: the other journal's trials are
    kept as FAIL trials where later trials need their numbers, its other records dropped."""
    path, other = tmp_path / "study.log", tmp_path / "other.log"
    _study(path, 3)
    _study(other, 2)
    path.write_bytes(path.read_bytes() + other.read_bytes())
    study = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))
    trial = study.ask()  # the first journal's worker goes on (plain Optuna: it sees nothing wrong)
    trial.suggest_float("x", 0, 1)
    trial.suggest_int("k", 1, 9)
    study.tell(trial, [7, -7])
    report = repair_journal(path)
    trials = _trials(path)
    assert [s for s, _, _ in trials] == ["COMPLETE"] * 3 + ["FAIL", "FAIL", "COMPLETE"]
    assert trials[5][2] == [7, -7] and set(trials[5][1]) == {"x", "k"}
    assert "another journal" in report.describe()


def test_a_trial_enqueued_by_one_worker_and_run_by_another_is_legitimate(tmp_path: Path) -> None:
    path = tmp_path / "study.log"
    _study(path, 1)
    optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path)))).enqueue_trial(
        {"x": 0.5, "k": 3})
    runner = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))
    trial = runner.ask()  # pops the queued trial: state RUNNING by this worker, then its parameters
    assert trial.suggest_float("x", 0, 1) == 0.5 and trial.suggest_int("k", 1, 9) == 3
    runner.tell(trial, [1, -1])
    storage = StorageSpec(journal=path).open()
    assert [t.state.name for t in optuna.load_study(study_name="s", storage=storage).trials] == ["COMPLETE"] * 2
