"""Journal files after killed writers: a torn last record is cut before the next append (backup kept,
stderr names the file); a damaged line is refused naming the file and `robust-hpo repair`, which
recovers it; stale lock files are broken (owner gone, or unchanged past the grace period) and reported;
opening a storage for reading creates nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from robust_hpo.cli import main
from robust_hpo.errors import MissingFileError, StorageError
from robust_hpo.study import ProcessIdentity, StorageSpec, open_journal, repair_journal, scan_journal
from robust_hpo.study._journal import EMPTY_LOCK_GRACE, CheckedJournalBackend, OwnedLock


def _journal_with_trials(path: Path, n: int = 3) -> None:
    """A study written by plain Optuna (no robust_hpo code): n complete trials."""
    study = optuna.create_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))),
                                directions=["maximize", "minimize"])
    for i in range(n):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        study.tell(trial, [i, -i])


def _optuna_trials(path: Path) -> list[optuna.trial.FrozenTrial]:
    """The trials as Optuna's own JournalStorage reads them."""
    return optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path)))).trials


def _tear_last_record(path: Path) -> bytes:
    """Simulate a write killed midway: the last record loses its second half and its newline."""
    data = path.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    torn = data[start:start + (len(data) - start) // 2]
    path.write_bytes(data[:start] + torn)
    return torn


def test_a_torn_last_record_is_cut_before_the_next_append(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "study.log"
    _journal_with_trials(path)
    torn = _tear_last_record(path)
    intact = path.read_bytes()[:-len(torn)]
    assert scan_journal(path).torn_tail_bytes == len(torn)
    # Optuna's reader skips the torn record: trial 2 is still RUNNING for it
    assert [t.state.name for t in _optuna_trials(path)] == ["COMPLETE", "COMPLETE", "RUNNING"]

    storage = StorageSpec(journal=path).open()
    assert path.read_bytes() == intact + torn  # opening alone writes nothing
    study = optuna.load_study(study_name="s", storage=storage)
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), [9, -9])

    err = capfd.readouterr().err
    assert f"{path}: removed a torn last record ({len(torn)} bytes" in err
    backups = list(tmp_path.glob("study.log.torn-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == torn and str(backups[0]) in err
    assert path.read_bytes().startswith(intact)
    assert scan_journal(path).intact
    states = [t.state.name for t in _optuna_trials(path)]  # Optuna's own JournalStorage loads it
    assert states == ["COMPLETE", "COMPLETE", "RUNNING", "COMPLETE"]


def _glue_after_torn_record(path: Path) -> None:
    """What robust_hpo did before it checked the tail: plain Optuna appends after a torn record."""
    _tear_last_record(path)
    study = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))
    study.set_user_attr("after", 1)  # glued onto the torn bytes: Optuna's reader skips the last line
    with pytest.raises(ValueError, match="Expecting ':' delimiter"):  # the error, naming no file
        study.set_user_attr("later", 2)  # written, but from now on every plain Optuna read fails


def test_a_damaged_journal_is_refused_naming_the_file_and_the_repair(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "study.log"
    _journal_with_trials(path)
    _glue_after_torn_record(path)
    with pytest.raises(ValueError, match="Expecting"):
        _optuna_trials(path)
    n_lines = len(path.read_bytes().splitlines())
    damaged = scan_journal(path).damaged_lines
    assert damaged == (n_lines - 1,)

    message = rf"the journal {path} is damaged: line {damaged[0]} is not a journal record.*robust-hpo repair {path}"
    with pytest.raises(StorageError, match=message):
        StorageSpec(journal=path).open()
    assert main(["report", "--storage", str(path)]) == 2
    assert f"robust-hpo repair {path}" in capsys.readouterr().err

    before = path.read_bytes()
    assert main(["repair", str(path)]) == 0
    out = capsys.readouterr().out
    assert "recovered 1 record(s) glued to a torn one" in out and ".bak" in out
    backup = next(tmp_path.glob("study.log.*.bak"))
    assert backup.read_bytes() == before
    study = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))
    assert study.user_attrs == {"after": 1, "later": 2}  # the glued record is kept
    assert len(study.trials) == 3
    assert main(["repair", str(path)]) == 0
    assert "intact" in capsys.readouterr().out


def test_an_append_after_a_damaged_last_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "study.log"
    _journal_with_trials(path)
    storage = StorageSpec(journal=path).open()
    with path.open("ab") as handle:
        handle.write(b'{"op_code":5,"wor{"op_code":4}\n')  # complete line, not a record
    before = path.read_bytes()
    with pytest.raises(StorageError, match=rf"the journal {path} ends with a damaged record.*robust-hpo repair"):
        storage.set_study_user_attr(0, "k", 1)
    assert path.read_bytes() == before  # nothing written after it


