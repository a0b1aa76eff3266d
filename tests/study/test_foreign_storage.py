"""Journal paths that are not journals are refused untouched; a journal another worker is creating
is not mistaken for one; `repair` never rewrites a foreign file."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import optuna
import pytest

from robust_hpo.errors import StorageError
from robust_hpo.study import StorageSpec, repair_journal
from robust_hpo.study._journal import FRESH_EMPTY_SECONDS, check_journal_file


def _journal(path: Path) -> bytes:
    optuna.create_study(storage=StorageSpec(journal=path).open(), study_name="s")
    return path.read_bytes()


def test_journals_pass_complete_or_torn(tmp_path: Path) -> None:
    record = _journal(tmp_path / "j.log")
    check_journal_file(tmp_path / "j.log")
    check_journal_file(tmp_path / "missing.log")  # a new journal
    for cut in (3, 12, len(record) - 1):  # a first record cut by a killed write is still a journal
        torn = tmp_path / f"torn{cut}.log"
        torn.write_bytes(record[:cut])
        check_journal_file(torn)


@pytest.mark.parametrize("content", [b"hello\n", b'{"a": 1}\n', b"\x00\x01\x02", b"{\"op_code\": \"x\"}\n"])
def test_other_files_are_refused_and_repair_leaves_them_alone(tmp_path: Path, content: bytes) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(content)
    with pytest.raises(StorageError, match=rf"storage {victim} exists and is not an Optuna journal file .*nothing was "
                                           r"written to it"):
        StorageSpec(journal=victim).open(create=False)
    with pytest.raises(StorageError, match="is not an Optuna journal file"):
        repair_journal(victim)
    assert victim.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim"]  # no lock, no backup


def test_devices_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"/dev/null is not a regular file"):
        check_journal_file(Path("/dev/null"))


def test_old_empty_file_is_refused_at_once(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.touch()
    past = time.time() - 2 * FRESH_EMPTY_SECONDS
    os.utime(empty, (past, past))
    with pytest.raises(StorageError, match=r"is an empty file, not an Optuna journal file; nothing was written"):
        check_journal_file(empty)
    assert empty.read_bytes() == b""


def test_fresh_empty_file_of_a_concurrent_worker_is_awaited(tmp_path: Path) -> None:
    """Another worker's Optuna creates the journal empty and writes its first record a moment later."""
    shared = tmp_path / "shared.log"
    shared.touch()
    record = _journal(tmp_path / "other.log")

    def first_record() -> None:
        time.sleep(0.3)
        shared.write_bytes(record)

    writer = threading.Thread(target=first_record)
    writer.start()
    try:
        check_journal_file(shared)
    finally:
        writer.join()
    assert optuna.get_all_study_names(StorageSpec(journal=shared).open()) == ["s"]


def test_an_empty_default_journal_is_resumed_but_an_empty_named_file_is_refused(tmp_path: Path, monkeypatch,
                                                                                capsys) -> None:
    """A run killed between Optuna creating ``study.log`` and its first record leaves it empty; in
    robust_hpo's own output folder that is our journal, not a foreign file. Named with --storage,
    an empty file could be anybody's: refused, untouched."""
    from robust_hpo.cli import main

    root = tmp_path / "root"
    monkeypatch.setenv("ROBUST_HPO_OUTPUT_ROOT", str(root))
    study = Path(__file__).resolve().parents[2] / "studies" / "quickstart.toml"
    left = root / "quickstart" / "study.log"
    left.parent.mkdir(parents=True)
    left.touch()
    past = time.time() - 2 * FRESH_EMPTY_SECONDS
    os.utime(left, (past, past))
    assert main(["run", str(study), "--n-trials", "2", "--no-progress"]) == 0
    assert "ran 2 trials" in capsys.readouterr().out
    assert left.stat().st_size > 0
    named = tmp_path / "named.log"
    named.touch()
    os.utime(named, (past, past))
    assert main(["run", str(study), "--storage", str(named), "--n-trials", "2", "--no-progress"]) == 2
    assert "is an empty file, not an Optuna journal file; nothing was written" in capsys.readouterr().err
    assert named.read_bytes() == b""