def test_repair_drops_unreadable_lines_and_keeps_a_backup(tmp_path: Path) -> None:
    path = tmp_path / "study.log"
    _journal_with_trials(path)
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    path.write_bytes(b"".join(lines) + b"garbage\n" + b'{"op_code":2,"worker_id":"w","study_id":0,"user_attr":{"k":1}}\n'
                     + b'{"op_c')
    report = repair_journal(path)
    assert report.dropped == (len(lines) + 1,) and report.torn_bytes == 6 and report.recovered == ()
    assert report.backup is not None and report.backup.read_bytes().endswith(b'{"op_c')
    study = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))
    assert study.user_attrs == {"k": 1}


def _dead_identity() -> ProcessIdentity:
    """The identity of a process that has exited (and been reaped)."""
    code = "import json; from robust_hpo.study import ProcessIdentity; print(json.dumps(ProcessIdentity.current().to_json()))"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    identity = ProcessIdentity.from_json(json.loads(out))
    assert identity is not None and identity.is_gone()
    return identity


def test_a_lock_left_by_a_dead_process_is_broken_at_once(tmp_path: Path) -> None:
    journal = tmp_path / "study.log"
    lock_path = Path(f"{journal}.lock")
    owner = _dead_identity()
    lock_path.write_text(json.dumps(owner.to_json()))
    messages: list[str] = []
    lock = OwnedLock(journal, grace_period=3600, report=messages.append)  # the grace period plays no part
    assert lock.acquire()
    assert messages == [f"broke the stale lock file {lock_path} (its owner, {owner.describe()}, is gone)"]
    assert ProcessIdentity.from_json(json.loads(lock_path.read_text())) == ProcessIdentity.current()
    lock.release()
    assert not lock_path.exists()


def test_an_ownerless_lock_is_broken_after_the_grace_period(tmp_path: Path) -> None:
    journal = tmp_path / "study.log"
    journal.touch()
    lock_path = Path(f"{journal}.lock")
    os.symlink(journal, lock_path)  # plain Optuna's lock: a symlink with no owner
    os.utime(lock_path, (0, 1_000_000_000), follow_symlinks=False)  # unchanged for years: file times play no part
    messages: list[str] = []
    lock = OwnedLock(journal, grace_period=0.5, report=messages.append, report_after=60)
    started = time.monotonic()
    assert lock.acquire()
    assert time.monotonic() - started >= 0.5  # seen unchanged by this process for the grace period
    assert len(messages) == 1 and messages[0].startswith(f"broke the stale lock file {lock_path} (held by an "
                                                         "unknown process, unchanged for")
    lock.release()


def test_an_empty_lock_is_broken_after_seconds_not_the_grace_period(tmp_path: Path) -> None:
    """A writer killed between creating the lock (O_EXCL) and writing its owner leaves it empty."""
    journal = tmp_path / "study.log"
    lock_path = Path(f"{journal}.lock")
    lock_path.touch()
    messages: list[str] = []
    lock = OwnedLock(journal, grace_period=3600, report=messages.append)
    started = time.monotonic()
    assert lock.acquire()
    waited = time.monotonic() - started
    assert EMPTY_LOCK_GRACE <= waited < 60  # not at once (its creator may be writing), not the grace period
    assert len(messages) == 1 and messages[0].startswith(f"broke the stale lock file {lock_path} (empty for ")
    assert "its creator died before writing its owner" in messages[0]
    lock.release()


def test_an_interrupt_while_taking_the_lock_gives_it_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C between creating the lock file and returning from acquire() (found by
    benchmarks/hostile_inputs.py: the interrupted process then waited on its own lock)."""
    journal = tmp_path / "study.log"
    lock = OwnedLock(journal)

    def interrupted(handle: int, data: bytes) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        lock.acquire()
    assert not lock.path.exists()
    monkeypatch.undo()
    assert lock.acquire()  # at once: nothing left behind
    lock.release()


def test_a_ctrl_c_during_an_append_comes_after_the_whole_record_and_the_lock(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    journal = tmp_path / "study.log"
    backend = CheckedJournalBackend(journal)
    write = os.write

    def interrupted_write(handle: int, data: bytes) -> int:  # Ctrl-C while the record is being written
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # without the deferral, KeyboardInterrupt is raised here
        return write(handle, data)

    monkeypatch.setattr(os, "write", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        backend.append_logs([{"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [1]}])
    monkeypatch.undo()
    assert journal.read_bytes().endswith(b"}\n") and journal.read_bytes().count(b"\n") == 1
    assert not Path(f"{journal}.lock").exists()


def _identity_of(pid: int) -> ProcessIdentity:
    stat = open(f"/proc/{pid}/stat").read() if Path("/proc").is_dir() else None
    started = int(stat[stat.rfind(")") + 2:].split()[19]) if stat else None
    me = ProcessIdentity.current()
    return ProcessIdentity(host=me.host, machine=me.machine, pid=pid, started=started)


def test_a_live_owner_is_never_broken_however_long_it_holds_the_lock(tmp_path: Path) -> None:
    """A live owner on this machine (frozen, swapping, paused) is waited for past any grace period;
    its lock is broken only once it is gone."""
    journal = tmp_path / "study.log"
    lock_path = Path(f"{journal}.lock")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = _identity_of(sleeper.pid)
        assert not live.is_gone()
        lock_path.write_text(json.dumps(live.to_json()))
        messages: list[str] = []
        lock = OwnedLock(journal, grace_period=0.2, report=messages.append, report_after=0.1)
        killer = threading.Timer(2.0, sleeper.kill)
        killer.start()
        started = time.monotonic()
        assert lock.acquire()
        assert time.monotonic() - started >= 2.0  # ten grace periods: not broken while the owner lived
        assert messages[0].startswith(f"waiting for the lock file {lock_path}, held by pid {sleeper.pid}")
        assert "it is never broken while its owner lives" in messages[0]
        assert messages[1] == f"broke the stale lock file {lock_path} (its owner, {live.describe()}, is gone)"
        lock.release()
    finally:
        sleeper.kill()
        sleeper.wait()


_HOLDER = """
import os, signal, sys
from robust_hpo.study._journal import OwnedLock
lock = OwnedLock(sys.argv[1], grace_period=0.2)
lock.acquire()
os.kill(os.getpid(), signal.SIGSTOP)  # frozen while holding the lock
lock.release()
print("released", flush=True)
"""


def test_a_frozen_holder_keeps_the_lock_and_releases_it_after_continue(tmp_path: Path) -> None:
    """The freeze/continue case: a writer SIGSTOPped while holding the lock for many grace periods
    keeps it; once continued it releases its own lock, and only then does the waiter get it."""
    journal = tmp_path / "study.log"
    journal.write_bytes(b"")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(journal)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not Path(f"/proc/{holder.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T":
            assert time.monotonic() < deadline and holder.poll() is None
            time.sleep(0.05)
        messages: list[str] = []
        waiter = OwnedLock(journal, grace_period=0.2, report=messages.append, report_after=0.1)
        got: list[float] = []
        thread = threading.Thread(target=lambda: (waiter.acquire(), got.append(time.monotonic())))
        thread.start()
        time.sleep(2.0)  # ten grace periods frozen
        assert not got and not any(m.startswith("broke") for m in messages)
        continued = time.monotonic()
        os.kill(holder.pid, signal.SIGCONT)
        thread.join(30)
        out, err = holder.communicate(timeout=30)
        assert holder.returncode == 0 and out == "released\n", err  # its own lock, released without error
        assert got and got[0] >= continued
        waiter.release()
        assert not Path(f"{journal}.lock").exists()
    finally:
        holder.kill()
        holder.wait()


def test_ctrl_c_ends_a_wait_for_a_live_holder(tmp_path: Path) -> None:
    """A frozen holder is waited for indefinitely, so Ctrl-C must end the wait (appends defer Ctrl-C
    while they hold the lock, not while they wait for it); nothing is left taken."""
    from robust_hpo.study._journal import interrupts_deferred

    journal = tmp_path / "study.log"
    journal.write_bytes(b"")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_path = Path(f"{journal}.lock")
        lock_path.write_text(json.dumps(_identity_of(sleeper.pid).to_json()))
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            with interrupts_deferred():
                OwnedLock(journal, report=lambda m: None).acquire()
        assert time.monotonic() - started < 10
        assert lock_path.read_text() == json.dumps(_identity_of(sleeper.pid).to_json())  # the holder's, untouched
        other = OwnedLock(journal, grace_period=0.1)  # our flock was given back: only the lock file waits
        sleeper.kill()
        sleeper.wait()
        assert other.acquire()
        other.release()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_release_removes_only_the_callers_own_lock(tmp_path: Path) -> None:
    journal = tmp_path / "study.log"
    messages: list[str] = []
    lock = OwnedLock(journal, report=messages.append)
    lock.acquire()
    lock.path.unlink()  # broken by someone else, who takes it
    lock.path.write_text(json.dumps({"host": "h", "machine": "elsewhere", "pid": 1}))
    lock.release()
    assert lock.path.read_text() == json.dumps({"host": "h", "machine": "elsewhere", "pid": 1})
    assert "the new holder's lock was left in place" in messages[0]


def test_two_writers_forced_into_the_critical_section_keep_every_record(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock file protocol defeated (every lock file judged stale at once, as a remote owner's is
    after its grace period) while one writer is half-way through a record: the other must neither
    cut that record as torn nor write into the middle of it."""
    journal = tmp_path / "study.log"
    backends = [CheckedJournalBackend(journal, report=lambda m: None) for _ in range(2)]
    monkeypatch.setattr(OwnedLock, "_staleness", lambda self, *a: "forced")
    write = os.write
    halfway = threading.Event()

    def slow_write(handle: int, data: bytes) -> int:
        if threading.current_thread().name == "slow" and len(data) > 40:
            write(handle, bytes(data[:20]))
            halfway.set()
            time.sleep(0.5)  # the other writer comes now
            return 20 + write(handle, bytes(data[20:]))
        return write(handle, data)

    monkeypatch.setattr(os, "write", slow_write)
    record = {"op_code": 0, "worker_id": "w", "study_name": "x" * 40, "directions": [1]}
    slow = threading.Thread(name="slow", target=backends[0].append_logs, args=([record],))
    slow.start()
    assert halfway.wait(10)
    backends[1].append_logs([{**record, "study_name": "y" * 40}])
    slow.join()
    monkeypatch.undo()
    lines = journal.read_bytes().splitlines(keepends=True)
    assert [json.loads(line)["study_name"][0] for line in lines] == ["x", "y"]
    assert not list(tmp_path.glob("study.log.torn-*"))


def test_the_lock_excludes_plain_optuna_writers(tmp_path: Path) -> None:
    journal = tmp_path / "study.log"
    lock = OwnedLock(journal)
    assert str(lock.path) == JournalFileSymlinkLock(str(journal))._lock_file  # the same lock file name
    lock.acquire()
    with pytest.raises(FileExistsError):  # what Optuna's symlink lock does to acquire it
        os.symlink(journal, lock.path)
    lock.release()


def test_opening_for_reading_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing_db = tmp_path / "missing.db"
    assert main(["report", "--storage", f"sqlite:///{missing_db}"]) == 2
    assert f"no SQLite database at {missing_db}" in capsys.readouterr().err
    assert not missing_db.exists()
    with pytest.raises(MissingFileError, match="no study storage at"):
        StorageSpec(journal=tmp_path / "missing.log").open(create=False)
    assert not (tmp_path / "missing.log").exists()
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(StorageError, match=r"holds no Optuna studies"):
        StorageSpec(url=f"sqlite:///{empty}").open(create=False)
    assert empty.stat().st_size == 0


def test_journal_errors_name_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "dir.log"
    folder.mkdir()
    with pytest.raises(StorageError, match=f"storage {folder} is a directory"):
        open_journal(folder, create=True)
    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises(StorageError, match=f"journal {blocked / 'study.log'}"):
        open_journal(blocked / "study.log", create=True)


def test_a_torn_backup_that_cannot_be_written_leaves_no_empty_file(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk: the torn bytes' backup fails, the append is refused, and no 0-byte backup is left."""
    import errno

    path = tmp_path / "study.log"
    _journal_with_trials(path)
    _tear_last_record(path)
    backend = CheckedJournalBackend(path, report=lambda m: None)
    write = os.write

    def full(handle: int, data: bytes) -> int:
        if os.readlink(f"/proc/self/fd/{handle}").split("/")[-1].startswith("study.log.torn-"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(handle, data)

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StorageError, match="its backup .* cannot be written"):
        backend.append_logs([{"op_code": 2, "worker_id": "w", "study_id": 0, "user_attr": {"k": 1}}])
    monkeypatch.undo()
    assert list(tmp_path.glob("study.log.torn-*")) == []


def test_a_finished_trial_is_synced_with_the_parameters_written_before_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A running trial's creation, parameters and attributes are written without fsync; finishing it,
    enqueueing a trial and the study's own records fsync (which flushes the earlier lines); every
    line is written at once."""
    path = tmp_path / "study.log"
    storage = JournalStorage(CheckedJournalBackend(path))
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize"])
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(len(path.read_bytes().splitlines()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    trial = study.ask()
    after_create = len(path.read_bytes().splitlines())
    trial.suggest_float("x", 0, 1)
    trial.suggest_int("n", 1, 9)
    trial.set_user_attr("record", {"a": 1})
    written = len(path.read_bytes().splitlines())
    assert written == after_create + 3          # written (visible to readers and a killed process's successor)
    assert synced == []                         # but not synced: the trial is still running
    study.tell(trial, 0.5)
    assert synced == [written + 1]              # the state record syncs itself and the lines before it
    study.enqueue_trial({"x": 0.5, "n": 3})     # a waiting trial is synced at once
    assert synced == [written + 1, written + 2]
    reread = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))
    assert reread.trials[0].params.keys() == {"x", "n"} and reread.trials[0].user_attrs == {"record": {"a": 1}}
